"""tfdisc.ops.binary_conv2d / bitpacked_max_pool2d against numpy and TF."""
import numpy as np
import pytest
import tensorflow as tf

import tfdisc.ops as ops

CHANNELS = (1, 3, 31, 32, 33, 63, 64, 65, 100)


def random_case(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([0, 1, 1, 2, 3]))
    h, w = (int(v) for v in rng.integers(1, 10, size=2))
    c = int(rng.choice(CHANNELS))
    o = int(rng.choice([1, 2, 5, 16, 33, 64, 65, 70]))
    kh, kw = (int(v) for v in rng.choice([1, 2, 3, 5], size=2))
    if seed % 3 == 0:
        kw = kh
    strides = tuple(int(v) for v in rng.choice([1, 2, 3], size=2))
    dilations = (1, 1) if seed % 4 else tuple(int(v) for v in rng.choice([1, 2], size=2))
    padding = str(rng.choice(["SAME", "VALID"]))
    if padding == "VALID":
        h = max(h, (kh - 1) * dilations[0] + 1)
        w = max(w, (kw - 1) * dilations[1] + 1)
    pad_value = int(rng.choice([-1, 0, 1]))
    word_bits = int(rng.choice([32, 64]))
    output = str(rng.choice(["int32", "float", "bitpacked"]))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    f = rng.standard_normal((kh, kw, c, o)).astype(np.float32)
    mult = bias = None
    if output != "int32":
        mult = rng.standard_normal(o).astype(np.float32) if rng.random() < 0.7 else None
        bias = (rng.standard_normal(o) * 5).astype(np.float32) if rng.random() < 0.7 else None
    kwargs = dict(strides=strides, padding=padding, pad_value=pad_value, dilations=dilations,
                  multiplier=mult, bias=bias, output=output)
    return x, f, c, word_bits, kwargs


def float_conv_of_signs(x, f, strides, padding, pad_value):
    """larq's computation: pad sign(x) with pad_value, then a float conv."""
    xs = np.where(x < 0, -1.0, 1.0).astype(np.float32)
    fs = np.where(f < 0, -1.0, 1.0).astype(np.float32)
    if padding == "SAME":
        pads = []
        for size, k, s in zip(x.shape[1:3], f.shape[:2], strides):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        xs = tf.pad(xs, [(0, 0), pads[0], pads[1], (0, 0)], constant_values=pad_value)
    return tf.nn.conv2d(xs, fs, strides, "VALID").numpy()


