"""Trained larq model -> bit-packed inference model (``tfdisc.ops``).

``to_packed(model)`` rebuilds a Keras model so that every larq ``QuantDense``
and ``QuantConv2D`` whose input and kernel quantizers are sign functions runs
on the packed C++ ops, with its weights packed once, here:

* input quantizer ``ste_sign`` (or ``approx_sign``/``swish_sign``, whose
  forward pass is the same sign); kernel quantizer one of those, or
  ``magnitude_aware_sign`` (XNOR-Net: the per-channel scale mean|w| is applied
  in the op's output transform);
* a ``BatchNormalization`` that is the layer's only consumer is folded into
  the output transform (``dot * multiplier + bias``);
* when every consumer of that output is itself a packed layer (possibly
  through ``MaxPool2D`` and/or ``Flatten``), the op emits the sign bits
  directly (``bitpacked`` output), max pooling runs on packed words, and the
  next layer skips its own bit-packing. The pattern conv -> MaxPool -> BN ->
  sign (BinaryNet) is handled the same way: sign and BN are monotone, so the
  pool runs after them on bits (AND, or OR for channels whose BN multiplier
  is negative).

Everything else (the full-precision first and last layers, ``BitDepthQuantization``,
adds, pooling of float data) stays the original TensorFlow layer, shared with
the input model. A larq layer whose configuration cannot run packed (other
quantizers, a non-linear activation is fine but prevents folding, groups,
non-+-1/0 ``pad_values``, channels_first) stays float and a warning names it.

Predictions: the binary dot products are exact integers and a folded batch
norm is evaluated as TensorFlow evaluates a 2-D batch norm
(``x * inv + (beta - mean * inv)``), so dense BNNs give identical logits;
for 4-D batch norm TensorFlow's fused kernel rounds differently in the last
bit, and XNOR scales are applied once instead of per term, so there logits
agree within float rounding.

Example:

    >>> import tfdisc
    >>> from tfdisc import convert
    >>> model = tfdisc.models.build("fcn1", precision="binary")
    >>> packed = convert.to_packed(model)
    >>> print(packed.packing_report.summary())  # doctest: +SKIP
"""

import dataclasses
import warnings

import larq as lq
import numpy as np
import tensorflow as tf

__all__ = [
    "PackedBinaryConv2D",
    "PackedBinaryDense",
    "PackedMaxPool2D",
    "PackingReport",
    "to_packed",
]

_SIGN_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)
_XNOR_QUANTIZERS = (lq.quantizers.MagnitudeAwareSign,)


def _ops():
    import tfdisc.ops  # pylint: disable=import-outside-toplevel

    return tfdisc.ops


# --------------------------------------------------------------------------
# Inference layers.


