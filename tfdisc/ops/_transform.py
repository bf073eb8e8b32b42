"""Shared argument handling and the numpy output transform."""

import numpy as np

OUTPUTS = ("float", "int32", "bitpacked")
PAD_VALUES = (-1, 0, 1)


def integer(value, name, *, minimum=None):
    """``value`` as an int, or ValueError: 1.5 is refused, never truncated to 1.

    Accepts Python and numpy integers, integer-valued floats (2.0) and scalar
    eager tensors holding one; refuses bools, strings and anything else.
    """
    try:
        array = np.asarray(value)
    except Exception:  # pylint: disable=broad-except  # e.g. a symbolic tensor
        array = np.asarray(None)
    item = array.item() if array.ndim == 0 and array.dtype.kind in "iuf" else None
    if item is None or (array.dtype.kind == "f" and not float(item).is_integer()):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    item = int(item)
    if minimum is not None and item < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return item


def pad_value(value):
    """The SAME-padding value of a binary convolution: -1, 0 or 1, else ValueError."""
    try:
        value_int = integer(value, "pad_value")
    except ValueError:
        value_int = None
    if value_int not in PAD_VALUES:
        raise ValueError(
            f"`pad_value` must be -1, 0 or 1 (larq's pad_values=-1.0, 0.0 or 1.0), got "
            f"{value!r}: a binary convolution has no exact form for other padding values "
            "(keep such a layer in float).")
    return value_int


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
