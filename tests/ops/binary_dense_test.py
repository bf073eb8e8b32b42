"""tfdisc.ops.binary_dense against numpy, on every forced kernel."""
import os

import numpy as np
import pytest
import tensorflow as tf

import tfdisc.ops as ops
from tfdisc.ops import _loader

SPECIAL_K = (1, 31, 32, 33, 63, 64, 65, 127, 128, 129, 511, 512, 513)


def random_case(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.choice([0, 1, 2, 3, 4, 5, 17, 33, 40]))
    n = int(rng.choice([1, 2, 3, 4, 5, 8, 9, 31, 64, 65, 70, 130]))
    k = int(rng.choice(SPECIAL_K)) if seed % 2 else int(rng.integers(1, 700))
    word_bits = int(rng.choice([32, 64]))
    output = str(rng.choice(["int32", "float", "bitpacked"]))
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    multiplier = bias = None
    if output != "int32":
        if rng.random() < 0.7:
            multiplier = rng.standard_normal(n).astype(np.float32)
        if rng.random() < 0.7:
            bias = (rng.standard_normal(n) * 10).astype(np.float32)
    return x, w, k, word_bits, output, multiplier, bias


class TestBinaryDense:
    @pytest.mark.parametrize("seed", range(90))
    def test_random(self, kernel, seed):
        x, w, k, word_bits, output, multiplier, bias = random_case(seed)
        px = ops.bitpack(x, word_bits=word_bits).numpy()
        pw = ops.pack_dense_weights(w, word_bits=word_bits)
        got = ops.binary_dense(px, pw, k, multiplier=multiplier, bias=bias,
                               output=output).numpy()
        want = ops.binary_dense_reference(px, pw, k, multiplier=multiplier, bias=bias,
                                          output=output)
        np.testing.assert_array_equal(got, want)

    @pytest.mark.parametrize("k", SPECIAL_K)
    def test_equals_float_matmul_of_signs(self, kernel, k):
        rng = np.random.default_rng(k)
        x = rng.standard_normal((9, k)).astype(np.float32)
        w = rng.standard_normal((k, 37)).astype(np.float32)
        got = ops.binary_dense(ops.bitpack(x), ops.pack_dense_weights(w), k, output="int32")
        want = np.where(x < 0, -1, 1) @ np.where(w < 0, -1, 1)
        np.testing.assert_array_equal(got.numpy(), want)

    def test_large_multithreaded(self, kernel):
        # Big enough that the intra-op pool splits rows and columns.
        rng = np.random.default_rng(7)
        x = rng.standard_normal((130, 1000)).astype(np.float32)
        w = rng.standard_normal((1000, 300)).astype(np.float32)
        got = ops.binary_dense(ops.bitpack(x), ops.pack_dense_weights(w), 1000,
                               output="int32").numpy()
        np.testing.assert_array_equal(got, np.where(x < 0, -1, 1) @ np.where(w < 0, -1, 1))

    @pytest.mark.parametrize("m, k", [(15, 4096), (16, 4096), (16, 262144), (16, 262145)])
    def test_transposed_path_boundaries(self, kernel, m, k):
        # avx2 and avx512bw run batches of >= 16 rows of <= 8192 words through their
        # nibble-table transposed kernel (core/bdense.h): both sides of each boundary,
        # with a partial last column block and a bit-packed output.
        rng = np.random.default_rng(m + k)
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, 66)).astype(np.float32)
        bias = rng.standard_normal(66).astype(np.float32) * 20
        px, pw = ops.bitpack(x).numpy(), ops.pack_dense_weights(w)
        for output in ("int32", "bitpacked"):
            b = None if output == "int32" else bias
            got = ops.binary_dense(px, pw, k, bias=b, output=output).numpy()
            want = ops.binary_dense_reference(px, pw, k, bias=b, output=output)
            np.testing.assert_array_equal(got, want)

    def test_leading_dims_and_tf_function(self):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((2, 3, 70)).astype(np.float32)
        w = rng.standard_normal((70, 5)).astype(np.float32)
        pw = ops.pack_dense_weights(w)
        fn = tf.function(lambda v: ops.binary_dense(ops.bitpack(v), pw, 70))
        got = fn(x).numpy()
        assert got.shape == (2, 3, 5)
        np.testing.assert_array_equal(
            got, (np.where(x < 0, -1, 1) @ np.where(w < 0, -1, 1)).astype(np.float32))

    def test_bitpacked_output_equals_packing_float_output(self):
        rng = np.random.default_rng(4)
        x = rng.standard_normal((8, 200)).astype(np.float32)
        w = rng.standard_normal((200, 100)).astype(np.float32)
        mult = rng.standard_normal(100).astype(np.float32)
        bias = rng.standard_normal(100).astype(np.float32) * 5
        px, pw = ops.bitpack(x), ops.pack_dense_weights(w)
        for word_bits in (32, 64):
            y = ops.binary_dense(px, pw, 200, multiplier=mult, bias=bias)
            packed = ops.binary_dense(px, pw, 200, multiplier=mult, bias=bias,
                                      output="bitpacked", word_bits=word_bits)
            np.testing.assert_array_equal(packed.numpy(),
                                          ops.bitpack(y, word_bits=word_bits).numpy())


