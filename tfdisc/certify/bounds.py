"""Interval bound propagation (IBP; Gowal et al. 2018) through zoo models.

Starting from a box on the *output* of the input quantizer (see
``tfdisc.certify.box``), every layer maps an interval ``[l, u]`` to a sound
interval of its outputs:

* ``Dense``/``Conv2D`` (and larq ``QuantDense``/``QuantConv2D``): centre/radius
  form ``W·c + b ± |W|·r``. larq layers first apply their input quantizer to
  both ends (``ste_sign`` is non-decreasing with sign(0) = +1), use the
  quantized kernel (``ste_sign`` or ``magnitude_aware_sign``) and pad with
  ``pad_values`` after the input quantizer, as larq does.
* ``BatchNormalization`` at inference: the affine map ``a·x + b``; a negative
  ``a`` (negative γ) swaps the ends.
* Monotone layers (ReLU, max/average pooling, flatten, reshape, monotone
  activations): applied to both ends. ``Add``: ends add.
* The last ``Dense`` in margin form: the bound on ``z_j − z_y`` is computed
  from ``W_j − W_y`` directly.

Any other layer raises ``UnsupportedLayerError`` naming it, as do (``checks``)
layers whose code is not Keras's, larq's or tfdisc's (custom layers, an
overridden ``call``), layers called with ``training=True`` in the graph, and
layers not computing in float32 (mixed precision). ``check_model`` runs every
check eagerly, before anything is traced.

With ``exact=True`` (certification) every linear map is widened by the
worst-case float32 rounding error of the model's own evaluation
(``γ_n·Σ|w||x|`` with ``γ_n = n·u/(1 − n·u)``, u = 2⁻²⁴) plus that of the bound
computation itself (also float32: three times the model's term, a relative
``γ_n`` on the radius product and one ulp outward on every end), so the model's
float32 outputs lie inside the bounds whatever the summation order.
With ``exact=False`` (training) bounds are plain float32, differentiable, and
BN may use the batch statistics of a clean batch propagated alongside.
"""
import numpy as np
import tensorflow as tf

from tfdisc.certify.checks import (UnsupportedLayerError, check_call_kwargs, check_dtype,
                                   check_library_code, library)
from tfdisc.layers import BitDepthQuantization

__all__ = ["UnsupportedLayerError", "check_model", "logit_bounds", "margin_upper"]

_U32 = 2.0**-24
_TINY = 1e-30  # keeps radii positive (underflow)

_MONOTONE_ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "elu", "selu", "softplus",
                         "softsign", "relu6", "hard_sigmoid", "exponential"}
_MONOTONE_QUANTIZERS = {"ste_sign", "SteSign", "approx_sign", "ApproxSign", "swish_sign",
                        "SwishSign", "ste_heaviside", "SteHeaviside"}


def _gamma(n):
    nu = n * _U32
    return 2.0 * nu / (1.0 - nu)  # factor 2: slack for the model's non-fused ops


def _name(obj):
    if obj is None:
        return None
    return getattr(obj, "__name__", None) or type(obj).__name__


def _activation(layer, fn):
    name = _name(fn)
    known = name in _MONOTONE_ACTIVATIONS and fn is tf.keras.activations.get(name)
    if not known:  # a user function merely named "relu" is not Keras's relu
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has activation {name!r}, which "
            f"interval propagation does not support (monotone only: "
            f"{sorted(_MONOTONE_ACTIVATIONS)}).")
    return fn


