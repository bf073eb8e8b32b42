"""tfdisc.ops.bitpack against its numpy twin and bit by bit."""
import larq as lq
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

import tfdisc.ops as ops

WIDTHS = (1, 5, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 300)


class TestBitpack:
    @pytest.mark.parametrize("word_bits", [32, 64])
    @pytest.mark.parametrize("k", WIDTHS)
    def test_matches_reference_float32(self, kernel, k, word_bits):
        rng = np.random.default_rng(k * word_bits)
        x = rng.standard_normal((3, 2, k)).astype(np.float32)
        x[0, 0, : k // 2] = 0.0  # zeros pack as +1 (bit 0), like larq's sign
        got = ops.bitpack(x, word_bits=word_bits).numpy()
        assert got.dtype == (np.int32 if word_bits == 32 else np.int64)
        assert got.shape == (3, 2, -(-k // word_bits))
        np.testing.assert_array_equal(got, ops.bitpack_reference(x, word_bits))

    @pytest.mark.parametrize(
        "dtype", [np.float64, np.float16, tf.bfloat16, np.int8, np.int32, np.int64])
    @pytest.mark.parametrize("k", (1, 31, 33, 64, 65))
    def test_other_dtypes(self, dtype, k):
        rng = np.random.default_rng(k)
        x = rng.integers(-3, 4, size=(4, k)).astype(np.float32)
        got = ops.bitpack(tf.cast(x, dtype)).numpy()
        np.testing.assert_array_equal(got, ops.bitpack_reference(x))

    @pytest.mark.parametrize("word_bits", [32, 64])
    def test_every_bit_and_zero_padding(self, word_bits):
        k = word_bits + 7
        x = -np.eye(k, dtype=np.float32)  # row i: only channel i is -1
        packed = ops.bitpack(x, word_bits=word_bits).numpy()
        unsigned = packed.view(np.uint32 if word_bits == 32 else np.uint64)
        for i in range(k):
            word, bit = divmod(i, word_bits)
            expected = np.zeros(2, unsigned.dtype)
            expected[word] = np.array(1, unsigned.dtype) << np.array(bit, unsigned.dtype)
            np.testing.assert_array_equal(unsigned[i], expected)
        # All -1: padding bits of the last word stay zero.
        full = ops.bitpack(-np.ones((1, k), np.float32), word_bits=word_bits).numpy()
        last = int(full.view(unsigned.dtype)[0, 1])
        assert last == (1 << 7) - 1

    def test_negative_zero_and_nan_pack_as_plus_one(self):
        x = np.array([[-0.0, np.nan, -np.inf, np.inf, -1e-30]], np.float32)
        got = int(ops.bitpack(x).numpy()[0, 0])
        assert got == 0b10100

    @pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, tf.bfloat16])
    def test_subnormals_zero_and_nan_agree_with_larq_and_reference(self, kernel, dtype):
        # Issue 7 item 12: the reference packed a negative subnormal as -1.
        np_dtype = tf.as_dtype(dtype).as_numpy_dtype
        info = ml_dtypes.finfo(np_dtype)
        sub = np.asarray(info.smallest_subnormal, np_dtype)
        values = np.array([-sub, -sub * np.asarray(3, np_dtype), -info.tiny, -0.0, 0.0,
                           -np.inf, -1.0, 1.0, np.nan], np_dtype)
        x = np.tile(values, 5)[None, :40]  # two words
        got = ops.bitpack(x).numpy()
        np.testing.assert_array_equal(got, ops.bitpack_reference(x))
        graph = tf.function(ops.bitpack)(tf.constant(x)).numpy()  # executor thread
        np.testing.assert_array_equal(graph, got)
        signs = lq.quantizers.ste_sign(tf.constant(x)).numpy().astype(np.float32)
        finite = ~np.isnan(signs)  # larq's sign(NaN) is NaN; the op packs +1
        unpacked = ops.unpack_reference(got, x.shape[-1])
        np.testing.assert_array_equal(unpacked[finite], signs[finite])
        assert np.all(unpacked[~finite] == 1.0)
        # -0.0, +-smallest normal and the subnormals, spelled out:
        bits = ops.bitpack_reference(values[None])[0, 0]
        subnormal_is_minus_one = dtype == np.float16  # normal in float32
        expected = [subnormal_is_minus_one] * 2 + [True, False, False, True, True, False,
                                                   False]
        assert [bool((int(bits) >> i) & 1) for i in range(9)] == expected

    @pytest.mark.parametrize("shape", [(0, 5), (5, 0), (7,), (2, 0, 3), (2, 3, 4, 40)])
    def test_shapes(self, shape):
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        got = ops.bitpack(x).numpy()
        np.testing.assert_array_equal(got, ops.bitpack_reference(x))

    def test_unpack_inverts(self):
        x = np.random.default_rng(1).standard_normal((6, 77)).astype(np.float32)
        np.testing.assert_array_equal(
            ops.unpack_reference(ops.bitpack(x).numpy(), 77), np.where(x < 0, -1.0, 1.0))

    def test_tf_function_and_shape_inference(self):
        fn = tf.function(lambda x: ops.bitpack(x, word_bits=64))
        spec = tf.TensorSpec([None, 70], tf.float32)
        assert fn.get_concrete_function(spec).output_shapes.as_list() == [None, 2]
        x = np.random.default_rng(2).standard_normal((3, 70)).astype(np.float32)
        np.testing.assert_array_equal(fn(x).numpy(), ops.bitpack_reference(x, 64))

    def test_scalar_is_invalid(self):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
            ops.bitpack(tf.constant(1.0))

    def test_bad_word_bits(self):
        with pytest.raises(ValueError, match="word_bits"):
            ops.bitpack(np.zeros((1, 3), np.float32), word_bits=16)

    def test_no_gradient(self):
        x = tf.constant(np.ones((2, 3), np.float32))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.cast(ops.bitpack(x), tf.float32)
        assert tape.gradient(y, x) is None
