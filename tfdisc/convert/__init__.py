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
* a ``BatchNormalization`` that is the only consumer of a full-precision
  ``Conv2D`` (the first layer) is folded into that convolution's kernel and
  bias (a new float ``Conv2D``): TensorFlow would otherwise fuse the pair
  into a oneDNN convolution with batch-norm post-ops, which is ~20x slower at
  batch 1 on CPUs without AVX-512 (``planning.float_conv_batch_norms``); when
  that convolution only feeds packed layers, it emits their sign bits itself
  (``PackedFloatConv2D``, ``tfdisc.ops.float_conv2d_bits``) and its float
  output is never written;
* when every consumer of that output is itself a packed layer (possibly
  through ``MaxPool2D`` and/or ``Flatten``), the op emits the sign bits
  directly (``bitpacked`` output), max pooling runs on packed words, and the
  next layer skips its own bit-packing. The pattern conv -> MaxPool -> BN ->
  sign (BinaryNet) is handled the same way: sign and BN are monotone, so the
  pool runs after them on bits (AND, or OR for channels whose BN multiplier
  is negative).

``BitDepthQuantization`` becomes ``PackedBitDepthQuantization``: the same
values, bit for bit, from one C++ op (``tfdisc.ops.bit_depth``) instead of
~15 element-wise TensorFlow ops. Everything else (the full-precision first and
last layers, adds, pooling of float data) stays the original TensorFlow layer,
shared with the input model. A larq layer whose configuration cannot run packed (other
quantizers, a non-linear activation is fine but prevents folding, groups,
non-+-1/0 ``pad_values``, channels_first) stays float and a warning names it.

Predictions: the binary dot products are exact integers and a folded batch
norm is evaluated as TensorFlow evaluates a 2-D batch norm
(``x * inv + (beta - mean * inv)``), so dense BNNs give identical logits;
for 4-D batch norm TensorFlow's fused kernel rounds differently in the last
bit, and XNOR scales are applied once instead of per term, so there logits
agree within float rounding -- except that a last-bit difference right
before a sign can flip a bit, which later layers turn into a whole-unit
change (measured: folding the first float convolution's batch norm changed
one image's logits in 17 random alexnet_cifar models x 32 images;
``fold_batch_norm=False`` gave identical logits on those weights).

Modules: ``planning`` (which layers convert, what fuses; no layers built),
``folding`` (batch norm and XNOR scales into the output transform),
``layers`` (the packed Keras layers, registered on ``import tfdisc``),
``fusion`` (each chain of packed layers as one ``PackedNetwork`` op, the
default: ``fused=True``) and ``report`` (:class:`PackingReport`). Weights are packed with
``tfdisc.ops.pack_dense_weights``/``pack_conv_filter``.

Example:

    >>> import tfdisc
    >>> from tfdisc import convert
    >>> model = tfdisc.models.build("fcn1", precision="binary")
    >>> packed = convert.to_packed(model)
    >>> print(packed.packing_report.summary())  # doctest: +SKIP