def _graph(model):
    """[(layer, [input layer names])] in topological order, and the output layer name.

    Raises ``UnsupportedLayerError`` for models that are not one-input, one-output functional or
    Sequential models, shared layers, layers called in training mode and non-float32 layers.
    """
    if isinstance(model, tf.keras.Sequential):
        layers = list(model.layers)
        edges, prev = [], "__input__"
        for layer in layers:
            check_dtype(layer)
            edges.append((layer, [prev]))
            prev = layer.name
        if not edges:
            raise UnsupportedLayerError(f"Model {model.name!r} has no layers.")
        return edges, "__input__", prev
    try:
        config = model.get_config()
    except NotImplementedError:
        config = None
    if not isinstance(config, dict) or not all(
            key in config for key in ("layers", "input_layers", "output_layers")):
        raise UnsupportedLayerError(
            f"Model {model.name!r} ({type(model).__name__}) is not a functional or Sequential "
            f"Keras model; certification reads the layer graph and needs one of those.")
    if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
        raise UnsupportedLayerError(
            f"Model {model.name!r}: certification needs one input and one output.")
    by_name = {layer.name: layer for layer in model.layers}
    edges = []
    for entry in config["layers"]:
        layer = by_name[entry["name"]]
        nodes = entry["inbound_nodes"]
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        check_dtype(layer)
        if len(nodes) != 1:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} is called {len(nodes)} times; shared layers are not "
                f"supported.")
        node = nodes[0]
        if isinstance(node, dict):  # newer serialization
            args = node.get("args", [])
            raise UnsupportedLayerError(f"Unrecognised model config format at {layer.name!r}: "
                                        f"{args!r}.")
        if node and isinstance(node[0], str):  # TF-op layers: one flat [name, node, tensor, kwargs]
            node = [node]
        for inbound in node:
            check_call_kwargs(layer, inbound[3] if len(inbound) > 3 else None)
        edges.append((layer, [inbound[0] for inbound in node]))
    return edges, config["input_layers"][0][0], config["output_layers"][0][0]


class _Interval:
    """Lower and upper bound, and an optional clean point (training BN statistics)."""

    def __init__(self, lower, upper, point=None):
        self.lower, self.upper, self.point = lower, upper, point

    def map(self, fn):
        return _Interval(fn(self.lower), fn(self.upper),
                         None if self.point is None else fn(self.point))


