"""R-FGSM adversarial training: the mixed batch, one training step per precision, bad input."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import models, training
from tests.testing_utils import CLASSES, SHAPE, synthetic


def build(precision="full", bits=2):
    return models.build("fcn2", precision=precision, input_bits=bits, num_classes=CLASSES,
                        input_shape=SHAPE, width=16, depth=2)


def compiled(trainer):
    trainer.compile(tf.keras.optimizers.Adam(1e-2),
                    tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    return trainer


@pytest.mark.parametrize("precision", models.PRECISIONS)
def test_training_step_runs_and_updates_every_weight(precision):
    model = build(precision)
    trainer = compiled(training.AdversarialTraining(model, 0.3))
    x, y = synthetic(64, seed=0)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = trainer.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and "accuracy" in history.history
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    assert trainer.describe() == {"method": "rfgsm", "eps": 0.3, "alpha": 0.15, "adv_ratio": 0.5,
                                  "gradient": "straight_through"}
    # The wrapper predicts with the wrapped model.
    np.testing.assert_allclose(trainer.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("ratio, adversarial", [(0.5, 16), (0.25, 8), (0.0, 0), (1.0, 32)])
def test_adversarial_batch_mix(ratio, adversarial):
    trainer = training.AdversarialTraining(build(), 0.2, adv_ratio=ratio)
    x, y = synthetic(32, seed=1)
    x = np.clip(x, 0.3, 0.7)
    mixed = trainer.adversarial_batch(x, y).numpy()
    delta = np.abs(mixed - x).reshape(32, -1)
    assert np.all(delta <= 0.2 + 1e-6)
    np.testing.assert_array_equal(mixed[adversarial:], x[adversarial:])  # the clean half
    # Every adversarial example moved by ±α (random step) and/or ±(ε − α).
    assert np.all(delta[:adversarial].max(axis=1) > 0.09)


def test_eps_and_alpha_defaults():
    trainer = training.AdversarialTraining(build(), 8 / 255)
    assert trainer.alpha == pytest.approx(4 / 255)
    assert training.DEFAULT_TRAIN_EPS["mnist"] == 0.3
    assert training.DEFAULT_TRAIN_EPS["cifar10"] == pytest.approx(8 / 255)


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=-0.1), "eps"),
    (dict(eps=0.1, alpha=0.2), "alpha"),
    (dict(eps=0.1, adv_ratio=1.5), "adv_ratio"),
    (dict(eps=0.1, clip=(1.0, 0.0)), "clip"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.AdversarialTraining(build(), **kwargs)


@pytest.mark.parametrize("precision", ["full", "binary"])
def test_adversarial_training_under_a_strategy(precision, distribute_scope):
    model = build(precision)
    trainer = compiled(training.AdversarialTraining(model, 0.3))
    x, y = synthetic(64, seed=4)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1,
                          verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    if distribute_scope is not None:
        assert distribute_scope.num_replicas_in_sync == 2
