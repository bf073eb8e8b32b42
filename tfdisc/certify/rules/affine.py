"""Bound rules of the affine layers: Dense, Conv2D (and larq's quantized ones), BatchNorm.

* ``Dense``/``Conv2D`` (and larq ``QuantDense``/``QuantConv2D``): centre/radius
  form ``W·c + b ± |W|·r``. larq layers first apply their input quantizer to
  both ends (``ste_sign`` is non-decreasing with sign(0) = +1), use the
  quantized kernel (``ste_sign`` or ``magnitude_aware_sign``) and pad with
  ``pad_values`` after the input quantizer, as larq does. A monotone
  activation follows on both ends.
* The last ``Dense`` in margin form: the bound on ``z_j − z_y`` is computed
  from ``W_j − W_y`` directly.
* ``BatchNormalization`` at inference: the affine map ``a·x + b``; a negative
  ``a`` (negative γ) swaps the ends. In training, batch statistics of the clean
  point.
"""
import larq as lq
import numpy as np
import tensorflow as tf

from tfdisc.certify import checks
from tfdisc.certify.rules import base
from tfdisc.certify.rules import elementwise

__all__ = ["BatchNormRule", "Conv2DRule", "DenseRule", "MONOTONE_QUANTIZERS", "input_quantize",
           "kernel"]

MONOTONE_QUANTIZERS = {"ste_sign", "SteSign", "approx_sign", "ApproxSign", "swish_sign",
                       "SwishSign", "ste_heaviside", "SteHeaviside"}


def _check_input_quantizer(layer):
    quantizer = getattr(layer, "input_quantizer", None)
    if quantizer is None:
        return
    name = elementwise.name(quantizer)
    if name not in MONOTONE_QUANTIZERS or not checks.library(quantizer):
        raise checks.UnsupportedLayerError(
            f"Layer {layer.name!r} has input quantizer {name!r}; supported "
            f"(non-decreasing): {sorted(MONOTONE_QUANTIZERS)}.")


def input_quantize(layer, iv, ctx):
    """``iv`` through the layer's (larq) input quantizer, if any: non-decreasing, both ends."""
    quantizer = getattr(layer, "input_quantizer", None)
    if quantizer is None:
        return iv
    _check_input_quantizer(layer)
    if ctx.exact:  # the quantizer sees float32 values in the model
        return iv.map(lambda t: ctx.cast(quantizer(tf.cast(t, tf.float32))))
    return iv.map(quantizer)


def kernel(layer):
    """The kernel the layer computes with: larq's quantized kernel, else the kernel."""
    weights = layer.kernel
    quantizer = getattr(layer, "kernel_quantizer", None)
    if quantizer is None:
        return tf.convert_to_tensor(weights)
    latent = getattr(weights, "latent_variable", weights)
    return quantizer(tf.convert_to_tensor(latent))


def _activate(layer, iv):
    fn = elementwise.check_activation(layer, layer.activation)
    if elementwise.name(fn) == "linear":
        return iv
    return iv.map(fn)


class DenseRule(base.BoundRule):
    """``Dense`` and larq ``QuantDense``."""

    def check(self, layer):
        _check_input_quantizer(layer)
        elementwise.check_activation(layer, layer.activation)

    def interval(self, layer, inputs, ctx):
        iv = input_quantize(layer, inputs[0], ctx)
        w = kernel(layer)

        def apply(t, w):
            return tf.tensordot(t, w, axes=[[t.shape.rank - 1], [0]])

        out = ctx.affine(iv, apply, w, layer.bias if layer.use_bias else None, int(w.shape[0]))
        return _activate(layer, out)

    def linear(self, layer, inputs, ctx):
        if getattr(layer, "input_quantizer", None) is not None:  # a sign activation
            raise NotImplementedError(self._missing(layer, "linear") + " (input quantizer)")
        act = elementwise.name(elementwise.check_activation(layer, layer.activation))
        iv = inputs[0]
        if act not in ("linear", "relu") or iv.lower.shape.rank != 2:
            raise NotImplementedError(self._missing(layer, "linear")
                                      + f" (activation {act!r}, input rank {iv.lower.shape.rank})")
        w32 = kernel(layer)
        bias = layer.bias if layer.use_bias else None

        def apply(t, w):
            return tf.tensordot(t, w, axes=[[1], [0]])

        pre = ctx.affine(iv, apply, w32, bias, int(w32.shape[0]))  # as `interval`, before act
        if not ctx.exact:  # certified training (CROWN-IBP): plain float32, differentiable
            wt = ctx.cast(w32)
            steps = [base.LinearStep("affine", back=lambda a: tf.einsum("bko,io->bki", a, wt),
                                     bias=None if bias is None else ctx.cast(bias),
                                     interval=pre)]
            return steps + ([base.LinearStep("relu")] if act == "relu" else [])
        w = np.asarray(w32, np.float64)
        b = None if bias is None else np.asarray(bias, np.float64)
        mag = np.maximum(np.abs(iv.lower.numpy()), np.abs(iv.upper.numpy())).astype(np.float64)
        s = mag @ np.abs(w) + (0.0 if b is None else np.abs(b))
        error = base.linear_error(s, int(w.shape[0]), int(w.shape[1]))
        steps = [base.LinearStep("affine", back=lambda a: a @ w.T, bias=b, error=error,
                                 interval=pre)]
        return steps + ([base.LinearStep("relu")] if act == "relu" else [])

    def margin_form(self, layer):
        # Keras's own linear activation only: a user function named "linear" is checked and
        # refused on the interval path.
        fn = layer.activation
        return (elementwise.name(fn) == "linear"
                and fn is tf.keras.activations.get("linear"))

    def margin(self, layer, iv, y, ctx):
        w = ctx.cast(kernel(layer))
        b = ctx.cast(layer.bias) if layer.use_bias else tf.zeros([w.shape[1]], ctx.dtype)
        if iv.lower.shape.rank != 2:
            raise checks.UnsupportedLayerError(
                f"Output layer {layer.name!r} ({type(layer).__name__}) must take a flat input "
                f"(rank 2, e.g. after Flatten); it takes rank {iv.lower.shape.rank}.")
        iv = input_quantize(layer, iv, ctx)
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
        if ctx.exact:
            mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
            s = tf.tensordot(mag, tf.abs(w), 1) + tf.abs(b)[None, :]
            g = base.gamma(int(w.shape[0]) + 1)
            err = 3.0 * g * (s + tf.gather(s, y, axis=1, batch_dims=1)[:, None])
            rad = rad * (1.0 + g) + err + base.TINY
        onehot = tf.one_hot(y, num_classes, dtype=mid.dtype)
        upper = mid + rad
        if ctx.exact:
            upper = tf.math.nextafter(upper, tf.constant(np.inf, upper.dtype))
        return upper * (1.0 - onehot)


