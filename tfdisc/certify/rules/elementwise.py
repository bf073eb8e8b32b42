"""Bound rules of the layers that map the ends: activations, pooling, reshapes, Add, identities.

* Monotone layers (``ReLU``, max/average pooling, ``Flatten``, ``Reshape``,
  monotone ``Activation``): applied to both ends, exact in float32 except
  average pooling, which is widened for its rounding.
* ``Add``: ends add (widened for rounding).
* ``Dropout``, ``SpatialDropout2D``, ``GaussianNoise``: identity at inference.
* ``BitDepthQuantization``: identity, the box already lies in quantized space
  (``tfdisc.certify.box``); it must follow the model input directly.
"""
import numpy as np
import tensorflow as tf

from tfdisc.certify import checks
from tfdisc.certify.rules import base
from tfdisc.layers import BitDepthQuantization

__all__ = ["ActivationRule", "AddRule", "AveragePoolingRule", "IdentityRule",
           "InputQuantizationRule", "MONOTONE_ACTIVATIONS", "MonotoneRule", "check_activation",
           "name"]

MONOTONE_ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "elu", "selu", "softplus",
                        "softsign", "relu6", "hard_sigmoid", "exponential"}


def name(obj):
    """The name of a function, or the class name of a callable object; ``None`` for None."""
    if obj is None:
        return None
    return getattr(obj, "__name__", None) or type(obj).__name__


def check_activation(layer, fn):
    """``fn`` if it is one of Keras's monotone activations, else ``UnsupportedLayerError``."""
    fn_name = name(fn)
    known = fn_name in MONOTONE_ACTIVATIONS and fn is tf.keras.activations.get(fn_name)
    if not known:  # a user function merely named "relu" is not Keras's relu
        raise checks.UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) has activation {fn_name!r}, which "
            f"interval propagation does not support (monotone only: "
            f"{sorted(MONOTONE_ACTIVATIONS)}).")
    return fn


class MonotoneRule(base.BoundRule):
    """Non-decreasing layers map the ends (exact in float32)."""

    def interval(self, layer, inputs, ctx):
        return inputs[0].map(layer)

    def linear(self, layer, inputs, ctx):
        if isinstance(layer, tf.keras.layers.ReLU):
            config = layer.get_config()
            if (config.get("max_value") is None and not config.get("negative_slope")
                    and not config.get("threshold")):
                return [base.LinearStep("relu")]
        elif isinstance(layer, (tf.keras.layers.Flatten, tf.keras.layers.Reshape)):
            in_shape = tuple(int(d) for d in inputs[0].lower.shape[1:])

            def back(a):  # numpy (exact mode) or TF (certified training) coefficients
                if tf.is_tensor(a):
                    return tf.reshape(a, tf.concat([tf.shape(a)[:2], in_shape], 0))
                return a.reshape(a.shape[:2] + in_shape)

            return [base.LinearStep("affine", back=back, interval=inputs[0].map(layer))]
        raise NotImplementedError(self._missing(layer, "linear"))  # max pooling, capped ReLU


for _cls in (tf.keras.layers.ReLU, tf.keras.layers.MaxPooling2D, tf.keras.layers.GlobalMaxPooling2D,
             tf.keras.layers.Flatten, tf.keras.layers.Reshape):
    base.register(_cls, MonotoneRule())


class ActivationRule(MonotoneRule):
    """``Activation`` layers with one of Keras's monotone activations."""

    def check(self, layer):
        check_activation(layer, layer.activation)

    def linear(self, layer, inputs, ctx):
        fn_name = name(check_activation(layer, layer.activation))
        if fn_name == "relu":
            return [base.LinearStep("relu")]
        if fn_name == "linear":
            return []
        raise NotImplementedError(self._missing(layer, "linear") + f" (activation {fn_name!r})")


base.register(tf.keras.layers.Activation, ActivationRule())


