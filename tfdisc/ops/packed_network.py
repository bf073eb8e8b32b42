"""``packed_network``: a chain of packed layers as one op (``Tfdisc>PackedNetwork``).

At batch 1 a converted network can spend much of its time in TensorFlow's
per-op cost (issue 31); this op runs a whole chain of layers -- the float
first layer emitting bits, bit-packing, binary convolutions and dense layers
with their fused output transforms, packed max pooling, flatten -- inside
one op, on the same C++ drivers as the per-layer ops, so its output equals
theirs bit for bit. ``tfdisc.convert.to_packed(model, fused=True)`` builds it;
the steps and their integers are documented in ``cc_ops/core/network_plan.h``.
"""

import numpy as np
import tensorflow as tf

from tfdisc.ops import _loader, _transform

#: Each weight starts at a multiple of this many bytes in `words` / `floats`.
WEIGHT_ALIGN_BYTES = 64

#: Integers each step kind takes (cc_ops/core/network_plan.h).
STEP_INTS = {
    "bitpack": 1,          # channels
    "float_conv_bits": 9,  # channels_in, out_channels, fh, fw, sh, sw, dh, dw, same
    "conv": 13,            # ... + pad_value, bits_out, has_multiplier, has_bias
    "max_pool": 6,         # ph, pw, sh, sw, same, has_or_mask
    "flatten": 0,
    "dense": 5,            # k, units, bits_out, has_multiplier, has_bias
}


def pack_network_weights(weights, word_bits=32):
    """``(words, floats)``: the op's two weight tensors (numpy) from `weights`.

    Args:
      weights: The steps' weight arrays in step order (cc_ops/core/network_plan.h):
        integer arrays are packed words (``pack_conv_filter``,
        ``pack_dense_weights``, an or_mask), float arrays multipliers, biases
        and float kernels.
      word_bits: 32 or 64.

    Each array is flattened and starts at a multiple of ``WEIGHT_ALIGN_BYTES``
    bytes of its tensor (zeros between), as the op expects.
    """
    word = np.int32 if word_bits == 32 else np.int64
    parts = {True: [], False: []}
    sizes = {True: 0, False: 0}
    for w in weights:
        w = np.asarray(w)
        is_words = w.dtype.kind in "iu"
        dtype = word if is_words else np.float32
        per = WEIGHT_ALIGN_BYTES // np.dtype(dtype).itemsize
        pad = -sizes[is_words] % per
        if pad:
            parts[is_words].append(np.zeros(pad, dtype))
        flat = w.astype(dtype).ravel()
        parts[is_words].append(flat)
        sizes[is_words] += pad + flat.size
    cat = lambda arrays, dtype: (np.concatenate(arrays) if arrays  # noqa: E731
                                 else np.zeros(0, dtype))
    return cat(parts[True], word), cat(parts[False], np.float32)


def packed_network(x, words, floats, steps, *, word_bits=32, output="float"):
    """Runs `steps` on `x` in one op.

    Args:
      x: float32 NHWC or ``[batch, features]`` input, or packed words (int32 /
        int64 for `word_bits` 32 / 64) when the first step takes bits.
      words, floats: The steps' weights, from :func:`pack_network_weights`.
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
        x, words, floats, steps=kinds, step_ints=ints, word_bits=word_bits,
        out_type=tf.float32 if output == "float" else word)