base.register(tf.keras.layers.Dense, DenseRule())
base.register(lq.layers.QuantDense, DenseRule())


class Conv2DRule(base.BoundRule):
    """``Conv2D`` and larq ``QuantConv2D`` (channels_last, groups=1, valid/same padding)."""

    def check(self, layer):
        if layer.data_format != "channels_last" or getattr(layer, "groups", 1) != 1:
            raise checks.UnsupportedLayerError(
                f"Layer {layer.name!r}: only channels_last, groups=1 convolutions are supported.")
        if layer.padding not in ("valid", "same"):
            raise checks.UnsupportedLayerError(
                f"Layer {layer.name!r}: padding {layer.padding!r}.")
        _check_input_quantizer(layer)
        elementwise.check_activation(layer, layer.activation)

    def interval(self, layer, inputs, ctx):
        iv = input_quantize(layer, inputs[0], ctx)
        w = kernel(layer)
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
        fan_in = 16 * int(np.prod(w.shape[:3]))
        out = ctx.affine(iv, apply, w, layer.bias if layer.use_bias else None, fan_in)
        return _activate(layer, out)

    def linear(self, layer, inputs, ctx):
        if getattr(layer, "input_quantizer", None) is not None:  # a sign activation
            raise NotImplementedError(self._missing(layer, "linear") + " (input quantizer)")
        act = elementwise.name(elementwise.check_activation(layer, layer.activation))
        pad_value = float(np.asarray(tf.keras.backend.get_value(getattr(layer, "pad_values",
                                                                       0.0))))
        strided = any(s != 1 for s in layer.strides)
        dilated = any(d != 1 for d in layer.dilation_rate)
        if act not in ("linear", "relu") or pad_value != 0.0 or (strided and dilated):
            raise NotImplementedError(self._missing(layer, "linear")
                                      + f" (activation {act!r}, pad value {pad_value}, strides "
                                        f"{layer.strides}, dilation {layer.dilation_rate})")
        iv = inputs[0]
        w32 = kernel(layer)
        bias = layer.bias if layer.use_bias else None
        padding = layer.padding.upper()

        def apply(t, w):
            return tf.nn.convolution(t, w, strides=layer.strides, padding=padding,
                                     dilations=layer.dilation_rate)

        fan_in = 16 * int(np.prod(w32.shape[:3]))  # as `interval`: room for oneDNN's algorithms
        pre = ctx.affine(iv, apply, w32, bias, fan_in)
        in_shape = [int(d) for d in iv.lower.shape[1:]]
        if not ctx.exact:  # certified training (CROWN-IBP): plain float32, differentiable
            wt = ctx.cast(w32)

            def back_tf(a):
                rows = tf.shape(a)[:2]
                flat = tf.reshape(a, tf.concat([[-1], tf.shape(a)[2:]], 0))
                out = tf.nn.conv2d_transpose(flat, wt, tf.concat([[tf.shape(flat)[0]], in_shape],
                                                                 0),
                                             strides=layer.strides, padding=padding,
                                             dilations=layer.dilation_rate)
                return tf.reshape(out, tf.concat([rows, in_shape], 0))

            steps = [base.LinearStep("affine", back=back_tf,
                                     bias=None if bias is None else ctx.cast(bias),
                                     interval=pre)]
            return steps + ([base.LinearStep("relu")] if act == "relu" else [])
        w = tf.constant(np.asarray(w32, np.float64))
        b = None if bias is None else np.asarray(bias, np.float64)
        mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
        s = apply(tf.cast(mag, tf.float64), tf.abs(w)).numpy()
        s = s + (0.0 if b is None else np.abs(b))
        error = base.linear_error(s, fan_in, int(np.prod(s.shape[1:])))

        def back(a):
            flat = a.reshape((-1,) + a.shape[2:])
            out = tf.nn.conv2d_transpose(tf.constant(flat), w, [len(flat)] + in_shape,
                                         strides=layer.strides, padding=padding,
                                         dilations=layer.dilation_rate)
            return out.numpy().reshape(a.shape[:2] + tuple(in_shape))

        steps = [base.LinearStep("affine", back=back, bias=b, error=error, interval=pre)]
        return steps + ([base.LinearStep("relu")] if act == "relu" else [])


