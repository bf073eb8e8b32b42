"""Which larq layers of a model can run bit-packed, and with what fused.

``plan(model)`` reads the layer graph of a Sequential or functional
``tf.keras`` model and returns one :class:`Plan` per larq
``QuantDense``/``QuantConv2D`` that can run on sign-bit ops, saying which
batch norm and max pools fuse into it and whether it may emit sign bits. It
builds no layer and needs no op library, so exporters (``tfdisc.export``)
reuse it as well as ``tfdisc.convert.to_packed``.
"""
import dataclasses

import larq as lq
import tensorflow as tf

__all__ = [
    "Plan",
    "SIGN_QUANTIZERS",
    "XNOR_QUANTIZERS",
    "check_model",
    "float_conv_batch_norms",
    "graph",
    "is_batch_norm_foldable",
    "is_sign",
    "plan",
    "unsupported_reason",
]

#: Input/kernel quantizers whose forward pass is ``sign`` (0 -> +1).
SIGN_QUANTIZERS = (lq.quantizers.SteSign, lq.quantizers.ApproxSign, lq.quantizers.SwishSign)
#: Kernel quantizers computing sign times the per-channel mean |w| (XNOR-Net).
XNOR_QUANTIZERS = (lq.quantizers.MagnitudeAwareSign,)

_QUANT_LAYERS = (lq.layers.QuantDense, lq.layers.QuantConv2D)


def _is_keras3(model):
    module = type(model).__module__
    return module.split(".")[0] == "keras" or any(
        c.__module__.startswith("keras.") for c in type(model).__mro__)


def check_model(model, caller):
    """Raises ``ValueError`` unless `model` is a built Sequential/functional tf-keras model.

    Args:
      model: The model to check.
      caller: Name of the public function, for the message.
    """
    if _is_keras3(model):
        raise ValueError(
            f"{caller}: `model` is a Keras 3 model ({type(model).__module__}."
            f"{type(model).__name__}); tfdisc and larq work on tf-keras (legacy Keras) "
            "models only. Import tfdisc before TensorFlow/Keras (it sets "
            "TF_USE_LEGACY_KERAS=1), then build or load the model with tf.keras "
            "(e.g. tfdisc.export.load('model.keras')).")
    if not isinstance(model, tf.keras.Model) or not getattr(model, "_is_graph_network", False) \
            and not isinstance(model, tf.keras.Sequential):
        raise ValueError(
            f"{caller}: `model` must be a built Sequential or functional tf.keras model, "
            f"got {model!r}.")
    if not model.built:
        raise ValueError(
            f"{caller}: `model` must be built (call it once or give an input shape).")


def graph(model):
    """(layers by name, producers by name, consumers by name, output names).

    A layer used at more than one call site is recorded with all its
    producers and the marker ``"<shared>"``; the model input is ``"<input>"``
    for Sequential models.
    """
    by_name = {layer.name: layer for layer in model.layers}
    producers = {name: [] for name in by_name}
    consumers = {name: [] for name in by_name}
    if isinstance(model, tf.keras.Sequential):
        names = [l.name for l in model.layers]
        if names:
            producers[names[0]].append("<input>")
        for a, b in zip(names, names[1:]):
            consumers[a].append(b)
            producers[b].append(a)
        outputs = {names[-1]} if names else set()
        return by_name, producers, consumers, outputs
    config = model.get_config()
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


def is_sign(quantizer):
    """True for quantizers whose forward pass is larq's ``sign``."""
    return isinstance(quantizer, SIGN_QUANTIZERS)


def unsupported_reason(layer):
    """Why a larq layer cannot run on sign-bit ops, or None if it can."""
    if not is_sign(layer.input_quantizer):
        return f"input_quantizer {type(layer.input_quantizer).__name__} is not a sign"
    if not (is_sign(layer.kernel_quantizer)
            or isinstance(layer.kernel_quantizer, XNOR_QUANTIZERS)):
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


