"""Certified (IBP) training (issue 30): under a MirroredStrategy, and its bounds are the
certifier's without the float32 widening, with eq. 2 and custom bin edges (resuming from a backup:
tests/experiments/run_lifecycle_test.py)."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import certify, models
from tfdisc.certify import bounds as bounds_lib
from tests.testing_utils import CLASSES, SHAPE, synthetic


def _model(precision, bits, edges, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = models.build("fcn2", precision=precision, input_bits=bits, input_edges=edges,
                         width=16, depth=2, input_shape=SHAPE, num_classes=CLASSES)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # trained-looking batch norms, so every unit kind occurs
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n))
    return model


def test_certified_training_steps_under_a_strategy(distribute_scope):
    model = _model("full", 1, [100.0])
    trainer = certify.CertifiedTraining(model, 0.2, ramp_steps=4)
    trainer.compile(tf.keras.optimizers.Adam(1e-2))
    x, y = synthetic(256, 0)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = trainer.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["eps"][-1] == pytest.approx(0.2)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


@pytest.mark.parametrize("precision", ["full", "binary"])
@pytest.mark.parametrize("bits, edges", [(2, None), (1, [90.0]), (2, [30.0, 101.25, 150.5])])
def test_training_bounds_are_the_certifiers_without_the_widening(precision, bits, edges):
    """On random models: the box the training step bounds is the certifier's reachable box, and
    its margins are the certifier's margin bounds computed without the float32 widening (never
    above them, and within the widening)."""
    model = _model(precision, bits, edges, seed=bits)
    trainer = certify.CertifiedTraining(model, 0.1)
    x, y = synthetic(64, bits)
    for eps in (0.0, 0.05, 0.1):
        lo, hi, point = trainer._box(tf.constant(x), eps)  # pylint: disable=protected-access
        box = certify.input_box(model, x, eps)
        np.testing.assert_array_equal(lo.numpy(), box.table[box.lo_bin])
        np.testing.assert_array_equal(hi.numpy(), box.table[box.hi_bin])
        np.testing.assert_array_equal(point.numpy(), model.layers[1].quantize(
            tf.constant(x), gradient="none").numpy())
        unwidened = bounds_lib.margin_upper(model, lo, hi, y, exact=False).numpy()
        widened = bounds_lib.margin_upper(model, box.lower, box.upper, y, exact=True).numpy()
        assert np.all(unwidened <= widened)
        assert np.max(widened - unwidened) <= 1e-3 * max(1.0, np.max(np.abs(widened)))
        # The training loss is the cross-entropy of exactly those unwidened margins.
        loss, verified = trainer.robust_loss(tf.constant(x), y, eps, training=False)
        want = tf.keras.losses.sparse_categorical_crossentropy(y, unwidened, from_logits=True)
        np.testing.assert_allclose(loss.numpy(), want.numpy(), rtol=1e-6)
        onehot = np.eye(CLASSES, dtype=bool)[y]
        np.testing.assert_array_equal(verified.numpy(), np.all((unwidened < 0) | onehot, 1))
