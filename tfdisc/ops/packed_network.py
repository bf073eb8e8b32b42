"""``packed_network``: a chain of packed layers as one op (``Tfdisc>PackedNetwork``).

A converted network at batch 1 spends most of its time in TensorFlow's
per-op cost (issue 31); this op runs a whole chain of layers -- the float
first layer emitting bits, bit-packing, binary convolutions and dense layers
with their fused output transforms, packed max pooling, flatten -- inside
one op, on the same C++ drivers as the per-layer ops, so its output equals
theirs bit for bit. ``tfdisc.convert.to_packed(model, fused=True)`` builds it;
the steps and their integers are documented in ``cc_ops/core/network.h``.
"""

import tensorflow as tf

from tfdisc.ops import _loader, _transform

#: Integers each step kind takes (cc_ops/core/network.h).
STEP_INTS = {
    "bitpack": 1,          # channels
    "float_conv_bits": 9,  # channels_in, out_channels, fh, fw, sh, sw, dh, dw, same
    "conv": 13,            # ... + pad_value, bits_out, has_multiplier, has_bias
    "max_pool": 6,         # ph, pw, sh, sw, same, has_or_mask
    "flatten": 0,
    "dense": 5,            # k, units, bits_out, has_multiplier, has_bias
}


def packed_network(x, weights, steps, *, word_bits=32, output="float"):
    """Runs `steps` on `x` in one op.

    Args:
      x: float32 NHWC or ``[batch, features]`` input, or packed words (int32 /
        int64 for `word_bits` 32 / 64) when the first step takes bits.
      weights: The steps' weight tensors in step order (packed words in the
        word type, float32 multipliers, biases and float kernels).
      steps: ``[(kind, ints), ...]``, kinds and integers as in ``STEP_INTS``.
      word_bits: 32 or 64.
      output: ``"float"`` when the last step returns float data,
        ``"bitpacked"`` when it returns bits.

    Raises:
      ValueError: an unknown kind, a wrong number of integers, a bad
        ``word_bits`` or ``output``.
      tf.errors.InvalidArgumentError: the op's checks (weights, shapes).
    """
    if word_bits not in (32, 64):
        raise ValueError(f"`word_bits` must be 32 or 64, got {word_bits!r}.")
    if output not in ("float", "bitpacked"):
        raise ValueError(f"`output` must be 'float' or 'bitpacked', got {output!r}.")
    kinds, ints = [], []
    for kind, values in steps:
        if kind not in STEP_INTS:
            raise ValueError(f"unknown step kind {kind!r}; known: {sorted(STEP_INTS)}.")
        values = [_transform.integer(v, f"{kind} parameter") for v in values]
        if len(values) != STEP_INTS[kind]:
            raise ValueError(f"step {kind!r} takes {STEP_INTS[kind]} integers, got "
                             f"{len(values)}.")
        kinds.append(kind)
        ints.extend(values)
    word = tf.int32 if word_bits == 32 else tf.int64
    return _loader.load().tfdisc_packed_network(
        x, list(weights), steps=kinds, step_ints=ints, word_bits=word_bits,
        out_type=tf.float32 if output == "float" else word)