class _Propagator:
    def __init__(self, exact, training):
        self.exact = exact
        self.training = training
        self.dtype = tf.float32

    def cast(self, t):
        return tf.cast(t, self.dtype)

    # Linear maps in centre/radius form -----------------------------------------------------
    def _linear(self, iv, apply, weight, bias, fan_in):
        w = self.cast(weight)
        aw = tf.abs(w)
        centre = (iv.upper + iv.lower) / 2.0
        radius = (iv.upper - iv.lower) / 2.0
        mid = apply(centre, w)
        if self.exact:
            # Model error γ|W|·max|x| and ours (2γ, centre product and centre/radius
            # rounding) in one product |W|·(r + 3γ·max|x|), itself rounded: ×(1 + γ).
            gamma = _gamma(fan_in + 1)
            mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
            rad = apply(radius + 3.0 * gamma * mag, aw) * (1.0 + gamma) + _TINY
            if bias is not None:
                rad += 3.0 * gamma * tf.abs(self.cast(bias))
        else:
            rad = apply(radius, aw)
        if bias is not None:
            mid += self.cast(bias)
        point = None
        if iv.point is not None:
            point = apply(iv.point, w) + (0.0 if bias is None else self.cast(bias))
        return self._ends(mid - rad, mid + rad, point)

    def _ends(self, lower, upper, point=None):
        """Interval from computed ends; exact mode rounds them one ulp outward."""
        if self.exact:
            lower = tf.math.nextafter(lower, tf.constant(-np.inf, lower.dtype))
            upper = tf.math.nextafter(upper, tf.constant(np.inf, upper.dtype))
        return _Interval(lower, upper, point)

    def input_quantize(self, layer, iv):
        quantizer = getattr(layer, "input_quantizer", None)
        if quantizer is None:
            return iv
        if _name(quantizer) not in _MONOTONE_QUANTIZERS or not library(quantizer):
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} has input quantizer {_name(quantizer)!r}; supported "
                f"(non-decreasing): {sorted(_MONOTONE_QUANTIZERS)}.")
        if self.exact:  # the quantizer sees float32 values in the model
            return iv.map(lambda t: self.cast(quantizer(tf.cast(t, tf.float32))))
        return iv.map(quantizer)

    def kernel(self, layer):
        kernel = layer.kernel
        quantizer = getattr(layer, "kernel_quantizer", None)
        if quantizer is None:
            return tf.convert_to_tensor(kernel)
        latent = getattr(kernel, "latent_variable", kernel)
        return quantizer(tf.convert_to_tensor(latent))

    def dense(self, layer, iv):
        iv = self.input_quantize(layer, iv)
        kernel = self.kernel(layer)

        def apply(t, w):
            return tf.tensordot(t, w, axes=[[t.shape.rank - 1], [0]])

        out = self._linear(iv, apply, kernel, layer.bias if layer.use_bias else None,
                           int(kernel.shape[0]))
        return self._activate(layer, out)

    def conv(self, layer, iv):
        if layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r}: only channels_last, groups=1 convolutions are supported.")
        if layer.padding not in ("valid", "same"):
            raise UnsupportedLayerError(f"Layer {layer.name!r}: padding {layer.padding!r}.")
        iv = self.input_quantize(layer, iv)
        kernel = self.kernel(layer)
        pad_value = float(np.asarray(tf.keras.backend.get_value(getattr(layer, "pad_values",
                                                                       0.0))))
        padding = layer.padding.upper()
        if padding == "SAME" and pad_value != 0.0:
            shape = iv.lower.shape
            pads = [[0, 0]]
            for size, stride, dil, k in zip(shape[1:3], layer.strides, layer.dilation_rate,
                                            layer.kernel_size):
                out = (size + stride - 1) // stride
                total = max((out - 1) * stride + (k - 1) * dil + 1 - size, 0)
                pads.append([total // 2, total - total // 2])
            pads.append([0, 0])
            iv = iv.map(lambda t: tf.pad(t, pads, constant_values=pad_value))
            padding = "VALID"

        def apply(t, w):
            return tf.nn.convolution(t, w, strides=layer.strides, padding=padding,
                                     dilations=layer.dilation_rate)

        # γ of 16× the fan-in: room for the model's convolution algorithm (oneDNN may pick a
        # fast algorithm whose rounding exceeds the plain dot-product bound).
        fan_in = 16 * int(np.prod(kernel.shape[:3]))
        out = self._linear(iv, apply, kernel, layer.bias if layer.use_bias else None, fan_in)
        return self._activate(layer, out)

    def _activate(self, layer, iv):
        fn = _activation(layer, layer.activation)
        if _name(fn) == "linear":
            return iv
        return iv.map(fn)

    def batch_norm(self, layer, iv):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = iv.lower.shape.rank
        axes = [a % rank for a in axes]
        if axes != [rank - 1]:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r}: batch norm over axes {layer.axis} (last axis only).")
        if self.training and iv.point is not None:
            mean, var = tf.nn.moments(iv.point, axes=list(range(rank - 1)))
        else:
            mean, var = self.cast(layer.moving_mean), self.cast(layer.moving_variance)
        scale = tf.math.rsqrt(var + layer.epsilon)
        if layer.gamma is not None:
            scale = scale * self.cast(layer.gamma)
        shift = -mean * scale
        if layer.beta is not None:
            shift = shift + self.cast(layer.beta)
        centre = (iv.upper + iv.lower) / 2.0
        radius = (iv.upper - iv.lower) / 2.0
        mid = centre * scale + shift
        rad = radius * tf.abs(scale)  # |a|: negative γ swaps the ends
        if self.exact:
            mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
            beta = 0.0 if layer.beta is None else tf.abs(self.cast(layer.beta))
            rad += 32.0 * _U32 * (mag * tf.abs(scale) + tf.abs(mean * scale) + beta) + _TINY
        point = None if iv.point is None else iv.point * scale + shift
        return self._ends(mid - rad, mid + rad, point)

    def monotone(self, layer, iv):
        """Non-decreasing layers map the ends (exact in float32, but average pooling)."""
        out = iv.map(layer)
        if self.exact and isinstance(layer, (tf.keras.layers.AveragePooling2D,
                                             tf.keras.layers.GlobalAveragePooling2D)):
            mag = tf.maximum(tf.abs(out.lower), tf.abs(out.upper))
            pool = getattr(layer, "pool_size", None)
            n = int(np.prod(pool)) if pool is not None else int(np.prod(iv.lower.shape[1:3]))
            err = 3.0 * _gamma(n + 1) * mag + _TINY
            return self._ends(out.lower - err, out.upper + err, out.point)
        return out

    def add(self, layer, ivs):
        lower = tf.add_n([iv.lower for iv in ivs])
        upper = tf.add_n([iv.upper for iv in ivs])
        point = None
        if all(iv.point is not None for iv in ivs):
            point = tf.add_n([iv.point for iv in ivs])
        if self.exact:
            mag = tf.add_n([tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper)) for iv in ivs])
            err = 3.0 * _gamma(len(ivs)) * mag + _TINY
            return self._ends(lower - err, upper + err, point)
        return _Interval(lower, upper, point)

    def layer(self, layer, ivs):
        k = tf.keras.layers
        if isinstance(layer, k.Add):
            return self.add(layer, ivs)
        if len(ivs) != 1:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) with {len(ivs)} inputs is not "
                f"supported by interval propagation.")
        iv = ivs[0]
        if isinstance(layer, k.Dense):
            return self.dense(layer, iv)
        if isinstance(layer, k.Conv2D) and not isinstance(layer, (k.Conv2DTranspose,
                                                                  k.DepthwiseConv2D)):
            return self.conv(layer, iv)
        if isinstance(layer, k.BatchNormalization):
            return self.batch_norm(layer, iv)
        if isinstance(layer, k.Activation):
            _activation(layer, layer.activation)
            return self.monotone(layer, iv)
        if isinstance(layer, k.ReLU):
            return self.monotone(layer, iv)
        if isinstance(layer, (k.MaxPooling2D, k.AveragePooling2D, k.GlobalMaxPooling2D,
                              k.GlobalAveragePooling2D, k.Flatten, k.Reshape)):
            return self.monotone(layer, iv)
        if isinstance(layer, (k.Dropout, k.SpatialDropout2D, k.GaussianNoise)):
            return iv  # identity at inference
        raise UnsupportedLayerError(
            f"Interval propagation does not support layer {layer.name!r} of type "
            f"{type(layer).__name__}.")