class TestBinaryConv2D:
    @pytest.mark.parametrize("seed", range(100))
    def test_random(self, kernel, seed):
        x, f, c, word_bits, kwargs = random_case(seed)
        px = ops.bitpack(x, word_bits=word_bits).numpy()
        pf = ops.pack_conv_filter(f, word_bits=word_bits)
        got = ops.binary_conv2d(px, pf, c, **kwargs).numpy()
        want = ops.binary_conv2d_reference(px, pf, c, **kwargs)
        np.testing.assert_array_equal(got, want)

    @pytest.mark.parametrize("pad_value", [-1, 0, 1])
    @pytest.mark.parametrize("padding", ["SAME", "VALID"])
    @pytest.mark.parametrize("stride", [1, 2])
    @pytest.mark.parametrize("size", [1, 3, 5])
    def test_equals_tf_float_conv(self, kernel, size, stride, padding, pad_value):
        rng = np.random.default_rng(size * 100 + stride)
        x = rng.standard_normal((2, 9, 8, 65)).astype(np.float32)
        f = rng.standard_normal((size, size, 65, 40)).astype(np.float32)
        got = ops.binary_conv2d(ops.bitpack(x), ops.pack_conv_filter(f), 65,
                                strides=stride, padding=padding, pad_value=pad_value)
        want = float_conv_of_signs(x, f, (stride, stride), padding, pad_value)
        np.testing.assert_array_equal(got.numpy(), want)

    def test_cifar_layer_multithreaded(self, kernel):
        rng = np.random.default_rng(5)
        x = rng.standard_normal((2, 16, 16, 128)).astype(np.float32)
        f = rng.standard_normal((3, 3, 128, 130)).astype(np.float32)
        got = ops.binary_conv2d(ops.bitpack(x), ops.pack_conv_filter(f), 128,
                                padding="SAME", pad_value=0, output="int32")
        np.testing.assert_array_equal(
            got.numpy(), float_conv_of_signs(x, f, (1, 1), "SAME", 0).astype(np.int32))

    @pytest.mark.parametrize("pad_value", [-1, 0, 1])
    @pytest.mark.parametrize("channels, out_channels", [(33, 70), (65, 16), (128, 130)])
    def test_many_pixels_short_rows(self, kernel, channels, out_channels, pad_value):
        # >= 256 output pixels and short patch rows: the AVX-512 kernel takes
        # its transposed (channel-vectorized) path here.
        rng = np.random.default_rng(channels + pad_value)
        x = rng.standard_normal((4, 9, 9, channels)).astype(np.float32)
        f = rng.standard_normal((3, 3, channels, out_channels)).astype(np.float32)
        px = ops.bitpack(x).numpy()
        pf = ops.pack_conv_filter(f)
        got = ops.binary_conv2d(px, pf, channels, padding="SAME", pad_value=pad_value,
                                output="int32")
        want = ops.binary_conv2d_reference(px, pf, channels, padding="SAME",
                                           pad_value=pad_value, output="int32")
        np.testing.assert_array_equal(got.numpy(), want)

    @pytest.mark.parametrize("pad_value", [-1, 0, 1])
    @pytest.mark.parametrize("height, width", [(1, 1), (2, 2), (2, 3), (8, 8)])
    def test_long_rows_few_pixels(self, kernel, height, width, pad_value):
        # Patch rows of >= 128 words (3x3 over 520 channels: 153 words): kernels with
        # a nibble-table form (avx2, avx512bw) take the transposed path from 4 output
        # pixels at any row length (core/bconv2d/optimized.h), through the op's
        # filter cache; 1 pixel stays row-major. 1, 4, 6 and 64 pixels.
        rng = np.random.default_rng(height * 10 + width + pad_value)
        x = rng.standard_normal((1, height, width, 520)).astype(np.float32)
        f = rng.standard_normal((3, 3, 520, 70)).astype(np.float32)
        bias = rng.standard_normal(70).astype(np.float32) * 30
        px, pf = ops.bitpack(x).numpy(), ops.pack_conv_filter(f)
        for output, b in (("int32", None), ("bitpacked", bias)):
            kwargs = dict(padding="SAME", pad_value=pad_value, bias=b, output=output)
            got = ops.binary_conv2d(px, pf, 520, **kwargs).numpy()
            want = ops.binary_conv2d_reference(px, pf, 520, **kwargs)
            np.testing.assert_array_equal(got, want)

    def test_filter_cache_follows_filter_changes(self, kernel):
        # The kernel caches a transposed copy of the filter across calls; a
        # different filter of the same shape must not hit the stale copy.
        rng = np.random.default_rng(11)
        px = ops.bitpack(rng.standard_normal((1, 6, 6, 64)).astype(np.float32)).numpy()
        filters = [ops.pack_conv_filter(rng.standard_normal((3, 3, 64, 20)).astype(np.float32))
                   for _ in range(2)]
        for pf in (filters[0], filters[1], filters[0]):
            got = ops.binary_conv2d(px, pf, 64, padding="SAME", output="int32")
            want = ops.binary_conv2d_reference(px, pf, 64, padding="SAME", output="int32")
            np.testing.assert_array_equal(got.numpy(), want)

    @pytest.mark.parametrize("channels", [64, 200])
    def test_filter_cache_follows_filter_shape(self, kernel, channels):
        # The same filter words under another [out, h, w] factorization: [2, 1, 1, W]
        # holds two 1x1 filters, [1, 1, 2, W] one 1x2 filter. A cache keyed on the
        # words alone would hand the second call the first one's transposed copy.
        # 289 and 272 output pixels with short rows: the transposed path where a
        # kernel has one.
        rng = np.random.default_rng(channels)
        px = ops.bitpack(rng.standard_normal((1, 17, 17, channels)).astype(np.float32)).numpy()
        pf = ops.pack_conv_filter(rng.standard_normal((1, 1, channels, 2)).astype(np.float32))
        pf = np.asarray(pf)
        for f in (pf, pf.reshape(1, 1, 2, -1), pf):
            got = ops.binary_conv2d(px, f, channels, padding="VALID", output="int32")
            want = ops.binary_conv2d_reference(px, f, channels, padding="VALID",
                                               output="int32")
            np.testing.assert_array_equal(got.numpy(), want)

    def test_tf_function_shape_inference(self):
        pf = ops.pack_conv_filter(np.ones((3, 3, 40, 8), np.float32))
        fn = tf.function(lambda v: ops.binary_conv2d(v, pf, 40, strides=2, padding="SAME"))
        spec = tf.TensorSpec([None, 9, 10, 2], tf.int32)
        assert fn.get_concrete_function(spec).output_shapes.as_list() == [None, 5, 5, 8]
        fn2 = tf.function(lambda v: ops.binary_conv2d(v, pf, 40, padding="VALID",
                                                      output="bitpacked", word_bits=64))
        assert fn2.get_concrete_function(spec).output_shapes.as_list() == [None, 7, 8, 1]