def _one_call_one_input(producers, name):
    """True when layer `name` is called once, on one input (see graph())."""
    return len(producers[name]) == 1 and producers[name][0] != "<shared>"


def _single_consumer(by_name, producers, consumers, outputs, name):
    """The one layer that consumes `name`'s output and nothing else, or None
    (also None when `name` is a model output). Arguments as returned by graph()."""
    c = consumers[name]
    if len(c) == 1 and name not in outputs and len(producers[c[0]]) == 1:
        return by_name[c[0]]
    return None


def is_batch_norm_foldable(layer, rank):
    """True for a BatchNormalization over the last axis of a rank-`rank` input."""
    if not isinstance(layer, tf.keras.layers.BatchNormalization):
        return False
    axis = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return axis in ([rank - 1], [-1]) and not getattr(layer, "renorm", False)


def _is_linear(layer):
    return layer.activation in (None, tf.keras.activations.linear)


def _packed_consumers_ok(layers_graph, supported, word_bits, name, channels, rank):
    """All consumers of `name` can take its output as sign bits with
    `channels` channels: supported (packed) layers, or a Flatten of NHWC
    whose rows fill whole words and that feeds only packed dense layers."""
    by_name, producers, consumers, outputs = layers_graph
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


def _mark_packed_inputs(layers_graph, plans, tail):
    """The packed layers fed by `tail` (directly or through a Flatten) receive bits."""
    by_name, _, consumers, _ = layers_graph
    for c in consumers[tail]:
        targets = consumers[c] if isinstance(by_name[c], tf.keras.layers.Flatten) else [c]
        for t in targets:
            plans[t].input_packed = True


@dataclasses.dataclass
class Plan:
    """How one larq layer runs on sign-bit ops.

    Attributes:
      layer: The larq ``QuantDense``/``QuantConv2D``.
      bn: The BatchNormalization folded into its output transform, or None.
      pool_before_bn: A MaxPool2D between the layer and ``bn`` (run on bits).
      pool_after: A MaxPool2D after the (folded) output (run on bits).
      bitpacked: Whether the layer may emit sign bits (every consumer is a
        binary layer, possibly through the pools and a Flatten).
      input_packed: Whether the layer receives sign bits.
    """

    layer: object
    bn: object = None
    pool_before_bn: object = None
    pool_after: object = None
    bitpacked: bool = False
    input_packed: bool = False


def plan(model, word_bits=32, fold_batch_norm=True, bitpacked_outputs=True):
    """Plans the conversion of every larq layer of `model` that can run packed.

    Args:
      model: A built Sequential or functional ``tf.keras`` model.
      word_bits: 32 or 64; a Flatten passes packed NHWC bits only when the
        channels fill whole words.
      fold_batch_norm: Fold a following BatchNormalization.
      bitpacked_outputs: Let layers emit sign bits to packed consumers.

    Returns:
      ``(plans, float_layers)``: ``{name: Plan}`` for the supported layers and
      ``(name, reason)`` for the larq layers that must stay float.
    """
    by_name, producers, consumers, outputs = graph(model)
    fuse_sign = bitpacked_outputs
    supported, float_layers = {}, []
    for name, layer in by_name.items():
        if not isinstance(layer, _QUANT_LAYERS):
            continue
        if not _one_call_one_input(producers, name):
            float_layers.append((name, "layer is shared or has several inputs"))
            continue
        reason = unsupported_reason(layer)
        if reason:
            float_layers.append((name, reason))
        else:
            supported[name] = layer

    def single(name):
        return _single_consumer(by_name, producers, consumers, outputs, name)

    def is_pool(layer):
        return (isinstance(layer, tf.keras.layers.MaxPool2D)
                and layer.data_format == "channels_last")

    def packed_consumers_ok(name, channels, rank):
        return _packed_consumers_ok((by_name, producers, consumers, outputs), supported,
                                    word_bits, name, channels, rank)

    plans = {}
    for name, layer in supported.items():
        p = Plan(layer)
        rank = len(layer.output_shape)
        channels = layer.output_shape[-1]
        nxt = single(name)
        if not fold_batch_norm:
            pass
        elif _is_linear(layer) and nxt is not None and is_batch_norm_foldable(nxt, rank):
            p.bn = nxt
        elif (fuse_sign and _is_linear(layer) and nxt is not None and is_pool(nxt)
              and single(nxt.name) is not None
              and is_batch_norm_foldable(single(nxt.name), rank)
              and packed_consumers_ok(single(nxt.name).name, channels, rank)):
            p.pool_before_bn = nxt
            p.bn = single(nxt.name)
            p.bitpacked = True
        tail = p.bn.name if p.bn is not None else name
        if fuse_sign and not p.bitpacked and _is_linear(layer) and rank == 4:
            after = single(tail)
            if after is not None and is_pool(after) and packed_consumers_ok(
                    after.name, channels, rank):
                p.pool_after = after
                p.bitpacked = True
        if fuse_sign and not p.bitpacked and _is_linear(layer):
            p.bitpacked = packed_consumers_ok(tail, channels, rank)
        plans[name] = p

    # Which supported layers receive bits.
    for p in plans.values():
        if not p.bitpacked:
            continue
        tail = p.layer.name
        for step in (p.pool_before_bn, p.bn, p.pool_after):
            if step is not None:
                tail = step.name
        _mark_packed_inputs((by_name, producers, consumers, outputs), plans, tail)
    return plans, float_layers


