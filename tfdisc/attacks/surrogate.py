"""Surrogate gradients of larq's sign quantizers, for adaptive attacks on BNNs.

larq's ``ste_sign`` passes the gradient only where its input lies in
``[−clip_value, clip_value]`` (``[−1, 1]`` by default), so a gradient attack on a
BNN can stall for reasons unrelated to robustness. ``sign_gradient(model, mode)``
makes every binary *input (activation) quantizer* of the model's larq layers
use another gradient while it is active; the forward pass is bit-identical
(``stop_gradient(q(x)) + (g(x) − stop_gradient(g(x)))`` adds an exact zero) and
the weights are the model's own (the layers are the same objects).

Modes (``check_sign_gradient``):

* ``"ste"``: larq's gradient as the model has it (default; no change);
* ``"identity"``: 1 everywhere (larq's ``SteSign(clip_value=None)``);
* ``"tanh"``: ``1 − tanh²(x)``;
* ``"hardtanh:K"``: 1 on ``|x| ≤ K``, 0 beyond (a hard-tanh scaled to
  ``[−K, K]``; ``K`` > 0, e.g. ``"hardtanh:3"``).

The swap happens while a graph is traced (or eager code runs) inside the
context, so an attack's ``tf.function`` traced once per mode keeps it. The mode
is an attack parameter, recorded in results.json.
"""
import contextlib
import math

import tensorflow as tf

__all__ = ["MODES", "check_sign_gradient", "sign_gradient", "surrogate_quantizer"]

MODES = ("ste", "identity", "tanh", "hardtanh:K")


def check_sign_gradient(mode):
    """``mode`` in canonical form, or ValueError naming the accepted modes."""
    problem = f"`sign_gradient` must be one of {', '.join(MODES)} (K > 0), got {mode!r}."
    if not isinstance(mode, str):
        raise ValueError(problem)
    if mode in ("ste", "identity", "tanh"):
        return mode
    name, _, value = mode.partition(":")
    if name == "hardtanh":
        try:
            k = float(value)
        except ValueError:
            raise ValueError(problem) from None
        if 0.0 < k < math.inf:
            return f"hardtanh:{k:g}"
    raise ValueError(problem)


def _surrogate_forward(mode):
    if mode == "identity":
        return lambda x: x
    if mode == "tanh":
        return tf.math.tanh
    k = float(mode.partition(":")[2])
    return lambda x: tf.clip_by_value(x, -k, k)


def surrogate_quantizer(quantizer, mode):
    """A callable with ``quantizer``'s forward values and the gradient of ``mode``."""
    mode = check_sign_gradient(mode)
    if mode == "ste":
        return quantizer
    g = _surrogate_forward(mode)

    def quantize(x):
        smooth = g(x)
        return tf.stop_gradient(quantizer(x)) + (smooth - tf.stop_gradient(smooth))
    return quantize


def _is_binary(quantizer):
    return quantizer is not None and getattr(quantizer, "precision", None) == 1


def _quantized_layers(model):
    # larq's quantized layers hold `input_quantizer`; nested models are walked too.
    return [layer for layer in model.submodules
            if isinstance(layer, tf.keras.layers.Layer)
            and _is_binary(getattr(layer, "input_quantizer", None))]


@contextlib.contextmanager
def sign_gradient(model, mode):
    """Within the context, ``model``'s binary input quantizers use the ``mode`` gradient.

    Yields the number of quantizers swapped. The swap bypasses Keras' attribute
    tracking (nothing new is saved with the model) and is undone on exit, even
    on error.
    """
    mode = check_sign_gradient(mode)
    layers = [] if mode == "ste" else _quantized_layers(model)
    originals = [layer.input_quantizer for layer in layers]
    try:
        for layer, quantizer in zip(layers, originals):
            object.__setattr__(layer, "input_quantizer", surrogate_quantizer(quantizer, mode))
        yield len(layers)
    finally:
        for layer, quantizer in zip(layers, originals):
            object.__setattr__(layer, "input_quantizer", quantizer)