def _margin_layer(layer):
    """True if the output layer can be bounded in margin form."""
    return (isinstance(layer, tf.keras.layers.Dense) and _name(layer.activation) == "linear")


def _run(model, lower, upper, *, exact, training=False, point=None, margin=True):
    """Propagates to the logits; returns (interval at the final layer's input, final layer)."""
    prop = _Propagator(exact, training)
    edges, input_name, output_name = _graph(model)
    values = {input_name: _Interval(prop.cast(lower), prop.cast(upper),
                                    None if point is None else prop.cast(point))}
    for layer, inbound in edges:
        ivs = [values[name] for name in inbound]
        check_library_code(layer)
        if isinstance(layer, BitDepthQuantization):
            if inbound != [input_name]:
                raise UnsupportedLayerError(
                    f"BitDepthQuantization {layer.name!r} must follow the model input directly.")
            values[layer.name] = ivs[0]  # the box is already in quantized space
            continue
        if layer.name == output_name and margin and _margin_layer(layer):
            return ivs[0], layer
        try:
            values[layer.name] = prop.layer(layer, ivs)
        except UnsupportedLayerError:
            raise
        except (ValueError, TypeError, tf.errors.OpError) as e:
            raise UnsupportedLayerError(
                f"Interval propagation failed at layer {layer.name!r} of type "
                f"{type(layer).__name__}: {e}") from e
    return values[output_name], None