def bit_output_float_convs(model, pairs, plans, word_bits=32):
    """The ``(conv, bn)`` of `pairs` (from :func:`float_conv_batch_norms`)
    whose batch norm's output only feeds packed layers (`plans`, from
    :func:`plan`): the folded convolution can emit sign bits
    (``tfdisc.ops.float_conv2d_bits``), and those layers' plans are marked
    ``input_packed`` here.

    Why: TensorFlow would write the float output (16 MiB for alexnet_cifar's
    first layer at batch 32) only for the next layer to read it back and
    pack its signs.
    """
    layers_graph = graph(model)
    bits = []
    for conv, bn in pairs:
        if _packed_consumers_ok(layers_graph, plans, word_bits, bn.name, conv.filters, 4):
            _mark_packed_inputs(layers_graph, plans, bn.name)
            bits.append((conv, bn))
    return bits


def _is_float_conv(layer):
    """A full-precision channels-last Conv2D (also a larq QuantConv2D without quantizers)."""
    if type(layer) not in (tf.keras.layers.Conv2D, lq.layers.QuantConv2D):
        return False
    if isinstance(layer, lq.layers.QuantConv2D):
        pad = layer.pad_values
        if layer.input_quantizer is not None or layer.kernel_quantizer is not None:
            return False
        if layer.padding == "same" and (tf.is_tensor(pad) or float(pad) != 0.0):
            return False
    return (layer.data_format == "channels_last" and getattr(layer, "groups", 1) == 1
            and _is_linear(layer))


def float_conv_batch_norms(model):
    """``[(conv, bn)]``: full-precision Conv2D layers whose only consumer is an
    inference BatchNormalization over channels, which folds into the
    convolution's kernel and bias.

    Folding matters for speed, not only size: TensorFlow fuses Conv2D +
    FusedBatchNorm into one oneDNN convolution with the batch norm as binary
    post-ops, and on a CPU without AVX-512 oneDNN runs that (gemm:jit) at
    batch 1 about 20x slower than the convolution with a bias (measured with
    ``ONEDNN_MAX_CPU_ISA=AVX2``: 3->128 channels, 32x32, 14.9 vs 0.7 ms).
    """
    layers_graph = graph(model)
    by_name, producers = layers_graph[:2]
    pairs = []
    for name, layer in by_name.items():
        if not _is_float_conv(layer) or not _one_call_one_input(producers, name):
            continue
        bn = _single_consumer(*layers_graph, name)
        if bn is not None and is_batch_norm_foldable(bn, 4):
            pairs.append((layer, bn))
    return pairs
