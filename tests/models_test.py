"""Model zoo: every name × precision builds and trains a step."""
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import models
from tfdisc.layers import BitDepthQuantization

# Small shapes/widths keep this fast; the defaults are checked separately.
SMALL = {
    "fcn1": dict(width=32),
    "fcn2": dict(width=32),
    "alexnet_cifar": dict(width=8, input_shape=(32, 32, 3)),
    "cnn_small": dict(width=4, input_shape=(28, 28, 1)),
    "resnet20": dict(width=4, input_shape=(16, 16, 3)),
    "alexnet": dict(width=6, input_shape=(64, 64, 3)),
}


def test_available():
    assert models.available() == ["alexnet", "alexnet_cifar", "cnn_small", "fcn1", "fcn2",
                                  "resnet20"]


@pytest.mark.parametrize("precision", models.PRECISIONS)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_builds_and_trains_one_step(name, precision):
    model = models.build(name, precision=precision, input_bits=2, num_classes=5, **SMALL[name])
    assert isinstance(model.layers[1], BitDepthQuantization) and model.layers[1].bits == 2
    shape = model.input_shape[1:]
    rng = np.random.RandomState(0)
    x = rng.rand(8, *shape).astype("float32")
    y = rng.randint(0, 5, size=8)
    model.compile(tf.keras.optimizers.Adam(1e-2),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.output_shape == (None, 5)
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed), "every trainable weight should receive a gradient"


def _quant_layers(model):
    return [l for l in model.layers if isinstance(l, (lq.layers.QuantDense, lq.layers.QuantConv2D))]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_full_precision_has_no_quantized_layers(name):
    assert not _quant_layers(models.build(name, **SMALL[name]))


@pytest.mark.parametrize("precision,kernel_quantizer",
                         [("binary", lq.quantizers.SteSign), ("xnor", lq.quantizers.MagnitudeAwareSign)])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_binary_layers_use_larq_quantizers(name, precision, kernel_quantizer):
    model = models.build(name, precision=precision, **SMALL[name])
    quant = _quant_layers(model)
    assert quant
    for layer in quant:
        assert isinstance(layer.input_quantizer, lq.quantizers.SteSign)
        assert isinstance(layer.kernel_quantizer, kernel_quantizer)
        assert isinstance(layer.kernel_constraint, lq.constraints.WeightClip)
    # First and last layers with weights stay full precision.
    weighted = [l for l in model.layers if l.weights and "bn" not in l.name and "proj" not in l.name]
    assert not isinstance(weighted[0], (lq.layers.QuantDense, lq.layers.QuantConv2D))
    assert type(weighted[-1]) is tf.keras.layers.Dense and weighted[-1].name == "logits"


def test_binary_forward_uses_signs():
    model = models.build("fcn2", precision="binary", width=8)
    layer = model.get_layer("dense_1")
    kernel = lq.quantizers.ste_sign(tf.convert_to_tensor(layer.kernel)).numpy()
    assert set(np.unique(kernel)) <= {-1.0, 1.0}
    # The layer's output on ±1 inputs equals the float matmul with sign(kernel).
    x = np.sign(np.random.RandomState(0).randn(3, 8)).astype("float32")
    np.testing.assert_allclose(layer(x).numpy(), x @ kernel, atol=1e-5)


def test_default_architectures():
    fcn1 = models.build("fcn1")
    dense = [l for l in fcn1.layers if isinstance(l, tf.keras.layers.Dense)]
    assert [l.units for l in dense] == [6144] * 4 + [10]
    fcn2 = models.build("fcn2", precision="binary")
    dense = [l for l in fcn2.layers if isinstance(l, tf.keras.layers.Dense)]
    assert [l.units for l in dense] == [600] * 4 + [10]
    assert fcn2.input_shape == (None, 28, 28, 1) and fcn2.name == "fcn2_binary_8b"
    resnet = models.build("resnet20", precision="xnor")
    convs = [l for l in resnet.layers if isinstance(l, tf.keras.layers.Conv2D) and "proj" not in l.name]
    assert len(convs) == 19 and resnet.output_shape == (None, 100)


def test_width_and_depth():
    model = models.build("fcn2", width=50, depth=2)
    dense = [l for l in model.layers if isinstance(l, tf.keras.layers.Dense)]
    assert [l.units for l in dense] == [50, 50, 10]


class TestBadInput:
    def test_unknown_name_lists_available(self):
        with pytest.raises(ValueError, match="available models: alexnet, alexnet_cifar, cnn_small, fcn1"):
            models.build("vgg16")

    def test_unknown_precision(self):
        with pytest.raises(ValueError, match="precision"):
            models.build("fcn2", precision="ternary")

    @pytest.mark.parametrize("bits", [0, 9])
    def test_bad_bits(self, bits):
        with pytest.raises(ValueError, match=r"\[1, 8\]"):
            models.build("fcn2", input_bits=bits)

    @pytest.mark.parametrize("arg", ["width", "depth", "num_classes"])
    def test_bad_capacity(self, arg):
        with pytest.raises(ValueError, match=arg):
            models.build("fcn2", **{arg: 0})

    def test_bad_input_shape(self):
        with pytest.raises(ValueError, match="input_shape"):
            models.build("fcn2", input_shape=(28, 28))

    def test_resnet_depth(self):
        with pytest.raises(ValueError, match="6n"):
            models.build("resnet20", depth=21)