class AveragePoolingRule(MonotoneRule):
    """Average pooling maps the ends; exact mode widens for the rounding of the average."""

    def interval(self, layer, inputs, ctx):
        iv = inputs[0]
        out = iv.map(layer)
        if not ctx.exact:
            return out
        # The model's window sum has error ≤ γ·Σ|x| in any summation order: the average of
        # the input magnitudes, not the magnitude of the output's ends (mixed signs cancel).
        mag = layer(tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper)))
        pool = getattr(layer, "pool_size", None)
        n = int(np.prod(pool)) if pool is not None else int(np.prod(iv.lower.shape[1:3]))
        err = 3.0 * base.gamma(n + 1) * mag + base.TINY
        return ctx.ends(out.lower - err, out.upper + err, out.point)

    def linear(self, layer, inputs, ctx):
        iv = inputs[0]
        if isinstance(layer, tf.keras.layers.GlobalAveragePooling2D):
            if layer.data_format != "channels_last" or getattr(layer, "keepdims", False):
                raise NotImplementedError(self._missing(layer, "linear") + " (layout)")

            def op(t):
                return tf.reduce_mean(t, axis=[1, 2])
        elif layer.data_format == "channels_last":
            def op(t):
                return tf.nn.avg_pool2d(t, layer.pool_size, layer.strides, layer.padding.upper())
        else:
            raise NotImplementedError(self._missing(layer, "linear") + " (channels_first)")
        pool = getattr(layer, "pool_size", None)
        n = int(np.prod(pool)) if pool is not None else int(np.prod(iv.lower.shape[1:3]))
        mag = tf.cast(tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper)), tf.float64)
        # The model's sum has error ≤ γ·Σ|x| over the window: the average of the input
        # magnitudes, not the magnitude of the output's ends (mixed signs cancel).
        s = op(mag).numpy()
        error = base.linear_error(s, n, int(np.prod(s.shape[1:])), 3.0 * base.gamma(n + 1))
        in_shape = [int(d) for d in iv.lower.shape[1:]]

        def back(a):
            x = tf.zeros([a.shape[0] * a.shape[1]] + in_shape, tf.float64)
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = op(x)
            grad = tape.gradient(out, x,
                                 output_gradients=tf.constant(a.reshape((-1,) + a.shape[2:])))
            return grad.numpy().reshape(a.shape[:2] + tuple(in_shape))

        return [base.LinearStep("affine", back=back, error=error,
                                interval=self.interval(layer, inputs, ctx))]


base.register(tf.keras.layers.AveragePooling2D, AveragePoolingRule())
base.register(tf.keras.layers.GlobalAveragePooling2D, AveragePoolingRule())


class IdentityRule(base.BoundRule):
    """Layers that are the identity at inference (dropout, noise)."""

    def interval(self, layer, inputs, ctx):
        return inputs[0]

    def linear(self, layer, inputs, ctx):
        return []


for _cls in (tf.keras.layers.Dropout, tf.keras.layers.SpatialDropout2D,
             tf.keras.layers.GaussianNoise):
    base.register(_cls, IdentityRule())


class AddRule(base.BoundRule):
    """``Add``: the ends add; exact mode widens for the rounding of the sum."""

    inputs = None

    def interval(self, layer, inputs, ctx):
        lower = tf.add_n([iv.lower for iv in inputs])
        upper = tf.add_n([iv.upper for iv in inputs])
        point = None
        if all(iv.point is not None for iv in inputs):
            point = tf.add_n([iv.point for iv in inputs])
        if ctx.exact:
            mag = tf.add_n([tf.maximum(tf.abs(iv.lower), tf.abs(iv.upper)) for iv in inputs])
            err = 3.0 * base.gamma(len(inputs)) * mag + base.TINY
            return ctx.ends(lower - err, upper + err, point)
        return base.Interval(lower, upper, point)


base.register(tf.keras.layers.Add, AddRule())


class InputQuantizationRule(base.BoundRule):
    """``BitDepthQuantization`` right after the model input: the box given to the bounds is
    already the box of its output (``tfdisc.certify.box``)."""

    inputs = None  # checked here, with this layer's own message

    def interval(self, layer, inputs, ctx):
        if not ctx.follows_input:
            raise checks.UnsupportedLayerError(
                f"BitDepthQuantization {layer.name!r} must follow the model input directly.")
        return inputs[0]

    def linear(self, layer, inputs, ctx):
        self.interval(layer, inputs, ctx)  # it must follow the input: the box is its output
        return []


base.register(BitDepthQuantization, InputQuantizationRule())
