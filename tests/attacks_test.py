"""Attacks: ε-ball and clip range, loss increase, PGD ≥ FGSM, R-FGSM's random step, bad input."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import attacks, models

from tests.testing_utils import CLASSES, SHAPE, small_model, synthetic

@pytest.fixture(scope="module")
def trained():
    return small_model()


@pytest.fixture(scope="module")
def batch():
    return synthetic(200, seed=1)


def loss(model, x, y):
    logits = model(x, training=False)
    return float(tf.reduce_mean(
        tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)))


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))


def run(name, model, x, y, eps, **kwargs):
    if name == "fgsm":
        return attacks.fgsm(model, x, y, eps, **kwargs)
    if name == "rfgsm":
        return attacks.rfgsm(model, x, y, eps, **kwargs)
    kwargs.setdefault("steps", 5)
    if "step_size" not in kwargs:
        kwargs["step_size"] = attacks.default_step_size(eps, kwargs["steps"]) or 0.01
    return attacks.pgd(model, x, y, eps, **kwargs)


ALL = ("fgsm", "rfgsm", "pgd")


class TestCommonProperties:
    @pytest.mark.parametrize("name", ALL)
    @pytest.mark.parametrize("eps", [0.05, 0.3])
    def test_within_eps_and_clip(self, trained, batch, name, eps):
        x, y = batch
        x_adv = run(name, trained, x, y, eps).numpy()
        assert x_adv.shape == x.shape and x_adv.dtype == np.float32
        assert np.max(np.abs(x_adv - x)) <= eps + 1e-6
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0

    @pytest.mark.parametrize("name", ALL)
    def test_custom_clip(self, trained, batch, name):
        x, y = batch
        x = np.clip(x, 0.2, 0.8)
        x_adv = run(name, trained, x, y, 0.3, clip=(0.2, 0.8)).numpy()
        assert x_adv.min() >= 0.2 - 1e-7 and x_adv.max() <= 0.8 + 1e-7

    @pytest.mark.parametrize("name", ALL)
    def test_raises_the_loss(self, trained, batch, name):
        x, y = batch
        assert loss(trained, run(name, trained, x, y, 0.1), y) > 2 * loss(trained, x, y) + 0.05

    @pytest.mark.parametrize("name", ("fgsm", "pgd"))
    def test_eps_zero_is_identity(self, trained, batch, name):
        x, y = batch
        np.testing.assert_array_equal(run(name, trained, x, y, 0.0, **(
            {"step_size": 0.01} if name == "pgd" else {})).numpy(), x)

    @pytest.mark.parametrize("name", ALL)
    @pytest.mark.parametrize("eps", [-0.1, float("nan"), "0.1", True])
    def test_bad_eps(self, trained, batch, name, eps):
        x, y = batch
        with pytest.raises(ValueError, match="eps"):
            run(name, trained, x, y, eps, **({"step_size": 0.01} if name == "pgd" else {}))

    @pytest.mark.parametrize("name", ALL)
    def test_bad_shapes(self, trained, batch, name):
        x, y = batch
        with pytest.raises(ValueError, match="shape|labels"):
            run(name, trained, x[:, :4], y, 0.1)
        with pytest.raises(ValueError, match="labels"):
            run(name, trained, x, y[:10], 0.1)


class TestGradientMode:
    @pytest.mark.parametrize("name", ("fgsm", "pgd"))
    def test_zero_gradient_masks_straight_through_does_not(self, batch, name):
        x, y = batch
        masked = small_model(bits=2, gradient="none", train=False)
        honest = small_model(bits=2, gradient="straight_through", train=False)
        kwargs = {"random_start": False} if name == "pgd" else {}
        # Zero gradient through floor: the attack cannot move (gradient masking).
        np.testing.assert_array_equal(run(name, masked, x, y, 0.1, **kwargs).numpy(), x)
        assert np.max(np.abs(run(name, honest, x, y, 0.1, **kwargs).numpy() - x)) > 0.09


class TestRFGSM:
    def test_random_step_has_size_alpha(self, batch):
        x, y = batch
        x = np.clip(x, 0.3, 0.7)  # interior: no clipping
        masked = small_model(gradient="none", train=False)  # zero gradient: only the random step
        for alpha in (0.05, 0.1):
            delta = attacks.rfgsm(masked, x, y, 0.2, alpha=alpha).numpy() - x
            np.testing.assert_allclose(np.abs(delta), alpha, rtol=0, atol=1e-6)
            assert 0.3 < np.mean(delta > 0) < 0.7  # a random sign, not a fixed direction

    def test_default_alpha_is_half_eps_and_gradient_step_is_rest(self, trained, batch):
        x, y = batch
        x = np.clip(x, 0.3, 0.7)
        delta = np.abs(attacks.rfgsm(trained, x, y, 0.2).numpy() - x)
        # ±α random step plus ±(ε−α) gradient step: |δ| ∈ {0, ε} with α = ε/2.
        assert np.all(np.isclose(delta, 0.0, atol=1e-6) | np.isclose(delta, 0.2, atol=1e-6))
        assert np.mean(np.isclose(delta, 0.2, atol=1e-6)) > 0.2

    def test_alpha_equal_eps_is_pure_noise(self, trained, batch):
        x, y = batch
        x = np.clip(x, 0.3, 0.7)
        delta = attacks.rfgsm(trained, x, y, 0.1, alpha=0.1).numpy() - x
        np.testing.assert_allclose(np.abs(delta), 0.1, atol=1e-6)

    @pytest.mark.parametrize("alpha", [-0.01, 0.2])
    def test_bad_alpha(self, trained, batch, alpha):
        x, y = batch
        with pytest.raises(ValueError, match="alpha"):
            attacks.rfgsm(trained, x, y, 0.1, alpha=alpha)

    def test_random_sign(self):
        s = attacks.random_sign((1000,)).numpy()
        assert set(np.unique(s)) == {-1.0, 1.0}


class TestPGD:
    def test_one_step_without_random_start_is_fgsm(self, trained, batch):
        x, y = batch
        np.testing.assert_allclose(
            attacks.pgd(trained, x, y, 0.1, step_size=0.1, steps=1, random_start=False).numpy(),
            attacks.fgsm(trained, x, y, 0.1).numpy(), atol=1e-6)

    def test_at_least_as_strong_as_fgsm(self, trained, batch):
        x, y = batch
        for eps in (0.05, 0.1, 0.2):
            x_fgsm = attacks.fgsm(trained, x, y, eps)
            x_pgd = attacks.pgd(trained, x, y, eps, step_size=attacks.default_step_size(eps, 10),
                                steps=10)
            assert loss(trained, x_pgd, y) >= loss(trained, x_fgsm, y) - 1e-3
            assert accuracy(trained, x_pgd, y) <= accuracy(trained, x_fgsm, y) + 0.01

    def test_on_a_binary_2bit_model(self, batch):
        x, y = batch
        model = small_model(precision="binary", bits=2)
        x_adv = attacks.pgd(model, x, y, 0.3, step_size=0.05, steps=10).numpy()
        assert np.max(np.abs(x_adv - x)) <= 0.3 + 1e-6
        assert accuracy(model, x_adv, y) < accuracy(model, x, y)

    @pytest.mark.parametrize("steps", [0, -1, 1.5, True])
    def test_bad_steps(self, trained, batch, steps):
        x, y = batch
        with pytest.raises(ValueError, match="steps"):
            attacks.pgd(trained, x, y, 0.1, step_size=0.01, steps=steps)

    @pytest.mark.parametrize("step_size", [0.0, -0.1, float("inf")])
    def test_bad_step_size(self, trained, batch, step_size):
        x, y = batch
        with pytest.raises(ValueError, match="step_size"):
            attacks.pgd(trained, x, y, 0.1, step_size=step_size, steps=3)
