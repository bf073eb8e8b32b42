"""Shared argument handling and the numpy output transform."""

import numpy as np

OUTPUTS = ("float", "int32", "bitpacked")


def check_output(output):
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {OUTPUTS}, got {output!r}.")


_EMPTY = []


def vector(v):
    """None -> empty float32 vector (the ops' "absent" marker), created once."""
    if v is None:
        if not _EMPTY:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

            with tf.init_scope():
                _EMPTY.append(tf.zeros([0], tf.float32))
        return _EMPTY[0]
    return v


def transform_reference(dot, multiplier, bias, output, word_bits):
    """Numpy twin of cc_ops/core/output_transform.h on int dot products."""
    from tfdisc.ops.bitpack import bitpack_reference  # pylint: disable=import-outside-toplevel

    if output == "int32":
        return dot.astype(np.int32)
    v = dot.astype(np.float32)
    if multiplier is not None:
        v = v * np.asarray(multiplier, np.float32)
    if bias is not None:
        v = v + np.asarray(bias, np.float32)
    if output == "float":
        return v
    return bitpack_reference(v, word_bits)


def op_output_args(output, word_bits, packed_dtype):
    """(out_type, bitpacked_output) attributes for the C++ ops."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    check_output(output)
    if output == "float":
        return tf.float32, False
    if output == "int32":
        return tf.int32, False
    if word_bits is None:
        word_bits = 64 if packed_dtype == tf.int64 else 32
    if word_bits not in (32, 64):
        raise ValueError(f"`word_bits` must be 32 or 64, got {word_bits!r}.")
    return (tf.int32 if word_bits == 32 else tf.int64), True