class TestBinaryDenseErrors:
    def _call(self, x, w, k, **kwargs):
        return ops.binary_dense(x, w, k, **kwargs)

    def test_k_mismatch(self):
        x = np.zeros((2, 3), np.int32)
        with pytest.raises(tf.errors.InvalidArgumentError, match="k=40"):
            self._call(x, np.zeros((4, 3), np.int32), 40)

    def test_weight_words_mismatch(self):
        with pytest.raises(tf.errors.InvalidArgumentError):
            self._call(np.zeros((2, 2), np.int32), np.zeros((4, 3), np.int32), 40)

    def test_wrong_rank(self):
        with pytest.raises(tf.errors.InvalidArgumentError):
            # The wrapper flattens leading dims, so call the raw op.
            _loader.load().tfdisc_binary_dense(
                np.zeros((2, 2, 2), np.int32), np.zeros((4, 2), np.int32),
                np.zeros([0], np.float32), np.zeros([0], np.float32), k=40)

    def test_weights_rank(self):
        with pytest.raises(tf.errors.InvalidArgumentError):
            self._call(np.zeros((2, 2), np.int32), np.zeros((2,), np.int32), 40)

    def test_float_input_dtype(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="Tpacked"):
            self._call(np.zeros((2, 2), np.float32), np.zeros((4, 2), np.float32), 40)

    def test_mixed_word_types(self):
        with pytest.raises((tf.errors.InvalidArgumentError, TypeError)):
            self._call(np.zeros((2, 2), np.int32), np.zeros((4, 1), np.int64), 40)

    def test_multiplier_length(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="multiplier and bias"):
            self._call(np.zeros((2, 2), np.int32), np.zeros((4, 2), np.int32), 40,
                       multiplier=np.ones(3, np.float32))

    def test_int32_output_rejects_transform(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="raw dot"):
            self._call(np.zeros((2, 2), np.int32), np.zeros((4, 2), np.int32), 40,
                       output="int32", bias=np.ones(4, np.float32))

    def test_bad_k(self):
        with pytest.raises(tf.errors.InvalidArgumentError):
            self._call(np.zeros((2, 0), np.int32), np.zeros((4, 0), np.int32), 0)

    def test_k_limit_is_int32(self):
        # Issue 7 item 6: k >= 2^31 overflowed the int32 dot product (-2.1e9
        # instead of +2.1e9). The attribute is checked before any input, so
        # the boundary is tested without a 256 MiB row.
        x, w = np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"k must be <= 2\^31 - 1"):
            self._call(x, w, 2**31)
        # 2^31 - 1 passes the limit and fails only on the (small) row length.
        with pytest.raises(tf.errors.InvalidArgumentError, match="needs 67108864 32-bit words"):
            self._call(x, w, 2**31 - 1)

    def test_bad_output_name(self):
        with pytest.raises(ValueError, match="output"):
            self._call(np.zeros((2, 2), np.int32), np.zeros((4, 2), np.int32), 40,
                       output="int8")

    def test_bad_kernel_env(self):
        with ops.use_kernel("auto"):
            os.environ["TFDISC_OPS_KERNEL"] = "bogus"
            with pytest.raises(tf.errors.InvalidArgumentError, match="TFDISC_OPS_KERNEL"):
                self._call(np.zeros((2, 2), np.int32), np.zeros((4, 2), np.int32), 40)

    def test_use_kernel_validates(self):
        with pytest.raises(ValueError, match="name"):
            with ops.use_kernel("sse"):
                pass


class TestSelectedKernel:
    def test_names_the_forced_kernel(self, kernel):
        assert ops.selected_kernel() == kernel

    def test_auto_resolves_to_the_best_supported(self):
        with ops.use_kernel("auto"):
            selected = ops.selected_kernel()
        order = ("neon", "avx512", "avx512bw", "avx2", "portable")
        assert selected == next(k for k in order if ops.kernel_supported(k))

    def test_bad_request(self):
        with ops.use_kernel("auto"):
            os.environ["TFDISC_OPS_KERNEL"] = "bogus"
            with pytest.raises(tf.errors.InvalidArgumentError, match="TFDISC_OPS_KERNEL"):
                ops.selected_kernel()


def test_non_integer_k_is_refused_not_truncated():
    """Issue 26 (neighbouring code): ``k=40.5`` became ``int(40.5) = 40``."""
    with pytest.raises(ValueError, match="`k` must be an integer"):
        ops.binary_dense(np.zeros((2, 2), np.int32), np.zeros((4, 2), np.int32), 40.5)
    x, w = np.zeros((2, 2), np.int32), np.zeros((4, 2), np.int32)
    np.testing.assert_array_equal(ops.binary_dense(x, w, 40.0), ops.binary_dense(x, w, 40))