class TestBinaryConv2DErrors:
    def _args(self, c=40, words=2):
        return (np.zeros((1, 4, 4, words), np.int32), np.zeros((3, 3, 3, words), np.int32), c)

    @pytest.mark.parametrize("kwargs, match", [
        (dict(strides=0), "strides"),
        (dict(strides=(1, -2)), "strides"),
        (dict(dilations=0), "dilations"),
        (dict(pad_value=2), "pad_value"),
        (dict(padding="FULL"), "padding"),
    ])
    def test_bad_attributes(self, kwargs, match):
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=match):
            ops.binary_conv2d(*self._args(), **kwargs)

    def test_channel_mismatch(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="channels_in=100"):
            ops.binary_conv2d(*self._args(c=100))

    def test_filter_words_mismatch(self):
        x, _, c = self._args()
        with pytest.raises(tf.errors.InvalidArgumentError):
            ops.binary_conv2d(x, np.zeros((3, 3, 3, 1), np.int32), c)

    def test_wrong_rank(self):
        x, f, c = self._args()
        with pytest.raises(tf.errors.InvalidArgumentError):
            ops.binary_conv2d(x[0], f, c)
        with pytest.raises(tf.errors.InvalidArgumentError):
            ops.binary_conv2d(x, f[0], c)

    def test_valid_input_smaller_than_filter(self):
        with pytest.raises(tf.errors.InvalidArgumentError):
            ops.binary_conv2d(np.zeros((1, 2, 2, 2), np.int32),
                              np.zeros((3, 3, 3, 2), np.int32), 40, padding="VALID")

    def test_float_input(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="Tpacked"):
            ops.binary_conv2d(np.zeros((1, 4, 4, 2), np.float32),
                              np.zeros((3, 3, 3, 2), np.float32), 40)

    def test_dot_size_limit_is_int32(self):
        # Issue 7 item 6: channels_in * taps >= 2^31 overflowed the int32 dot
        # product. Checked before the word counts, so tiny tensors suffice.
        x = np.zeros((1, 2, 2, 1), np.int32)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"channels_in must be <= 2\^31 - 1"):
            ops.binary_conv2d(x, np.zeros((1, 1, 1, 1), np.int32), 2**31)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"channels_in \* filter height \* filter width must be"
                                 r" <= 2\^31 - 1 .*1073741824 \* 1 \* 2"):
            ops.binary_conv2d(x, np.zeros((1, 1, 2, 1), np.int32), 2**30)
        # At the limit: (2^30 - 1) * 2 taps passes, and 2^30 * 1 tap passes;
        # each fails only on the (small) word count.
        for channels, taps in ((2**30 - 1, 2), (2**30, 1)):
            with pytest.raises(tf.errors.InvalidArgumentError, match="words per input pixel"):
                ops.binary_conv2d(x, np.zeros((1, 1, taps, 1), np.int32), channels)

    def test_bias_length(self):
        with pytest.raises(tf.errors.InvalidArgumentError, match="multiplier and bias"):
            ops.binary_conv2d(*self._args(), bias=np.ones(4, np.float32))