def check_model(model, input_shape=None):
    """Raises ``UnsupportedLayerError`` naming the first layer IBP cannot bound.

    Runs eagerly through every path the bounds take (logit bounds, the margin
    form, training-mode statistics), so an unsupported model fails here with
    a clear error, before anything is traced. Also refused: layers called with
    ``training=True`` in the graph, layers not computing in float32 (mixed
    precision), shared layers, models that are not one-input, one-output
    functional or Sequential models.

    Args:
      model: Keras model returning logits.
      input_shape: shape of one input (without the batch axis); default the
        model's, which must then be fully known.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a Keras model, got {type(model).__name__}.")
    _graph(model)  # structure, training-mode calls and dtypes first: no propagation needed
    try:
        model_shape = model.input_shape
    except AttributeError:
        raise UnsupportedLayerError(
            f"Model {model.name!r} is not built (no input shape); build it on an Input first."
        ) from None
    if isinstance(model_shape, list):
        raise UnsupportedLayerError(
            f"Model {model.name!r}: certification needs one input and one output.")
    shape = list(model_shape[1:] if input_shape is None else input_shape)
    if any(d is None for d in shape):
        raise UnsupportedLayerError(
            f"Model {model.name!r} has input shape {model_shape} with unknown dimensions; pass "
            f"`input_shape` (one example's shape).")
    zeros = tf.zeros([1] + shape, tf.float32)
    _run(model, zeros, zeros, exact=False, margin=False)
    y = tf.zeros([1], tf.int32)
    margin_upper(model, zeros, zeros, y, exact=True)
    margin_upper(model, zeros, zeros, y, exact=False, training=True, point=zeros)


def logit_bounds(model, lower, upper, *, exact=True):
    """Elementwise bounds ``(l, u)`` on the logits over the input box.

    Args:
      model: Keras model (logits output).
      lower, upper: bounds of the quantized input (output of the model's
        ``BitDepthQuantization``), or of the raw input without a quantizer.
      exact: widened for float32 rounding (certification) or plain (training).
    """
    iv, _ = _run(model, lower, upper, exact=exact, margin=False)
    return iv.lower, iv.upper


def margin_upper(model, lower, upper, y, *, exact=True, training=False, point=None):
    """Upper bounds on ``z_j − z_y`` for every class j over the input box (0 at j = y).

    The example is certified if every j ≠ y has a negative bound. If the
    output layer is a linear ``Dense``, the bound is computed from ``W_j − W_y``
    directly (margin form); otherwise from the logit bounds.

    Args:
      y: int labels [batch].
      training: use batch statistics of ``point`` (the clean quantized batch)
        for batch norm, as in a training step.
      point: clean quantized inputs, propagated alongside for BN statistics.

    Returns:
      float32 tensor [batch, classes].
    """
    iv, last = _run(model, lower, upper, exact=exact, training=training, point=point)
    y = tf.cast(y, tf.int32)
    if last is None:
        onehot = tf.one_hot(y, iv.upper.shape[-1], dtype=iv.upper.dtype)
        low_y = tf.reduce_sum(iv.lower * onehot, axis=-1, keepdims=True)
        return (iv.upper - low_y) * (1.0 - onehot)
    prop = _Propagator(exact, training)
    w = prop.cast(prop.kernel(last))
    b = prop.cast(last.bias) if last.use_bias else tf.zeros([w.shape[1]], prop.dtype)
    if iv.lower.shape.rank != 2:
        raise UnsupportedLayerError(
            f"Output layer {last.name!r} ({type(last).__name__}) must take a flat input "
            f"(rank 2, e.g. after Flatten); it takes rank {iv.lower.shape.rank}.")
    iv = prop.input_quantize(last, iv)
    centre = (iv.upper + iv.lower) / 2.0
    radius = (iv.upper - iv.lower) / 2.0
    num_classes = int(w.shape[1])
    w_y = tf.transpose(tf.gather(w, y, axis=1))  # [batch, hidden]
    mid = tf.tensordot(centre, w, 1) - tf.reduce_sum(centre * w_y, axis=1, keepdims=True)
    mid += b[None, :] - tf.gather(b, y)[:, None]
    # |W_j − W_y| for every (y, j): [classes, hidden, classes], then each example's block.
    diff = tf.abs(w[None, :, :] - tf.transpose(w)[:, :, None])
    rad_all = tf.tensordot(radius, diff, axes=[[1], [1]])  # [batch, classes_y, classes_j]
    rad = tf.gather(rad_all, y, axis=1, batch_dims=1)
    if exact:
        mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
        s = tf.tensordot(mag, tf.abs(w), 1) + tf.abs(b)[None, :]
        gamma = _gamma(int(w.shape[0]) + 1)
        err = 3.0 * gamma * (s + tf.gather(s, y, axis=1, batch_dims=1)[:, None])
        rad = rad * (1.0 + gamma) + err + _TINY
    onehot = tf.one_hot(y, num_classes, dtype=mid.dtype)
    upper = mid + rad
    if exact:
        upper = tf.math.nextafter(upper, tf.constant(np.inf, upper.dtype))
    return upper * (1.0 - onehot)
