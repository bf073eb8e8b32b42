"""Batch-norm and XNOR-scale folding into a binary layer's output transform.

A binary layer computes an integer dot product ``dot``; what follows it up to
the next sign is affine per channel: the XNOR scale mean|w|, the layer bias
and an inference batch norm. :func:`output_transform` folds them into
``dot * multiplier + bias``, evaluated as ``tf.nn.batch_normalization``
evaluates a 2-D batch norm (``y * inv + (beta - mean * inv)``).
"""
import numpy as np
import tensorflow as tf

from tfdisc.convert import planning

__all__ = ["batch_norm_affine", "folded_conv", "folded_conv_weights", "output_transform"]


def batch_norm_affine(bn):
    """``(inv, shift)`` tensors of an inference batch norm: ``y * inv + shift``."""
    inv = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
    if bn.scale:
        inv = inv * bn.gamma
    shift = -bn.moving_mean * inv
    if bn.center:
        shift = bn.beta + shift
    return inv, shift


def output_transform(plan):
    """``(multiplier, bias)`` float32 numpy arrays or None for a :class:`planning.Plan`.

    output = dot * scale (XNOR) + layer bias, then the folded batch norm.
    """
    layer = plan.layer
    kernel = tf.convert_to_tensor(layer.kernel)
    multiplier = bias = None
    if isinstance(layer.kernel_quantizer, planning.XNOR_QUANTIZERS):
        axes = list(range(len(kernel.shape) - 1))
        multiplier = tf.reduce_mean(tf.abs(kernel), axis=axes)
    if layer.use_bias:
        bias = tf.convert_to_tensor(layer.bias)
    if plan.bn is not None:
        inv, shift = batch_norm_affine(plan.bn)
        multiplier = inv if multiplier is None else multiplier * inv
        bias = shift if bias is None else bias * inv + shift
    to_np = lambda t: None if t is None else np.asarray(t, np.float32)  # noqa: E731
    return to_np(multiplier), to_np(bias)


def folded_conv_weights(conv, bn):
    """``(kernel, bias)`` float32 numpy arrays of `conv` followed by inference
    `bn` as one convolution: kernel ``w * inv`` and bias ``b * inv + shift``."""
    inv, shift = batch_norm_affine(bn)
    kernel = tf.convert_to_tensor(conv.kernel) * inv
    bias = shift if not conv.use_bias else tf.convert_to_tensor(conv.bias) * inv + shift
    return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)


def folded_conv(conv, bn):
    """A new float ``tf.keras.layers.Conv2D``: `conv` followed by inference `bn`
    (:func:`folded_conv_weights`). Its outputs equal the pair's within float
    rounding."""
    layer = tf.keras.layers.Conv2D(
        conv.filters, conv.kernel_size, strides=conv.strides, padding=conv.padding,
        dilation_rate=conv.dilation_rate, use_bias=True, name=f"{conv.name}_with_bn")
    layer.build(conv.input_shape)
    layer.set_weights(list(folded_conv_weights(conv, bn)))
    return layer