class _PackedLayer(tf.keras.layers.Layer):
    """Holds packed weights plus an optional multiplier/bias as constants."""

    def __init__(self, *, word_bits=32, input_packed=False, output="float",
                 activation=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.word_bits = int(word_bits)
        self.input_packed = bool(input_packed)
        self.output_kind = output
        self.activation = tf.keras.activations.get(activation)
        self._init_values = {}

    def _word_dtype(self):
        return tf.int32 if self.word_bits == 32 else tf.int64

    def _add_constant(self, name, shape, dtype, value=None):
        init = "zeros" if value is None else tf.constant_initializer(np.asarray(value))
        return self.add_weight(name=name, shape=shape, dtype=dtype, initializer=init,
                               trainable=False)

    def _build_transform(self, channels, multiplier, bias, has_multiplier, has_bias):
        self.multiplier = (self._add_constant("multiplier", (channels,), tf.float32, multiplier)
                           if has_multiplier else None)
        self.bias = (self._add_constant("bias", (channels,), tf.float32, bias)
                     if has_bias else None)

    def _finish(self, y):
        if self.output_kind == "float":
            return self.activation(y)
        return y

    def get_config(self):
        return {
            **super().get_config(),
            "word_bits": self.word_bits,
            "input_packed": self.input_packed,
            "output": self.output_kind,
            "activation": tf.keras.activations.serialize(self.activation),
        }


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedBinaryDense(_PackedLayer):
    """Inference-only binary dense layer on ``tfdisc.ops.binary_dense``.

    Args:
      units: Output units.
      k: Input features (bits per row).
      has_multiplier, has_bias: Whether the output transform has them.
      packed_kernel, multiplier, bias: Initial values (numpy), from the
        converter; omitted when deserializing (weights are loaded after).
      word_bits, input_packed, output, activation: see ``to_packed``.
    """

    def __init__(self, units, k, *, has_multiplier=False, has_bias=False,
                 packed_kernel=None, multiplier=None, bias=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.k = int(k)
        self.has_multiplier = bool(has_multiplier)
        self.has_bias = bool(has_bias)
        self._init_values = dict(kernel=packed_kernel, multiplier=multiplier, bias=bias)

    def build(self, input_shape):
        words = -(-self.k // self.word_bits)
        self.packed_kernel = self._add_constant("packed_kernel", (self.units, words),
                                                self._word_dtype(),
                                                self._init_values["kernel"])
        self._build_transform(self.units, self._init_values["multiplier"],
                              self._init_values["bias"], self.has_multiplier, self.has_bias)
        self._init_values = {}
        super().build(input_shape)

    def call(self, inputs):
        ops = _ops()
        x = inputs if self.input_packed else ops.bitpack(inputs, word_bits=self.word_bits)
        y = ops.binary_dense(x, self.packed_kernel, self.k, multiplier=self.multiplier,
                             bias=self.bias, output=self.output_kind,
                             word_bits=self.word_bits)
        return self._finish(y)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "k": self.k,
                "has_multiplier": self.has_multiplier, "has_bias": self.has_bias}


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedBinaryConv2D(_PackedLayer):
    """Inference-only binary conv layer on ``tfdisc.ops.binary_conv2d``."""

    def __init__(self, filters, kernel_size, channels_in, *, strides=(1, 1),
                 padding="VALID", pad_value=0, dilations=(1, 1), has_multiplier=False,
                 has_bias=False, packed_kernel=None, multiplier=None, bias=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(v) for v in kernel_size)
        self.channels_in = int(channels_in)
        self.strides = tuple(int(v) for v in strides)
        self.padding = padding.upper()
        self.pad_value = int(pad_value)
        self.dilations = tuple(int(v) for v in dilations)
        self.has_multiplier = bool(has_multiplier)
        self.has_bias = bool(has_bias)
        self._init_values = dict(kernel=packed_kernel, multiplier=multiplier, bias=bias)

    def build(self, input_shape):
        words = -(-self.channels_in // self.word_bits)
        self.packed_kernel = self._add_constant(
            "packed_kernel", (self.filters, *self.kernel_size, words), self._word_dtype(),
            self._init_values["kernel"])
        self._build_transform(self.filters, self._init_values["multiplier"],
                              self._init_values["bias"], self.has_multiplier, self.has_bias)
        self._init_values = {}
        super().build(input_shape)

    def call(self, inputs):
        ops = _ops()
        x = inputs if self.input_packed else ops.bitpack(inputs, word_bits=self.word_bits)
        y = ops.binary_conv2d(x, self.packed_kernel, self.channels_in, strides=self.strides,
                              padding=self.padding, pad_value=self.pad_value,
                              dilations=self.dilations, multiplier=self.multiplier,
                              bias=self.bias, output=self.output_kind,
                              word_bits=self.word_bits)
        return self._finish(y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "channels_in": self.channels_in,
                "strides": self.strides, "padding": self.padding,
                "pad_value": self.pad_value, "dilations": self.dilations,
                "has_multiplier": self.has_multiplier, "has_bias": self.has_bias}


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedMaxPool2D(tf.keras.layers.Layer):
    """Max pooling of packed +-1 NHWC data (``tfdisc.ops.bitpacked_max_pool2d``).

    ``or_mask`` (packed, one bit per channel) selects min pooling for channels
    whose following batch-norm multiplier is negative.
    """

    def __init__(self, pool_size, strides, padding, *, word_bits=32, has_or_mask=False,
                 or_mask=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = padding.upper()
        self.word_bits = int(word_bits)
        self.has_or_mask = bool(has_or_mask or or_mask is not None)
        self._or_mask_value = or_mask

    def build(self, input_shape):
        self.or_mask = None
        if self.has_or_mask:
            dtype = tf.int32 if self.word_bits == 32 else tf.int64
            value = self._or_mask_value
            init = "zeros" if value is None else tf.constant_initializer(np.asarray(value))
            self.or_mask = self.add_weight(name="or_mask", shape=(int(input_shape[-1]),),
                                           dtype=dtype, initializer=init, trainable=False)
        self._or_mask_value = None
        super().build(input_shape)

    def call(self, inputs):
        return _ops().bitpacked_max_pool2d(inputs, self.pool_size, strides=self.strides,
                                           padding=self.padding, or_mask=self.or_mask)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "strides": self.strides, "padding": self.padding,
                "word_bits": self.word_bits, "has_or_mask": self.has_or_mask}


# --------------------------------------------------------------------------
# Report.


@dataclasses.dataclass(frozen=True)
class PackingReport:
    """What ``to_packed`` did.

    Attributes:
      packed_layers: Names of larq layers now running on packed ops.
      float_layers: ``(name, reason)`` of larq layers left in float.
      folded_batch_norms: Names of BatchNormalization layers folded away.
      bitpacked_outputs: Names of packed layers emitting sign bits.
      float_bytes: Weight bytes of the input model (float32 latent weights).
      packed_bytes: Weight bytes of the converted model (packed words,
        float multipliers/biases, and the layers it keeps in float).
      binary_float_bytes / binary_packed_bytes: The same, restricted to the
        converted layers (and the batch norms folded into them).
    """

    packed_layers: tuple
    float_layers: tuple
    folded_batch_norms: tuple
    bitpacked_outputs: tuple
    float_bytes: int
    packed_bytes: int
    binary_float_bytes: int
    binary_packed_bytes: int

    @property
    def compression(self):
        return self.float_bytes / max(self.packed_bytes, 1)

    def summary(self):
        lines = [
            f"packed layers: {len(self.packed_layers)} ({', '.join(self.packed_layers)})",
            f"float larq layers: {len(self.float_layers)}"
            + "".join(f"\n  {n}: {r}" for n, r in self.float_layers),
            f"folded batch norms: {len(self.folded_batch_norms)}; bit-packed outputs: "
            f"{len(self.bitpacked_outputs)}",
            f"model size: {self.float_bytes / 1024:.1f} KiB float -> "
            f"{self.packed_bytes / 1024:.1f} KiB packed ({self.compression:.1f}x)",
            f"binary layers: {self.binary_float_bytes / 1024:.1f} KiB float -> "
            f"{self.binary_packed_bytes / 1024:.1f} KiB packed "
            f"({self.binary_float_bytes / max(self.binary_packed_bytes, 1):.1f}x)",
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------
# Graph analysis.


def _graph(model):
    """(layers by name, producers by name, consumers by name, output names).

    A layer used at more than one call site is recorded with all its
    producers; the converter leaves such layers alone.
    """
    by_name = {layer.name: layer for layer in model.layers}
    producers = {name: [] for name in by_name}
    consumers = {name: [] for name in by_name}
    config = model.get_config()
    if isinstance(model, tf.keras.Sequential):
        names = [l.name for l in model.layers]
        if names:
            producers[names[0]].append("<input>")
        for a, b in zip(names, names[1:]):
            consumers[a].append(b)
            producers[b].append(a)
        outputs = {names[-1]} if names else set()
        return by_name, producers, consumers, outputs
    for entry in config["layers"]:
        name = entry["name"]
        calls = entry.get("inbound_nodes") or []
        if len(calls) > 1:
            producers[name].append("<shared>")
        for call in calls:
            for item in call:
                src = item[0]
                producers[name].append(src)
                if src in consumers:
                    consumers[src].append(name)
    outputs = {item[0] for item in config["output_layers"]}
    return by_name, producers, consumers, outputs


def _is_sign(quantizer):
    return isinstance(quantizer, _SIGN_QUANTIZERS)


def _unsupported_reason(layer):
    """Why a larq layer cannot run packed, or None."""
    if not _is_sign(layer.input_quantizer):
        return f"input_quantizer {type(layer.input_quantizer).__name__} is not a sign"
    if not (_is_sign(layer.kernel_quantizer)
            or isinstance(layer.kernel_quantizer, _XNOR_QUANTIZERS)):
        return f"kernel_quantizer {type(layer.kernel_quantizer).__name__} is not a sign"
    if isinstance(layer, lq.layers.QuantConv2D):
        if layer.data_format != "channels_last":
            return "data_format channels_first"
        if getattr(layer, "groups", 1) != 1:
            return f"groups={layer.groups}"
        if layer.padding not in ("same", "valid"):
            return f"padding={layer.padding!r}"
        pad = layer.pad_values
        if tf.is_tensor(pad) or isinstance(pad, tf.Variable) or float(pad) not in (0.0, 1.0, -1.0):
            return f"pad_values={pad!r} (only 0, 1, -1 are exact)"
        if len(layer.input_shape) != 4:
            return "input is not 4-D"
    return None


def _is_bn_foldable(layer, rank):
    if not isinstance(layer, tf.keras.layers.BatchNormalization):
        return False
    axis = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return axis in ([rank - 1], [-1]) and not getattr(layer, "renorm", False)


def _is_linear(layer):
    return layer.activation in (None, tf.keras.activations.linear)


@dataclasses.dataclass
class _Plan:
    layer: object
    bn: object = None  # folded BatchNormalization
    pool_before_bn: object = None  # MaxPool2D between layer and folded bn
    pool_after: object = None  # MaxPool2D after the (folded) output
    bitpacked: bool = False
    input_packed: bool = False


def _plan(model, word_bits, fold_bn=True, fuse_sign=True):
    by_name, producers, consumers, outputs = _graph(model)
    quant = (lq.layers.QuantDense, lq.layers.QuantConv2D)
    supported, float_layers = {}, []
    for name, layer in by_name.items():
        if not isinstance(layer, quant):
            continue
        if len(producers[name]) != 1 or producers[name][0] == "<shared>":
            float_layers.append((name, "layer is shared or has several inputs"))
            continue
        reason = _unsupported_reason(layer)
        if reason:
            float_layers.append((name, reason))
        else:
            supported[name] = layer

    def single(name):
        c = consumers[name]
        if len(c) == 1 and name not in outputs and len(producers[c[0]]) == 1:
            return by_name[c[0]]
        return None

    def is_pool(layer):
        return (isinstance(layer, tf.keras.layers.MaxPool2D)
                and layer.data_format == "channels_last")

    def packed_consumers_ok(name, channels, rank):
        """All consumers of `name` can take bits with `channels` channels."""
        cons = consumers[name]
        if name in outputs or not cons:
            return False
        for c in cons:
            if len(producers[c]) != 1:
                return False
            layer = by_name[c]
            if c in supported:
                if isinstance(layer, lq.layers.QuantDense) and rank != 2:
                    return False
                continue
            if (isinstance(layer, tf.keras.layers.Flatten) and rank == 4
                    and getattr(layer, "data_format", "channels_last") == "channels_last"):
                # A Flatten of packed NHWC is the packed flat row only when
                # no padding bits sit between pixels.
                if channels % word_bits or c in outputs or not consumers[c]:
                    return False
                if not all(d in supported and len(producers[d]) == 1
                           and isinstance(by_name[d], lq.layers.QuantDense)
                           for d in consumers[c]):
                    return False
                continue
            return False
        return True

    plans = {}
    for name, layer in supported.items():
        plan = _Plan(layer)
        rank = len(layer.output_shape)
        channels = layer.output_shape[-1]
        nxt = single(name)
        if not fold_bn:
            pass
        elif _is_linear(layer) and nxt is not None and _is_bn_foldable(nxt, rank):
            plan.bn = nxt
        elif (fuse_sign and _is_linear(layer) and nxt is not None and is_pool(nxt)
              and single(nxt.name) is not None and _is_bn_foldable(single(nxt.name), rank)
              and packed_consumers_ok(single(nxt.name).name, channels, rank)):
            plan.pool_before_bn = nxt
            plan.bn = single(nxt.name)
            plan.bitpacked = True
        tail = plan.bn.name if plan.bn is not None else name
        if fuse_sign and not plan.bitpacked and _is_linear(layer) and rank == 4:
            after = single(tail)
            if after is not None and is_pool(after) and packed_consumers_ok(
                    after.name, channels, rank):
                plan.pool_after = after
                plan.bitpacked = True
        if fuse_sign and not plan.bitpacked and _is_linear(layer):
            plan.bitpacked = packed_consumers_ok(tail, channels, rank)
        plans[name] = plan

    # Which supported layers receive bits.
    for plan in plans.values():
        if not plan.bitpacked:
            continue
        tail = plan.layer.name
        for step in (plan.pool_before_bn, plan.bn, plan.pool_after):
            if step is not None:
                tail = step.name
        for c in consumers[tail]:
            targets = consumers[c] if isinstance(by_name[c], tf.keras.layers.Flatten) else [c]
            for t in targets:
                plans[t].input_packed = True
    return plans, float_layers


# --------------------------------------------------------------------------
# Weight folding.


def _transform_params(plan):
    """(multiplier, bias) float32 numpy arrays or None, for the output transform.

    output = dot * scale (XNOR) + layer bias, then batch norm
    y * inv + (beta - mean * inv) with inv = rsqrt(var + eps) * gamma, as
    tf.nn.batch_normalization computes it.
    """
    layer = plan.layer
    kernel = tf.convert_to_tensor(layer.kernel)
    multiplier = bias = None
    if isinstance(layer.kernel_quantizer, _XNOR_QUANTIZERS):
        axes = list(range(len(kernel.shape) - 1))
        multiplier = tf.reduce_mean(tf.abs(kernel), axis=axes)
    if layer.use_bias:
        bias = tf.convert_to_tensor(layer.bias)
    bn = plan.bn
    if bn is not None:
        inv = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
        if bn.scale:
            inv = inv * bn.gamma
        shift = -bn.moving_mean * inv
        if bn.center:
            shift = bn.beta + shift
        multiplier = inv if multiplier is None else multiplier * inv
        bias = shift if bias is None else bias * inv + shift
    to_np = lambda t: None if t is None else np.asarray(t, np.float32)  # noqa: E731
    return to_np(multiplier), to_np(bias)


def _make_layer(plan, word_bits):
    layer = plan.layer
    multiplier, bias = _transform_params(plan)
    kernel = np.asarray(layer.kernel, np.float32)
    common = dict(word_bits=word_bits, input_packed=plan.input_packed,
                  output="bitpacked" if plan.bitpacked else "float",
                  activation=tf.keras.activations.serialize(layer.activation),
                  has_multiplier=multiplier is not None, has_bias=bias is not None,
                  multiplier=multiplier, bias=bias, name=layer.name)
    if isinstance(layer, lq.layers.QuantDense):
        packed = _ops().bitpack_reference(kernel.T, word_bits)
        return PackedBinaryDense(layer.units, kernel.shape[0], packed_kernel=packed, **common)
    packed = _ops().bitpack_reference(np.transpose(kernel, (3, 0, 1, 2)), word_bits)
    pad_value = int(float(layer.pad_values)) if layer.padding == "same" else 0
    return PackedBinaryConv2D(
        layer.filters, layer.kernel_size, kernel.shape[2], strides=layer.strides,
        padding=layer.padding, pad_value=pad_value, dilations=layer.dilation_rate,
        packed_kernel=packed, **common)


def _weight_bytes(weights):
    return int(sum(np.asarray(w).nbytes for w in weights))


def to_packed(model, *, word_bits=32, fold_batch_norm=True, bitpacked_outputs=True,
              warn=True):
    """Converts a trained larq model to an inference model on packed ops.

    Args:
      model: A built ``tf.keras`` Sequential or functional model with larq
        ``QuantDense``/``QuantConv2D`` layers.
      word_bits: 32 or 64, the packed word size.
      fold_batch_norm: Fold a following BatchNormalization into the ops'
        output transform.
      bitpacked_outputs: Let ops emit sign bits for packed consumers (needs
        ``fold_batch_norm`` to matter for batch-normalized networks).
      warn: Warn for each larq layer left in float.

    Returns:
      A ``tf.keras.Model`` for inference with the same inputs and outputs,
      with a ``packing_report`` attribute (:class:`PackingReport`). Layers
      that were not converted are shared with `model`, not copied.

    Raises:
      ValueError: `word_bits` is not 32 or 64, or `model` is not a built
        Sequential/functional Keras model.
    """
    if word_bits not in (32, 64):
        raise ValueError(f"`word_bits` must be 32 or 64, got {word_bits!r}.")
    if not isinstance(model, tf.keras.Model) or not getattr(model, "_is_graph_network", False) \
            and not isinstance(model, tf.keras.Sequential):
        raise ValueError(
            f"`model` must be a built Sequential or functional tf.keras model, got {model!r}.")
    if not model.built:
        raise ValueError("`model` must be built (call it once or give an input shape).")
    plans, float_layers = _plan(model, word_bits, fold_batch_norm, bitpacked_outputs)
    if warn:
        for name, reason in float_layers:
            warnings.warn(f"tfdisc.convert.to_packed: layer '{name}' stays float: {reason}",
                          stacklevel=2)

    replacements = {}
    folded, bitpacked = [], []
    binary_float = binary_packed = 0
    for name, plan in plans.items():
        new = _make_layer(plan, word_bits)
        replacements[name] = new
        binary_float += _weight_bytes(plan.layer.get_weights())
        if plan.bn is not None:
            folded.append(plan.bn.name)
            binary_float += _weight_bytes(plan.bn.get_weights())
            replacements[plan.bn.name] = tf.keras.layers.Activation(
                "linear", name=f"{plan.bn.name}_folded")
        if plan.bitpacked:
            bitpacked.append(name)
        for pool in (plan.pool_before_bn, plan.pool_after):
            if pool is None:
                continue
            or_mask = None
            if pool is plan.pool_before_bn:
                multiplier, _ = _transform_params(plan)
                negative = (multiplier < 0).astype(np.float32) * -1.0
                if negative.any():
                    or_mask = _ops().bitpack_reference(negative, word_bits)
            replacements[pool.name] = PackedMaxPool2D(
                pool.pool_size, pool.strides, pool.padding, word_bits=word_bits,
                or_mask=or_mask,
                name=f"{pool.name}_packed")

    def clone(layer):
        return replacements.get(layer.name, layer)

    packed_model = tf.keras.models.clone_model(model, clone_function=clone)
    for name in replacements:
        layer = replacements[name]
        if isinstance(layer, _PackedLayer):
            binary_packed += _weight_bytes(layer.get_weights())
    report = PackingReport(
        packed_layers=tuple(plans),
        float_layers=tuple(float_layers),
        folded_batch_norms=tuple(folded),
        bitpacked_outputs=tuple(bitpacked),
        float_bytes=_weight_bytes(model.get_weights()),
        packed_bytes=_weight_bytes(packed_model.get_weights()),
        binary_float_bytes=binary_float,
        binary_packed_bytes=binary_packed,
    )
    packed_model.packing_report = report
    return packed_model
