"""tfdisc.convert.to_packed: packed models predict like the larq models."""
import warnings

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import tfdisc
from tfdisc import convert

ops = pytest.importorskip("tfdisc.ops", reason="op library unavailable", exc_type=ImportError)


def randomize_batch_norms(model, seed=0, negative_gamma=False):
    """Random moving statistics (and gamma/beta), so that folding is tested
    on non-trivial values; optionally some negative gammas."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            values = {}
            for w in layer.weights:
                name = w.name.split("/")[-1].split(":")[0]
                v = rng.standard_normal(w.shape).astype(np.float32)
                if name == "moving_variance":
                    v = np.abs(v) + 0.5
                elif name == "moving_mean":
                    v = v * 5
                elif name == "gamma" and not negative_gamma:
                    v = np.abs(v) + 0.1
                values[w.name] = v
            layer.set_weights([values[w.name] for w in layer.weights])


def assert_same_predictions(model, packed, x, exact):
    want = model(x, training=False).numpy()
    got = packed(x).numpy()
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4 * np.abs(want).max())


ZOO = [
    ("fcn1", dict(width=96, depth=4), True),
    ("fcn2", dict(width=70, depth=3), True),
    ("alexnet_cifar", dict(width=16, depth=2, input_shape=(16, 16, 3)), False),
    ("resnet20", dict(width=8, input_shape=(16, 16, 3)), False),
]


class TestZoo:
    @pytest.mark.parametrize("precision", ["binary", "xnor"])
    @pytest.mark.parametrize("name, kwargs, exact", ZOO, ids=[z[0] for z in ZOO])
    def test_predicts_like_larq(self, name, kwargs, exact, precision):
        model = tfdisc.models.build(name, precision=precision, **kwargs)
        randomize_batch_norms(model, seed=len(name))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every binary layer converts
            # The per-layer graph: its layers are inspected below (the fused default
            # equals it bit for bit, tests/convert_fused_test.py).
            packed = convert.to_packed(model, fused=False)
        report = packed.packing_report
        n_quant = sum(isinstance(l, (lq.layers.QuantDense, lq.layers.QuantConv2D))
                      for l in model.layers)
        assert len(report.packed_layers) == n_quant > 0
        assert not report.float_layers
        assert len(report.folded_batch_norms) == n_quant
        if name in ("alexnet_cifar", "resnet20"):
            # The full-precision first convolution takes its batch norm in.
            assert report.folded_float_convs[0] == ("conv_in", "bn_in")
        # alexnet_cifar's first layer feeds only conv_1: it emits sign bits
        # (resnet20's also feeds the shortcut add, so it stays float).
        assert report.bit_output_float_convs == (
            ("conv_in",) if name == "alexnet_cifar" else ())
        if name == "alexnet_cifar":
            assert isinstance(packed.get_layer("conv_in_with_bn_bits"),
                              convert.PackedFloatConv2D)
            assert packed.get_layer("conv_1").input_packed
        if name != "resnet20":
            # Every binary layer but the last feeds another binary layer.
            assert len(report.bitpacked_outputs) == n_quant - 1
        assert report.packed_bytes < report.float_bytes
        assert report.binary_float_bytes / report.binary_packed_bytes > 10
        x = np.random.default_rng(1).random((24, *model.input_shape[1:])).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=exact and precision == "binary")

    def test_done_means_fcn1(self):
        # The "done" model, at its real width but depth 2 to stay fast.
        model = tfdisc.models.build("fcn1", precision="binary", depth=2)
        randomize_batch_norms(model)
        packed = convert.to_packed(model)
        x = np.random.default_rng(2).random((8, 28, 28, 1)).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=True)

    def test_word_bits_64_and_options(self):
        model = tfdisc.models.build("alexnet_cifar", precision="binary", width=32, depth=1,
                                    input_shape=(8, 8, 3))
        randomize_batch_norms(model, negative_gamma=True)
        x = np.random.default_rng(3).random((6, 8, 8, 3)).astype(np.float32)
        for kwargs in (dict(word_bits=64), dict(bitpacked_outputs=False),
                       dict(fold_batch_norm=False)):
            packed = convert.to_packed(model, **kwargs)
            assert_same_predictions(model, packed, x, exact=False)
        assert not convert.to_packed(model, fold_batch_norm=False).packing_report \
            .folded_batch_norms
        assert not convert.to_packed(model, bitpacked_outputs=False).packing_report \
            .bitpacked_outputs

    def test_bad_arguments(self):
        model = tfdisc.models.build("fcn2", precision="binary", width=8, depth=2)
        with pytest.raises(ValueError, match="word_bits"):
            convert.to_packed(model, word_bits=16)
        with pytest.raises(ValueError, match="model"):
            convert.to_packed(lambda x: x)


def _quant_conv(filters, kernel, **kwargs):
    kwargs.setdefault("input_quantizer", "ste_sign")
    kwargs.setdefault("kernel_quantizer", "ste_sign")
    kwargs.setdefault("use_bias", False)
    kwargs.setdefault("kernel_constraint", "weight_clip")
    return lq.layers.QuantConv2D(filters, kernel, **kwargs)


class TestCustomModels:
    @pytest.mark.parametrize("pad_values", [0.0, 1.0, -1.0])
    @pytest.mark.parametrize("strides", [1, 2])
    @pytest.mark.parametrize("padding", ["same", "valid"])
    def test_sequential_conv_padding(self, pad_values, strides, padding):
        model = tf.keras.Sequential([
            tf.keras.layers.InputLayer((13, 14, 5)),
            _quant_conv(33, 3, padding=padding, strides=strides, pad_values=pad_values),
            tf.keras.layers.BatchNormalization(),
            _quant_conv(64, 5, padding=padding, pad_values=pad_values, use_bias=True),
            tf.keras.layers.BatchNormalization(),
            _quant_conv(7, 1),
            tf.keras.layers.GlobalAveragePooling2D(),
        ])
        randomize_batch_norms(model, negative_gamma=True)
        packed = convert.to_packed(model)
        assert len(packed.packing_report.packed_layers) == 3
        x = np.random.default_rng(0).standard_normal((4, 13, 14, 5)).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=False)

    @pytest.mark.parametrize("negative_gamma", [False, True])
    def test_functional_pool_then_bn_uses_packed_pool(self, negative_gamma):
        inputs = tf.keras.Input((8, 8, 3))
        x = _quant_conv(64, 3, padding="same", pad_values=1.0)(inputs)
        x = tf.keras.layers.MaxPool2D(2)(x)
        x = tf.keras.layers.BatchNormalization()(x)
        x = _quant_conv(32, 3, padding="same", pad_values=1.0)(x)
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.MaxPool2D(2, strides=1, padding="same")(x)
        x = tf.keras.layers.Flatten()(x)
        x = lq.layers.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
        model = tf.keras.Model(inputs, x)
        randomize_batch_norms(model, seed=4, negative_gamma=negative_gamma)
        packed = convert.to_packed(model, fused=False)
        report = packed.packing_report
        assert len(report.bitpacked_outputs) == 2
        assert sum(isinstance(l, convert.PackedMaxPool2D) for l in packed.layers) == 2
        x = np.random.default_rng(1).standard_normal((5, 8, 8, 3)).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=False)

    def test_float_conv_batch_norm_folds_into_kernel_and_bias(self):
        inputs = tf.keras.Input((9, 9, 3))
        x = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=True, name="plain")(inputs)
        x = tf.keras.layers.BatchNormalization(name="plain_bn")(x)
        x = lq.layers.QuantConv2D(32, 3, padding="same", strides=2, use_bias=False,
                                  name="larq_float")(x)  # no quantizers: full precision
        x = tf.keras.layers.BatchNormalization(name="larq_float_bn")(x)
        x = lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, use_bias=False,
                                  name="padded_float")(x)  # pad_values 1: not a Conv2D
        x = tf.keras.layers.BatchNormalization(name="padded_float_bn")(x)
        x = _quant_conv(32, 3, padding="same", pad_values=1.0, name="binary")(x)
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.Flatten()(x)
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(5)(x))
        randomize_batch_norms(model, seed=5, negative_gamma=True)
        packed = convert.to_packed(model)
        report = packed.packing_report
        assert report.folded_float_convs == (("plain", "plain_bn"),
                                             ("larq_float", "larq_float_bn"))
        assert "float convolutions with a folded batch norm: 2" in report.summary()
        names = [l.name for l in packed.layers]
        assert "plain_with_bn" in names and "padded_float" in names and "padded_float_bn" in names
        x = np.random.default_rng(6).standard_normal((4, 9, 9, 3)).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=False)
        unfolded = convert.to_packed(model, fold_batch_norm=False)
        assert not unfolded.packing_report.folded_float_convs
        assert "plain" in [l.name for l in unfolded.layers]

    def test_flatten_with_padding_bits_stays_float_input(self):
        inputs = tf.keras.Input((4, 4, 3))
        x = _quant_conv(20, 3, padding="same", pad_values=1.0)(inputs)  # 20 % 32 != 0
        x = tf.keras.layers.BatchNormalization()(x)
        x = tf.keras.layers.Flatten()(x)
        x = lq.layers.QuantDense(6, input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
        model = tf.keras.Model(inputs, x)
        randomize_batch_norms(model)
        packed = convert.to_packed(model)
        assert not packed.packing_report.bitpacked_outputs
        x = np.random.default_rng(1).standard_normal((5, 4, 4, 3)).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=False)

    def test_unsupported_layers_stay_float_with_warning(self):
        inputs = tf.keras.Input((20,))
        x = lq.layers.QuantDense(16, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                 activation="relu", name="relu_dense")(inputs)
        x = lq.layers.QuantDense(16, input_quantizer="ste_heaviside",
                                 kernel_quantizer="ste_sign", name="heaviside_dense")(x)
        x = lq.layers.QuantDense(8, input_quantizer=None, kernel_quantizer="ste_sign",
                                 name="float_input_dense")(x)
        model = tf.keras.Model(inputs, x)
        with pytest.warns(UserWarning, match="heaviside_dense"):
            packed = convert.to_packed(model)
        report = packed.packing_report
        assert report.packed_layers == ("relu_dense",)
        assert {name for name, _ in report.float_layers} == {"heaviside_dense",
                                                             "float_input_dense"}
        assert not report.folded_batch_norms  # relu prevents folding
        x = np.random.default_rng(1).standard_normal((7, 20)).astype(np.float32)
        assert_same_predictions(model, packed, x, exact=True)
        assert "heaviside_dense" in report.summary()

    def test_packed_layer_config_round_trip(self):
        model = tfdisc.models.build("fcn2", precision="binary", width=40, depth=2)
        packed = convert.to_packed(model, fused=False)
        layer = next(l for l in packed.layers if isinstance(l, convert.PackedBinaryDense))
        clone = convert.PackedBinaryDense.from_config(layer.get_config())
        clone.build(layer.input_shape)
        clone.set_weights(layer.get_weights())
        x = np.random.default_rng(0).standard_normal((3, layer.k)).astype(np.float32)
        if layer.input_packed:
            x = ops.bitpack(x).numpy()
        np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())


def test_bit_output_float_conv_saves_and_loads(tmp_path):
    """PackedFloatConv2D (the first layer emitting sign bits) survives .keras save/load."""
    model = tfdisc.models.build("alexnet_cifar", precision="binary", width=16, depth=1,
                                input_shape=(16, 16, 3))
    randomize_batch_norms(model, seed=3)
    packed = convert.to_packed(model, fused=False)
    assert packed.packing_report.bit_output_float_convs == ("conv_in",)
    packed.save(tmp_path / "packed.keras")
    loaded = tf.keras.models.load_model(tmp_path / "packed.keras")
    layer = loaded.get_layer("conv_in_with_bn_bits")
    assert isinstance(layer, convert.PackedFloatConv2D) and layer.padding == "SAME"
    x = np.random.default_rng(9).random((6, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), packed(x).numpy())
    assert_same_predictions(model, packed, x, exact=False)


@pytest.mark.parametrize("gradient", ["straight_through", "none"])
def test_input_quantizer_runs_as_one_op_with_the_same_values(gradient):
    """BitDepthQuantization becomes PackedBitDepthQuantization (tfdisc.ops.bit_depth):
    same configuration, same values bit for bit, float32 or uint8 input."""
    model = tfdisc.models.build("fcn2", precision="binary", input_bits=2, width=40, depth=2,
                                gradient=gradient)
    packed = convert.to_packed(model)
    quant = model.get_layer("input_quantization")
    layer = packed.get_layer("input_quantization")
    assert type(layer) is convert.PackedBitDepthQuantization  # pylint: disable=unidiomatic-typecheck
    assert layer.get_config() == quant.get_config()
    rng = np.random.default_rng(4)
    x = rng.uniform(-0.1, 1.1, (16, 28, 28, 1)).astype(np.float32)
    x[0, 0, :3, 0] = [np.nan, np.inf, -np.inf]
    np.testing.assert_array_equal(layer(x).numpy().view(np.int32),
                                  quant(x).numpy().view(np.int32))
    assert_same_predictions(model, packed, x, exact=True)
    images = rng.integers(0, 256, (4, 28, 28, 1)).astype(np.uint8)
    np.testing.assert_array_equal(layer(images).numpy(), quant(images).numpy())


def test_keras3_model_is_named_in_the_error():
    """Issue 7 item 15: a Keras 3 model gets our error, not a raw one."""
    import keras  # pylint: disable=import-outside-toplevel

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Keras 3 model.*tf-keras"):
        convert.to_packed(model)


def test_packed_layers_are_registered_by_import_tfdisc():
    """Issue 7 item 14: saved packed models deserialize after `import tfdisc` alone."""
    for cls in convert.PACKED_LAYERS:
        assert tf.keras.utils.get_registered_object(f"tfdisc>{cls.__name__}") is cls
