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


for _cls in (tf.keras.layers.ReLU, tf.keras.layers.MaxPooling2D, tf.keras.layers.GlobalMaxPooling2D,
             tf.keras.layers.Flatten, tf.keras.layers.Reshape):
    base.register(_cls, MonotoneRule())


class ActivationRule(MonotoneRule):
    """``Activation`` layers with one of Keras's monotone activations."""

    def check(self, layer):
        check_activation(layer, layer.activation)


base.register(tf.keras.layers.Activation, ActivationRule())


class AveragePoolingRule(MonotoneRule):
    """Average pooling maps the ends; exact mode widens for the rounding of the average."""

    def interval(self, layer, inputs, ctx):
        iv = inputs[0]
        out = iv.map(layer)
        if not ctx.exact:
            return out
        mag = tf.maximum(tf.abs(out.lower), tf.abs(out.upper))
        pool = getattr(layer, "pool_size", None)
        n = int(np.prod(pool)) if pool is not None else int(np.prod(iv.lower.shape[1:3]))
        err = 3.0 * base.gamma(n + 1) * mag + base.TINY
        return ctx.ends(out.lower - err, out.upper + err, out.point)


base.register(tf.keras.layers.AveragePooling2D, AveragePoolingRule())
base.register(tf.keras.layers.GlobalAveragePooling2D, AveragePoolingRule())


class IdentityRule(base.BoundRule):
    """Layers that are the identity at inference (dropout, noise)."""

    def interval(self, layer, inputs, ctx):
        return inputs[0]


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


base.register(BitDepthQuantization, InputQuantizationRule())
