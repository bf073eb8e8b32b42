"""tfdisc.ops.packed_network: a chain of steps in one op equals the per-layer ops in
sequence, bit for bit, and malformed steps, weights or shapes are clear errors."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings, strategies as st

import tfdisc.ops as ops

RAW = ops.library().tfdisc_packed_network


def _signs(rng, shape):
    return np.where(rng.standard_normal(shape) < 0, -1.0, 1.0).astype(np.float32)


def _conv_chain(rng, word_bits=32, channels=40, filters=64, pool_or=False):
    """float NHWC -> bitpack -> conv (bits) -> max pool -> conv (bits) -> flatten -> dense."""
    f1 = _signs(rng, (3, 3, channels, filters))
    f2 = _signs(rng, (2, 2, filters, 64))
    w = _signs(rng, (3 * 3 * 64, 10))
    m1, b1 = rng.standard_normal(filters).astype(np.float32), rng.standard_normal(filters)
    b1 = b1.astype(np.float32)
    b3 = rng.standard_normal(10).astype(np.float32)
    mask = ops.bitpack_reference(np.where(m1 < 0, -1.0, 1.0), word_bits) if pool_or else None
    pf1 = ops.pack_conv_filter(f1, word_bits=word_bits)
    pf2 = ops.pack_conv_filter(f2, word_bits=word_bits)
    pw = ops.pack_dense_weights(w, word_bits=word_bits)
    steps = [("bitpack", [channels]),
             ("conv", [channels, filters, 3, 3, 1, 1, 1, 1, 1, 0, 1, 1, 1]),
             ("max_pool", [2, 2, 2, 2, 1, int(pool_or)]),
             ("conv", [filters, 64, 2, 2, 1, 1, 1, 1, 0, 0, 1, 0, 0]),
             ("flatten", []),
             ("dense", [3 * 3 * 64, 10, 0, 0, 1])]
    weights = [pf1, m1, b1] + ([mask] if pool_or else []) + [pf2, pw, b3]

    def per_layer(x):
        y = ops.bitpack(x, word_bits=word_bits)
        y = ops.binary_conv2d(y, pf1, channels, padding="SAME", multiplier=m1, bias=b1,
                              output="bitpacked", word_bits=word_bits)
        y = ops.bitpacked_max_pool2d(y, 2, strides=2, padding="SAME", or_mask=mask)
        y = ops.binary_conv2d(y, pf2, filters, padding="VALID", output="bitpacked",
                              word_bits=word_bits)
        y = tf.reshape(y, [tf.shape(y)[0], -1])
        return ops.binary_dense(y, pw, 3 * 3 * 64, bias=b3)

    return steps, weights, per_layer


@pytest.mark.parametrize("word_bits", [32, 64])
@pytest.mark.parametrize("batch", [1, 2, 33])
def test_conv_chain_equals_per_layer_ops(kernel, word_bits, batch):  # pylint: disable=unused-argument
    rng = np.random.default_rng(batch)
    steps, weights, per_layer = _conv_chain(rng, word_bits, pool_or=batch == 2)
    words, floats = ops.pack_network_weights(weights, word_bits)
    x = rng.standard_normal((batch, 8, 8, 40)).astype(np.float32)
    got = ops.packed_network(x, words, floats, steps, word_bits=word_bits)
    assert got.shape == (batch, 10)
    np.testing.assert_array_equal(got.numpy(), per_layer(x).numpy())


@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 200), units=st.integers(1, 130), units2=st.integers(1, 70),
       batch=st.integers(1, 20), word_bits=st.sampled_from([32, 64]),
       seed=st.integers(0, 2**16))
def test_dense_chain_property(k, units, units2, batch, word_bits, seed):
    """bitpack -> dense (bits out) -> dense (float out), any sizes."""
    rng = np.random.default_rng(seed)
    w1 = ops.pack_dense_weights(_signs(rng, (k, units)), word_bits=word_bits)
    w2 = ops.pack_dense_weights(_signs(rng, (units, units2)), word_bits=word_bits)
    bias = rng.standard_normal(units).astype(np.float32)
    mult = rng.standard_normal(units2).astype(np.float32)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    words, floats = ops.pack_network_weights([w1, bias, w2, mult], word_bits)
    steps = [("bitpack", [k]), ("dense", [k, units, 1, 0, 1]),
             ("dense", [units, units2, 0, 1, 0])]
    got = ops.packed_network(x, words, floats, steps, word_bits=word_bits)
    h = ops.binary_dense(ops.bitpack(x, word_bits=word_bits), w1, k, bias=bias,
                         output="bitpacked", word_bits=word_bits)
    want = ops.binary_dense(h, w2, units, multiplier=mult)
    np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_bits_in_bits_out_and_static_shape():
    rng = np.random.default_rng(0)
    w = ops.pack_dense_weights(_signs(rng, (64, 70)))
    words, floats = ops.pack_network_weights([w])
    x = ops.bitpack(rng.standard_normal((5, 64)).astype(np.float32))
    got = ops.packed_network(x, words, floats, [("dense", [64, 70, 1, 0, 0])],
                             output="bitpacked")
    want = ops.binary_dense(x, w, 64, output="bitpacked")
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    fn = tf.function(lambda v: ops.packed_network(v, words, floats,
                                                  [("dense", [64, 70, 1, 0, 0])],
                                                  output="bitpacked"))
    spec = tf.TensorSpec([None, 2], tf.int32)
    assert fn.get_concrete_function(spec).structured_outputs.shape.as_list() == [None, 3]


def _raw(x, words, floats, kinds, ints, word_bits=32, out_type=tf.float32):
    return RAW(x, words, floats, steps=kinds, step_ints=ints, word_bits=word_bits,
               out_type=out_type)


class TestErrors:
    def setup_method(self):
        rng = np.random.default_rng(1)
        self.steps, weights, _ = _conv_chain(rng)
        self.words, self.floats = ops.pack_network_weights(weights)
        self.kinds = [k for k, _ in self.steps]
        self.ints = [v for _, values in self.steps for v in values]
        self.x = rng.standard_normal((1, 8, 8, 40)).astype(np.float32)

    def check(self, match, **changes):
        args = dict(x=self.x, words=self.words, floats=self.floats, kinds=self.kinds,
                    ints=self.ints, out_type=tf.float32)
        args.update(changes)
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
            _raw(**args)

    def test_python_checks(self):
        with pytest.raises(ValueError, match="unknown step kind 'pool'"):
            ops.packed_network(self.x, self.words, self.floats, [("pool", [])])
        with pytest.raises(ValueError, match="takes 5 integers, got 4"):
            ops.packed_network(self.x, self.words, self.floats, [("dense", [1, 2, 0, 0])])
        with pytest.raises(ValueError, match="word_bits"):
            ops.packed_network(self.x, self.words, self.floats, self.steps, word_bits=16)

    def test_malformed_steps(self):
        self.check("unknown kind 'conv3d'", kinds=["conv3d"])
        self.check("step 5 \\(dense\\) needs 5 integers", ints=self.ints[:-1])
        self.check("step_ints has 39 integers but the 6 steps take 38", ints=self.ints + [0])
        bad = list(self.ints)
        bad[1 + 9] = 2  # the first conv's pad_value
        self.check("step 1 \\(conv\\): pad_value must be -1, 0 or 1, got 2", ints=bad)
        bad = list(self.ints)
        bad[1 + 3] = 0  # the first conv's filter width
        self.check("step 1 \\(conv\\): filter width must be in \\[1, 2\\^31 - 1\\], got 0",
                   ints=bad)
        self.check("step 0 \\(conv\\) takes packed bits but the previous step gives float",
                   kinds=self.kinds[1:], ints=self.ints[1:])
        self.check("step 0 \\(dense\\) takes packed bits", kinds=["dense"],
                   ints=[64, 10, 0, 0, 0])
        self.check("step 2 \\(flatten\\) takes rank-4 data but gets rank 2",
                   kinds=["bitpack", "flatten", "flatten"], ints=[40], out_type=tf.int32)

    def test_malformed_weights(self):
        self.check("the steps need \\d+ elements in words .*step 1 \\(conv\\) filter 1152 at 0",
                   words=self.words[:-1])
        self.check("the steps need \\d+ elements in floats", floats=self.floats[1:])
        self.check("words must be 1-D", words=self.words.reshape(1, -1))
        self.check("words must have the word type of word_bits=32",
                   words=self.words.astype(np.int64))

    def test_malformed_shapes(self):
        self.check("step 0 \\(bitpack\\): channels=40 needs 40 values per pixel, got 39",
                   x=self.x[..., :39])
        self.check("the input must be rank 2", x=self.x[0, 0, 0])
        self.check("VALID convolution needs an input at least as large as the",
                   x=self.x[:, :2, :2])
        bad = list(self.ints)
        bad[-5] = 3 * 3 * 64 + 1  # the dense k
        self.check("step 5 \\(dense\\): k=577 needs 19 32-bit words per row, got 18 words",
                   ints=bad)
        # A flatten of pixels with padding bits (20 channels) is not a packed row.
        self.check("channels must be a multiple of 32",
                   x=self.x[..., :20], kinds=["bitpack", "flatten"], ints=[20],
                   out_type=tf.int32)

    def test_out_type_must_match(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="out_type must be float"):
            _raw(self.x, self.words, self.floats, self.kinds, self.ints, out_type=tf.int32)
