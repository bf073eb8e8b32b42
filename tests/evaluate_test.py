"""ε sweeps: FGSM reuse matches per-ε attacks, PGD ≤ FGSM, transfer, top-k, masking flag, errors."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import attacks, evaluate, models
from tests.testing_utils import CLASSES, SHAPE, small_model, synthetic


@pytest.fixture(scope="module")
def trained():
    return small_model(seed=0)


@pytest.fixture(scope="module")
def other():
    return small_model(bits=2, seed=3)


@pytest.fixture(scope="module")
def data():
    x, y = synthetic(300, seed=2)
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(64)


def acc(model, x, y):
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))


class TestRobustness:
    def test_fgsm_sweep_matches_per_eps_fgsm(self, trained, data):
        x, y, ds = data
        result = evaluate.robustness(trained, ds, [0.05, 0.1, 0.2])
        assert sorted(result) == [0.0, 0.05, 0.1, 0.2]
        assert result[0.0] == pytest.approx(acc(trained, x, y))
        for eps in (0.05, 0.1, 0.2):
            assert result[eps] == pytest.approx(acc(trained, attacks.fgsm(trained, x, y, eps), y))

    def test_pgd_at_most_fgsm(self, trained, data):
        _, _, ds = data
        fgsm = evaluate.robustness(trained, ds, [0.05, 0.1], attack="fgsm")
        pgd = evaluate.robustness(trained, ds, [0.05, 0.1], attack="pgd", pgd_steps=10)
        assert pgd[0.0] == fgsm[0.0]
        for eps in (0.05, 0.1):
            assert pgd[eps] <= fgsm[eps] + 0.01

    def test_rfgsm_runs(self, trained, data):
        _, _, ds = data
        result = evaluate.robustness(trained, ds, [0.1], attack="rfgsm")
        assert 0.0 <= result[0.1] <= result[0.0]

    def test_sweep_top_k_and_zero_gradient(self, data):
        _, _, ds = data
        masked = small_model(bits=2, gradient="none", train=False)
        result = evaluate.sweep(masked, ds, [0.1], top_k=(1, 2))
        assert result["examples"] == 300
        assert result["zero_gradient_fraction"] == 1.0  # masking, never a defence
        assert result["top1"][0.1] == result["top1"][0.0]  # the attack could not move
        assert all(result["top2"][e] >= result["top1"][e] for e in (0.0, 0.1))

    def test_attack_record_names_gradient(self, trained, data):
        record = evaluate.attack_record("pgd", trained, pgd_steps=7)
        assert record["gradient"] == "straight_through" and record["steps"] == 7
        assert evaluate.attack_record("rfgsm", trained)["alpha"] == "eps/2"

    @pytest.mark.parametrize("kwargs, match", [
        (dict(attack="cw"), "Unknown attack"),
        (dict(epsilons=[-0.1]), "epsilons"),
        (dict(attack="pgd", pgd_steps=0), "steps"),
        (dict(attack="pgd", pgd_step_size=-1.0), "step_size"),
        (dict(top_k=(0,)), "top_k"),
        (dict(top_k=(CLASSES + 1,)), "top_k"),
    ])
    def test_bad_arguments(self, trained, data, kwargs, match):
        _, _, ds = data
        kwargs.setdefault("epsilons", [0.1])
        with pytest.raises(ValueError, match=match):
            evaluate.sweep(trained, ds, **kwargs)

    def test_empty_dataset(self, trained, data):
        _, _, ds = data
        with pytest.raises(ValueError, match="no examples"):
            evaluate.robustness(trained, ds.take(0), [0.1])


class TestTransfer:
    def test_self_transfer_is_white_box(self, trained, data):
        _, _, ds = data
        assert evaluate.transfer(trained, trained, ds, [0.1]) == pytest.approx(
            evaluate.robustness(trained, ds, [0.1]))

    def test_examples_from_source_evaluated_on_target(self, trained, other, data):
        x, y, ds = data
        result = evaluate.transfer(trained, other, ds, [0.1])
        assert result[0.0] == pytest.approx(acc(other, x, y))
        assert result[0.1] == pytest.approx(acc(other, attacks.fgsm(trained, x, y, 0.1), y))

    def test_different_input_shape(self, trained, data):
        _, _, ds = data
        wrong = models.build("fcn2", input_shape=(4, 4, 1), num_classes=CLASSES, width=8)
        with pytest.raises(ValueError, match="shape"):
            evaluate.transfer(wrong, trained, ds, [0.1])
        assert SHAPE == trained.input_shape[1:]
