"""tfdisc.ops.float_conv2d_bits against tf.nn.conv2d + bias, then bitpack."""
import numpy as np
import pytest
import tensorflow as tf

import tfdisc.ops as ops


def _want(x, kernel, bias, strides, padding, dilations):
    """float64 convolution: the exact values whose signs are packed."""
    y = tf.nn.conv2d(x.astype(np.float64), kernel.astype(np.float64), strides, padding,
                     dilations=dilations).numpy()
    return y + bias.astype(np.float64)


def _assert_bits(got, values, x, kernel, word_bits):
    """The op's bits are those of the exact values, except within float32
    rounding of zero (the sums run in another order than TensorFlow's)."""
    o = values.shape[-1]
    assert got.shape == (*values.shape[:-1], -(-o // word_bits))
    assert got.dtype == (np.int32 if word_bits == 32 else np.int64)
    bits = ops.unpack_reference(got, o)
    want = ops.unpack_reference(ops.bitpack_reference(values.astype(np.float32), word_bits), o)
    # Rounding bound of a float32 sum of K products plus the bias.
    k = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
    scale = (np.abs(x).max(initial=0) * np.abs(kernel).max() * k + 1.0) * (k + 2) * 2.0**-23
    differ = bits != want
    assert np.all(np.abs(values[differ]) <= scale), np.abs(values[differ]).max()
    # Padding bits of the last word are zero.
    full = ops.unpack_reference(got, got.shape[-1] * word_bits)
    assert np.all(full[..., o:] == 1)  # bit 0


@pytest.mark.parametrize("seed", range(24))
def test_random_shapes(kernel, seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(0, 3)), int(rng.integers(1, 6))
    o = int(rng.choice([1, 16, 31, 33, 64, 70, 128]))
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    strides = tuple(int(v) for v in rng.integers(1, 3, size=2))
    dilations = (1, 1) if seed % 3 else tuple(int(v) for v in rng.integers(1, 3, size=2))
    if dilations != (1, 1):
        strides = (1, 1)  # tf.nn.conv2d takes one or the other on CPU
    padding = "SAME" if seed % 2 else "VALID"
    h, w = int(rng.integers(kh * 2, 12)), int(rng.integers(kw * 2, 12))
    word_bits = 64 if seed % 4 == 1 else 32
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    k = rng.standard_normal((kh, kw, c, o)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    got = ops.float_conv2d_bits(x, k, b, strides=strides, padding=padding,
                                dilations=dilations, word_bits=word_bits).numpy()
    _assert_bits(got, _want(x, k, b, strides, padding, dilations), x, k, word_bits)


def test_first_layer_shape_every_kernel_alike(kernel):
    """alexnet_cifar's first layer (3x3, 3 -> 128, SAME) against TensorFlow's float32
    convolution: the same bits except values within rounding of zero."""
    rng = np.random.default_rng(7)
    x = rng.random((3, 32, 32, 3)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 128)).astype(np.float32)
    b = (rng.standard_normal(128) * 0.1).astype(np.float32)
    got = ops.float_conv2d_bits(x, k, b, padding="SAME").numpy()
    tf_bits = ops.bitpack(tf.nn.conv2d(x, k, 1, "SAME") + b).numpy()
    values = _want(x, k, b, 1, "SAME", 1)
    _assert_bits(got, values, x, k, 32)
    agree = np.mean(ops.unpack_reference(got, 128) == ops.unpack_reference(tf_bits, 128))
    assert agree > 0.9999


def test_no_bias_is_zero_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    k = rng.standard_normal((3, 3, 2, 40)).astype(np.float32)
    np.testing.assert_array_equal(ops.float_conv2d_bits(x, k).numpy(),
                                  ops.float_conv2d_bits(x, k, np.zeros(40, np.float32)).numpy())


def test_bad_arguments():
    x = np.zeros((1, 5, 5, 3), np.float32)
    k = np.zeros((3, 3, 3, 8), np.float32)
    b = np.zeros(8, np.float32)
    cases = [
        (dict(x=x[0]), tf.errors.InvalidArgumentError, "rank 4"),
        (dict(kernel=k[0]), tf.errors.InvalidArgumentError, "rank 4"),
        (dict(kernel=np.zeros((3, 3, 2, 8), np.float32)), tf.errors.InvalidArgumentError,
         "input channels"),
        (dict(bias=np.zeros(7, np.float32)), tf.errors.InvalidArgumentError, "bias"),
        (dict(x=np.zeros((1, 2, 2, 3), np.float32)), tf.errors.InvalidArgumentError,
         "VALID"),
        (dict(strides=0), tf.errors.InvalidArgumentError, "strides"),
        (dict(padding="FULL"), ValueError, "padding"),
        (dict(word_bits=16), ValueError, "word_bits"),
    ]
    for change, error, match in cases:
        args = dict(x=x, kernel=k, bias=b)
        kwargs = {}
        for key, value in change.items():
            (args if key in args else kwargs)[key] = value
        with pytest.raises((error, ValueError), match=match):
            ops.float_conv2d_bits(args["x"], args["kernel"], args["bias"], **kwargs)
