"""Regression tests for issue 7: bad or edge input gets an error naming it, never a wrong answer."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import attacks, evaluate, layers, models, quantize

from tests.testing_utils import CLASSES, SHAPE, small_model, synthetic


def _dataset(x, y):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(40)


@pytest.fixture(scope="module")
def trained():
    return small_model()


@pytest.fixture(scope="module")
def batch():
    return synthetic(120, seed=3)


class TestLabels:
    """Item 1: labels [N, 1] were read as one-hot, every label became 0."""

    def test_column_labels_give_the_same_accuracy(self, trained, batch):
        x, y = batch
        flat = evaluate.robustness(trained, _dataset(x, y), [0.1])
        column = evaluate.robustness(trained, tf.data.Dataset.from_tensor_slices(
            (x, y[:, None])).batch(40), [0.1])
        assert column == flat
        assert flat[0.0] > 0.8

    def test_every_accepted_form_gives_the_same_attack(self, trained, batch):
        x, y = batch
        one_hot = np.eye(CLASSES, dtype=np.float32)[y]
        for labels in (y, y[:, None], y.astype(np.int32), one_hot):
            np.testing.assert_array_equal(attacks.fgsm(trained, x, labels, 0.1),
                                          attacks.fgsm(trained, x, y, 0.1))

    @pytest.mark.parametrize("labels, match", [
        (np.zeros((4, 2), np.int64), "integer labels of shape"),
        (np.zeros((4,), np.float32), "one-hot floats"),
        (np.full((4, CLASSES), 1.0 / CLASSES, np.float32), "not one-hot"),
        (np.zeros((4, CLASSES + 1), np.float32), "one-hot floats of shape"),
        (np.array([0, 1, CLASSES, 0]), r"lie in \[0, 3\)"),
        (np.array([0, -1, 1, 0]), r"lie in \[0, 3\)"),
        (np.zeros((3,), np.int64), "4 examples but `y` has 3"),
    ])
    def test_rejected(self, trained, labels, match):
        x = np.zeros((4,) + SHAPE, np.float32)
        with pytest.raises(ValueError, match=match):
            attacks.fgsm(trained, x, labels, 0.1)

    def test_label_out_of_range_in_a_sweep(self, trained, batch):
        x, y = batch
        y = y.copy()
        y[5] = CLASSES
        with pytest.raises(ValueError, match="lie in"):
            evaluate.robustness(trained, _dataset(x, y), [0.1])


class TestClipRange:
    """Item 5: 0–255 pixels given to a [0, 1] model broke ‖x_adv − x‖∞ ≤ ε."""

    @pytest.mark.parametrize("name", ["fgsm", "pgd", "rfgsm"])
    def test_pixels_outside_clip_are_rejected(self, trained, batch, name):
        x, y = batch
        with pytest.raises(ValueError, match=r"outside the clip range \[0, 1\]"):
            attacks.get(name)(trained, x * 255.0, y, 0.1)
        with pytest.raises(ValueError, match="outside the clip range"):
            evaluate.robustness(trained, _dataset(x * 255.0, y), [0.1], name)

    def test_matching_clip_is_accepted_and_keeps_the_bound(self, trained, batch):
        x, y = batch
        x_adv = attacks.fgsm(trained, x * 255.0, y, 25.5, clip=(0.0, 255.0))
        assert np.max(np.abs(x_adv - x * 255.0)) <= 25.5 + 1e-3

    def test_non_finite_pixels(self, trained, batch):
        x, y = batch
        x = x.copy()
        x[0, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN or infinite"):
            attacks.pgd(trained, x, y, 0.1, step_size=0.01, steps=2)


class TestEpsilons:
    """Item 15: a bare number, or a string iterated character by character."""

    def test_bare_number(self, trained, batch):
        ds = _dataset(*batch)
        assert evaluate.robustness(trained, ds, 0.1) == evaluate.robustness(trained, ds, [0.1])

    @pytest.mark.parametrize("bad", ["0.1", "0.1,0.2", b"0.1"])
    def test_string(self, trained, batch, bad):
        with pytest.raises(ValueError, match="string"):
            evaluate.robustness(trained, _dataset(*batch), bad)


class TestQuantizerEdges:
    """Item 9: value_range with inf, NaN pixels."""

    @pytest.mark.parametrize("value_range", [(0.0, np.inf), (-np.inf, 1.0), (np.nan, 1.0)])
    def test_non_finite_value_range(self, value_range):
        with pytest.raises(ValueError, match="finite|low < high"):
            quantize.bit_depth(tf.zeros(3), 2, value_range=value_range)
        with pytest.raises(ValueError, match="finite|low < high"):
            layers.BitDepthQuantization(2, value_range=value_range)

    @pytest.mark.parametrize("bits", range(1, 9))
    def test_nan_pixels_take_the_lowest_level(self, bits):
        x = tf.constant([np.nan, 0.0, np.inf, -np.inf], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            q = quantize.bit_depth(x, bits)
        lowest = float(quantize.bit_depth(tf.constant([0.0]), bits)[0])
        highest = float(quantize.bit_depth(tf.constant([1.0]), bits)[0])
        np.testing.assert_allclose(q.numpy(), [lowest, lowest, highest, lowest])
        assert np.all(np.isfinite(tape.gradient(q, x).numpy()))


class TestModelArguments:
    """Item 15: numpy integers, too-small input shapes."""

    def test_numpy_integers(self):
        model = models.build("fcn2", width=np.int64(16), depth=np.int32(2),
                             num_classes=np.int64(10), input_shape=np.array([28, 28, 1]))
        assert model.output_shape == (None, 10)

    @pytest.mark.parametrize("name, shape", [("alexnet_cifar", (4, 4, 3)),
                                             ("alexnet_cifar", (1, 1, 3))])
    def test_too_small_input_shape(self, name, shape):
        with pytest.raises(ValueError, match="too small for " + name):
            models.build(name, input_shape=shape, width=4)

    @pytest.mark.parametrize("width", [0, -3, 2.5, "16", True])
    def test_bad_width(self, width):
        with pytest.raises(ValueError, match="positive integer"):
            models.build("fcn2", width=width)


class TestRegistry:
    """Issue 8: attacks by name; a gradient-free attack records that it uses no gradient."""

    def test_available_and_unknown(self):
        assert {"fgsm", "pgd", "rfgsm", "quantized_search"} <= set(attacks.available())
        with pytest.raises(ValueError, match="Unknown attack 'cw'"):
            attacks.get("cw")
        with pytest.raises(ValueError, match="takes no parameter"):
            attacks.get("fgsm").check_params(steps=3)

    def test_quantized_search_is_gradient_free_and_in_the_ball(self, batch):
        model = small_model(bits=2)
        x, y = batch
        x_adv = attacks.get("quantized_search")(model, x[:20], y[:20], 0.1).numpy()
        assert np.max(np.abs(x_adv - x[:20])) <= 0.1 + 1e-6
        assert evaluate.attack_record("quantized_search", model)["gradient"] == "not used"