base.register(tf.keras.layers.Conv2D, Conv2DRule())
base.register(lq.layers.QuantConv2D, Conv2DRule())
# Conv2D subclasses computing other maps (DepthwiseConv2D is not one in tf-keras; refused
# explicitly should that change).
base.refuse(tf.keras.layers.Conv2DTranspose)
base.refuse(tf.keras.layers.DepthwiseConv2D)


class BatchNormRule(base.BoundRule):
    """``BatchNormalization`` over the last axis: moving statistics at inference, the clean
    point's batch statistics in certified training."""

    @staticmethod
    def _affine(layer, iv, ctx, with_mean=False):
        """``out = in·scale + shift`` with the statistics of the mode (and the mean used)."""
        rank = iv.lower.shape.rank
        if ctx.training and iv.point is not None:
            mean, var = tf.nn.moments(iv.point, axes=list(range(rank - 1)))
        else:
            mean, var = ctx.cast(layer.moving_mean), ctx.cast(layer.moving_variance)
        scale = tf.math.rsqrt(var + layer.epsilon)
        if layer.gamma is not None:
            scale = scale * ctx.cast(layer.gamma)
        shift = -mean * scale
        if layer.beta is not None:
            shift = shift + ctx.cast(layer.beta)
        return (mean, scale, shift) if with_mean else (scale, shift)

    def interval(self, layer, inputs, ctx):
        iv = inputs[0]
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        rank = iv.lower.shape.rank
        axes = [a % rank for a in axes]
        if axes != [rank - 1]:
            raise checks.UnsupportedLayerError(
                f"Layer {layer.name!r}: batch norm over axes {layer.axis} (last axis only).")
        mean, scale, shift = self._affine(layer, iv, ctx, with_mean=True)
        centre = (iv.upper + iv.lower) / 2.0
        radius = (iv.upper - iv.lower) / 2.0
        mid = centre * scale + shift
        rad = radius * tf.abs(scale)  # |a|: negative γ swaps the ends
        if ctx.exact:
            mag = tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper))
            beta = 0.0 if layer.beta is None else tf.abs(ctx.cast(layer.beta))
            rad += 32.0 * base.UNIT_ROUNDOFF * (mag * tf.abs(scale) + tf.abs(mean * scale)
                                                + beta) + base.TINY
        point = None if iv.point is None else iv.point * scale + shift
        return ctx.ends(mid - rad, mid + rad, point)

    def linear(self, layer, inputs, ctx):
        out = self.interval(layer, inputs, ctx)  # checks the axis
        if not ctx.exact:  # certified training (CROWN-IBP): the statistics `interval` used
            scale, shift = self._affine(layer, inputs[0], ctx)
            return [base.LinearStep("affine", back=lambda a: a * scale, bias=shift,
                                    interval=out)]
        if ctx.training:
            raise NotImplementedError(self._missing(layer, "linear") + " (training statistics)")
        iv = inputs[0]
        mean = np.asarray(layer.moving_mean, np.float64)
        var = np.asarray(layer.moving_variance, np.float32).astype(np.float64)
        scale = 1.0 / np.sqrt(var + np.float64(np.float32(layer.epsilon)))
        if layer.gamma is not None:
            scale = scale * np.asarray(layer.gamma, np.float64)
        shift = -mean * scale
        beta = 0.0 if layer.beta is None else np.asarray(layer.beta, np.float64)
        shift = shift + beta
        mag = np.maximum(np.abs(iv.lower.numpy()), np.abs(iv.upper.numpy())).astype(np.float64)
        # The model's rounding as `interval` allows it (32u relative: its own scale and shift
        # are float32), plus the float64 rounding of back-substitution (fan-in 1).
        size = int(np.prod(mag.shape[1:]))
        error = (32.0 * base.UNIT_ROUNDOFF * (mag * np.abs(scale) + np.abs(mean * scale)
                                              + np.abs(beta))
                 + base.linear_error(mag * np.abs(scale) + np.abs(shift), 1, size, 0.0))
        return [base.LinearStep("affine", back=lambda a: a * scale, bias=shift, error=error,
                                interval=out)]


base.register(tf.keras.layers.BatchNormalization, BatchNormRule())