class TestBitpackedMaxPool:
    @pytest.mark.parametrize("seed", range(60))
    def test_random(self, seed):
        rng = np.random.default_rng(seed)
        c = int(rng.choice(CHANNELS))
        word_bits = int(rng.choice([32, 64]))
        pool = tuple(int(v) for v in rng.choice([1, 2, 3], size=2))
        strides = tuple(int(v) for v in rng.choice([1, 2, 3], size=2))
        padding = str(rng.choice(["SAME", "VALID"]))
        h, w = (int(v) for v in rng.integers(3, 9, size=2))
        x = ops.bitpack(rng.standard_normal((int(rng.integers(0, 3)), h, w, c))
                        .astype(np.float32), word_bits=word_bits).numpy()
        mask = None
        if seed % 2:
            mask = ops.bitpack_reference(rng.standard_normal(c).astype(np.float32), word_bits)
        got = ops.bitpacked_max_pool2d(x, pool, strides=strides, padding=padding,
                                       or_mask=mask).numpy()
        want = ops.bitpacked_max_pool2d_reference(x, pool, strides=strides, padding=padding,
                                                  or_mask=mask)
        np.testing.assert_array_equal(got, want)

    def test_equals_tf_max_pool_of_signs(self):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((2, 8, 7, 70)).astype(np.float32)
        got = ops.bitpacked_max_pool2d(ops.bitpack(x), 3, strides=2, padding="SAME")
        want = tf.nn.max_pool2d(np.where(x < 0, -1.0, 1.0).astype(np.float32), 3, 2, "SAME")
        np.testing.assert_array_equal(got.numpy(), ops.bitpack(want).numpy())

    def test_bad_arguments(self):
        x = np.zeros((1, 4, 4, 2), np.int32)
        with pytest.raises(tf.errors.InvalidArgumentError, match="or_mask"):
            ops.bitpacked_max_pool2d(x, 2, or_mask=np.zeros(3, np.int32))
        with pytest.raises(tf.errors.InvalidArgumentError):
            ops.bitpacked_max_pool2d(x, 0)
        with pytest.raises(tf.errors.InvalidArgumentError):
            ops.bitpacked_max_pool2d(x[0], 2)


class TestNoSilentCoercion:
    """Issue 26: ``pad_value=0.5`` became zero padding (``int(0.5)``); strides 1.5 became 1."""

    def _args(self):
        return (np.zeros((1, 4, 4, 2), np.int32), np.zeros((3, 3, 3, 2), np.int32), 40)

    @pytest.mark.parametrize("pad_value", [0.5, -0.5, 1.5, 2, "1", None, True, np.nan])
    def test_unrepresentable_pad_value_is_refused(self, pad_value):
        with pytest.raises(ValueError, match=r"`pad_value` must be -1, 0 or 1"):
            ops.binary_conv2d(*self._args(), padding="SAME", pad_value=pad_value)

    @pytest.mark.parametrize("pad_value", [1.0, -1.0, 0.0, np.float32(-1), np.int64(1)])
    def test_larq_float_pad_values_are_accepted(self, pad_value):
        rng = np.random.default_rng(0)
        x = rng.integers(-2**31, 2**31, (1, 4, 4, 2), dtype=np.int64).astype(np.int32)
        f = rng.integers(-2**31, 2**31, (3, 3, 3, 2), dtype=np.int64).astype(np.int32)
        got = ops.binary_conv2d(x, f, 40, padding="SAME", pad_value=pad_value, output="int32")
        want = ops.binary_conv2d(x, f, 40, padding="SAME", pad_value=int(pad_value),
                                 output="int32")
        np.testing.assert_array_equal(got, want)

    @pytest.mark.parametrize("kwargs, match", [
        (dict(strides=1.5), "strides"), (dict(strides=(1, 2.5)), "strides"),
        (dict(dilations=1.5), "dilations"), (dict(strides=True), "strides"),
        (dict(padding=None), "padding"),
    ])
    def test_non_integer_geometry_is_refused(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            ops.binary_conv2d(*self._args(), **kwargs)

    def test_non_integer_channels_is_refused(self):
        x, f, _ = self._args()
        with pytest.raises(ValueError, match="channels_in"):
            ops.binary_conv2d(x, f, 40.5)

    def test_pool_size_is_not_truncated(self):
        with pytest.raises(ValueError, match="pool_size"):
            ops.bitpacked_max_pool2d(np.zeros((1, 4, 4, 1), np.int32), 2.5)

    def test_packed_layer_refuses_pad_value(self):
        from tfdisc.convert.layers import PackedBinaryConv2D  # pylint: disable=import-outside-toplevel

        with pytest.raises(ValueError, match="pad_value"):
            PackedBinaryConv2D(8, (3, 3), 40, padding="SAME", pad_value=0.5)
        assert PackedBinaryConv2D(8, (3, 3), 40, padding="SAME", pad_value=-1.0).pad_value == -1
