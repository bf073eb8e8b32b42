"""BitDepthQuantization as a Keras layer."""
import numpy as np
import pytest
import tensorflow as tf

import tfdisc
from tfdisc.layers import BitDepthQuantization


def test_matches_functional_form():
    x = tf.random.uniform([4, 5, 5, 3], seed=0)
    np.testing.assert_array_equal(BitDepthQuantization(3)(x).numpy(),
                                  tfdisc.quantize.bit_depth(x, 3).numpy())


def test_precision_attribute():
    assert BitDepthQuantization(4).precision == 4


def test_config_round_trip():
    layer = BitDepthQuantization(2, value_range=(-1.0, 1.0), gradient="none", name="q")
    config = layer.get_config()
    assert config["bits"] == 2 and config["gradient"] == "none"
    clone = BitDepthQuantization.from_config(config)
    x = tf.random.uniform([3, 7], -1.0, 1.0, seed=2)
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())
    assert clone.value_range == (-1.0, 1.0) and clone.gradient == "none"


def test_registered_for_deserialization():
    config = tf.keras.layers.serialize(BitDepthQuantization(5))
    layer = tf.keras.layers.deserialize(config)
    assert isinstance(layer, BitDepthQuantization) and layer.bits == 5


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_model_save_and_load(tmp_path, suffix):
    inputs = tf.keras.Input((6,))
    outputs = tf.keras.layers.Dense(2)(BitDepthQuantization(2, gradient="none")(inputs))
    model = tf.keras.Model(inputs, outputs)
    path = str(tmp_path / f"model{suffix}")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    x = np.random.RandomState(0).rand(4, 6).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    layer = loaded.layers[1]
    assert isinstance(layer, BitDepthQuantization) and layer.bits == 2 and layer.gradient == "none"


def test_savedmodel_round_trip(tmp_path):
    model = tfdisc.models.build("fcn2", precision="binary", input_bits=2, width=16)
    model.save(str(tmp_path / "sm"), save_format="tf")
    loaded = tf.keras.models.load_model(str(tmp_path / "sm"))
    x = np.random.RandomState(1).rand(3, 28, 28, 1).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_in_tf_data_pipeline():
    layer = BitDepthQuantization(1)
    ds = tf.data.Dataset.from_tensor_slices(np.array([[0, 100, 200, 255]], np.uint8)).map(layer)
    out = next(iter(ds)).numpy() * 255
    np.testing.assert_allclose(out, [64, 64, 192, 192], atol=1e-3)


def test_in_tf_function_and_gradient():
    layer = BitDepthQuantization(2)

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x) * 3.0)
        return tape.gradient(y, x)

    np.testing.assert_allclose(grad(tf.constant([0.2, 0.6])).numpy(), [3.0, 3.0])


@pytest.mark.parametrize("bits", [0, 9, 1.5])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match=r"\[1, 8\]"):
        BitDepthQuantization(bits)


def test_bad_gradient():
    with pytest.raises(ValueError, match="gradient"):
        BitDepthQuantization(2, gradient="ste")


def test_in_a_model_trained_under_a_strategy(distribute_scope):
    model = tfdisc.models.build("fcn2", precision="binary", input_bits=2, input_shape=(6, 6, 1),
                                num_classes=3, width=8, depth=2)
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.RandomState(0).uniform(size=(32, 6, 6, 1)).astype("float32")
    y = np.arange(32) % 3
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1, verbose=0)
    layer = model.get_layer("input_quantization")
    np.testing.assert_array_equal(layer(x).numpy(), tfdisc.quantize.bit_depth(x, 2).numpy())