"""

import warnings

import numpy as np
import tensorflow as tf

from tfdisc.convert import folding, fusion, planning
from tfdisc.layers import BitDepthQuantization
from tfdisc.convert.layers import (
    PACKED_LAYERS,
    PackedBinaryConv2D,
    PackedBinaryDense,
    PackedBitDepthQuantization,
    PackedFloatConv2D,
    PackedMaxPool2D,
    PackedNetwork,
)
from tfdisc.convert.planning import check_model
from tfdisc.convert.report import PackingReport, weight_bytes

__all__ = [
    "PACKED_LAYERS",
    "PackedBinaryConv2D",
    "PackedBinaryDense",
    "PackedBitDepthQuantization",
    "PackedFloatConv2D",
    "PackedMaxPool2D",
    "PackedNetwork",
    "PackingReport",
    "check_model",
    "folding",
    "fusion",
    "planning",
    "to_packed",
]


#: ``to_packed``'s ``fused`` default. Measured (issue 31; python -m tfdisc.benchmarks.ops
#: --emulate=avx2 --kernels=avx2, two runs on one core of a shared AMD EPYC, 2026-12-08,
#: experiments/benchmarks/ops_issue31_fused_amd_epyc_emulated_avx2_one_core*.txt): at batch 1
#: the fused graph ran 1.21-1.24x (alexnet_cifar, 4.3-4.6 -> 3.5-3.8 ms), 1.04-1.20x (fcn1)
#: and 1.16-1.20x (fcn2) faster than the per-layer graph, with bit-identical outputs; at
#: batch 32 / 256 0.94-1.11x, within the host's run-to-run noise. Two cores: not measured.
FUSED_DEFAULT = True


def _ops():
    import tfdisc.ops  # pylint: disable=import-outside-toplevel

    return tfdisc.ops


def _make_layer(plan, word_bits):
    layer = plan.layer
    multiplier, bias = folding.output_transform(plan)
    kernel = np.asarray(layer.kernel, np.float32)
    common = dict(word_bits=word_bits, input_packed=plan.input_packed,
                  output="bitpacked" if plan.bitpacked else "float",
                  activation=tf.keras.activations.serialize(layer.activation),
                  has_multiplier=multiplier is not None, has_bias=bias is not None,
                  multiplier=multiplier, bias=bias, name=layer.name)
    ops = _ops()
    if isinstance(layer, planning.lq.layers.QuantDense):
        packed = ops.pack_dense_weights(kernel, word_bits=word_bits)
        return PackedBinaryDense(layer.units, kernel.shape[0], packed_kernel=packed, **common)
    packed = ops.pack_conv_filter(kernel, word_bits=word_bits)
    pad_value = int(float(layer.pad_values)) if layer.padding == "same" else 0
    return PackedBinaryConv2D(
        layer.filters, layer.kernel_size, kernel.shape[2], strides=layer.strides,
        padding=layer.padding, pad_value=pad_value, dilations=layer.dilation_rate,
        packed_kernel=packed, **common)


def _bit_output_conv(conv, bn, word_bits):
    """`conv` with inference `bn` folded in, as a PackedFloatConv2D emitting sign bits."""
    kernel, bias = folding.folded_conv_weights(conv, bn)
    return PackedFloatConv2D(
        conv.filters, conv.kernel_size, strides=conv.strides, padding=conv.padding,
        dilations=conv.dilation_rate, word_bits=word_bits, kernel=kernel, bias=bias,
        name=f"{conv.name}_with_bn_bits")


def to_packed(model, *, word_bits=32, fold_batch_norm=True, bitpacked_outputs=True,
              fused=FUSED_DEFAULT, warn=True):
    """Converts a trained larq model to an inference model on packed ops.

    Args:
      model: A built ``tf.keras`` (tf-keras) Sequential or functional model
        with larq ``QuantDense``/``QuantConv2D`` layers.
      word_bits: 32 or 64, the packed word size.
      fold_batch_norm: Fold a following BatchNormalization into the ops'
        output transform, and into a full-precision Conv2D's kernel and bias.
      bitpacked_outputs: Let ops emit sign bits for packed consumers (needs
        ``fold_batch_norm`` to matter for batch-normalized networks).
      fused: Run each chain of packed layers as one op (``PackedNetwork``,
        ``tfdisc.convert.fusion``), bit-identical to the per-layer graph;
        False keeps one Keras layer (and TensorFlow op) per packed layer,
        for debugging. See ``FUSED_DEFAULT`` for the default and its measurement.
      warn: Warn for each larq layer left in float.

    Returns:
      A ``tf.keras.Model`` for inference with the same inputs and outputs,
      with a ``packing_report`` attribute (:class:`PackingReport`). With
      ``fused=False``, layers that were not converted are shared with `model`,
      not copied; a fused model is rebuilt from its config (copies).

    Raises:
      ValueError: `word_bits` is not 32 or 64, or `model` is not a built
        Sequential/functional tf-keras model (a Keras 3 model is named as
        such).
    """
    if word_bits not in (32, 64):
        raise ValueError(f"`word_bits` must be 32 or 64, got {word_bits!r}.")
    check_model(model, "tfdisc.convert.to_packed")
    plans, float_layers = planning.plan(model, word_bits, fold_batch_norm, bitpacked_outputs)
    if warn:
        for name, reason in float_layers:
            warnings.warn(f"tfdisc.convert.to_packed: layer '{name}' stays float: {reason}",
                          stacklevel=2)

    replacements = {}
    folded, bitpacked, float_folds, float_bits = [], [], [], []
    if fold_batch_norm:
        pairs = planning.float_conv_batch_norms(model)
        # Before the packed layers are made: this marks their inputs packed.
        bit_convs = ({conv.name for conv, _ in planning.bit_output_float_convs(
            model, pairs, plans, word_bits)} if bitpacked_outputs else set())
        for conv, bn in pairs:
            if conv.name in bit_convs:
                replacements[conv.name] = _bit_output_conv(conv, bn, word_bits)
                float_bits.append(conv.name)
            else:
                replacements[conv.name] = folding.folded_conv(conv, bn)
            replacements[bn.name] = tf.keras.layers.Activation(
                "linear", name=f"{bn.name}_folded")
            float_folds.append((conv.name, bn.name))
    binary_float = binary_packed = 0
    for name, plan in plans.items():
        new = _make_layer(plan, word_bits)
        replacements[name] = new
        binary_float += weight_bytes(plan.layer.get_weights())
        if plan.bn is not None:
            folded.append(plan.bn.name)
            binary_float += weight_bytes(plan.bn.get_weights())
            replacements[plan.bn.name] = tf.keras.layers.Activation(
                "linear", name=f"{plan.bn.name}_folded")
        if plan.bitpacked:
            bitpacked.append(name)
        for pool in (plan.pool_before_bn, plan.pool_after):
            if pool is None:
                continue
            or_mask = None
            if pool is plan.pool_before_bn:
                multiplier, _ = folding.output_transform(plan)
                negative = (multiplier < 0).astype(np.float32) * -1.0
                if negative.any():
                    or_mask = _ops().bitpack_reference(negative, word_bits)
            replacements[pool.name] = PackedMaxPool2D(
                pool.pool_size, pool.strides, pool.padding, word_bits=word_bits,
                or_mask=or_mask,
                name=f"{pool.name}_packed")

    for layer in model.layers:
        # The input quantizer as one op (same values; its ~15 element-wise ops
        # cost more than a binary layer at batch 1).
        if type(layer) is BitDepthQuantization:  # pylint: disable=unidiomatic-typecheck
            replacements[layer.name] = PackedBitDepthQuantization.from_config(
                layer.get_config())

    def clone(layer):
        return replacements.get(layer.name, layer)

    packed_model = tf.keras.models.clone_model(model, clone_function=clone)
    for layer in replacements.values():
        if isinstance(layer, (PackedBinaryDense, PackedBinaryConv2D)):
            binary_packed += weight_bytes(layer.get_weights())
    fused_networks = ()
    if fused:
        packed_model, fused_networks = fusion.fuse(packed_model)
    report = PackingReport(
        packed_layers=tuple(plans),
        float_layers=tuple(float_layers),
        folded_batch_norms=tuple(folded),
        bitpacked_outputs=tuple(bitpacked),
        float_bytes=weight_bytes(model.get_weights()),
        packed_bytes=weight_bytes(packed_model.get_weights()),
        binary_float_bytes=binary_float,
        binary_packed_bytes=binary_packed,
        folded_float_convs=tuple(float_folds),
        bit_output_float_convs=tuple(float_bits),
        fused_networks=fused_networks,
    )
    packed_model.packing_report = report
    return packed_model
