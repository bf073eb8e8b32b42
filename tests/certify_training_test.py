"""Certified (IBP) training (issue 30): under a MirroredStrategy, and its bounds are the
certifier's without the float32 widening, with eq. 2 and custom bin edges (resuming from a backup:
tests/experiments/run_lifecycle_test.py)."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import certify, models, training
from tfdisc.certify import bounds as bounds_lib
from tfdisc.certify import crown_ibp
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


def _conv_model(seed):
    tf.keras.utils.set_random_seed(seed)
    model = models.build("cnn_small", input_bits=2, width=4, input_shape=(8, 8, 1),
                         num_classes=CLASSES)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n))
    return model


@pytest.mark.parametrize("make", [lambda: _model("full", 2, None, seed=5),
                                  lambda: _model("full", 1, [90.0], seed=6),
                                  lambda: _conv_model(7)], ids=["fcn2", "fcn2_edges", "cnn"])
def test_crown_ibp_bounds_hold_on_the_box_and_beat_ibp_at_small_eps(make):
    model = make()
    x, y = synthetic(48, 3)
    rng = np.random.default_rng(0)
    tighter = 0
    for eps in (0.02, 0.1):
        box = certify.input_box(model, x, eps)
        lo, hi = tf.constant(box.table[box.lo_bin]), tf.constant(box.table[box.hi_bin])
        crown = crown_ibp.margin_upper(model, lo, hi, y).numpy()
        ibp = bounds_lib.margin_upper(model, lo, hi, y, exact=False).numpy()
        assert np.all(crown[np.arange(len(y)), y] == 0.0)
        # Every reachable quantized input (random corners and interior points of the box).
        for _ in range(20):
            bins = np.where(rng.random(box.lo_bin.shape) < 0.5, box.lo_bin, box.hi_bin)
            logits = model(box.table[bins], training=False).numpy()
            margins = logits - logits[np.arange(len(y)), y][:, None]
            assert np.all(margins <= crown + 1e-4 * (1 + np.abs(crown)))
        tighter += np.sum(crown < ibp - 1e-6)
    assert tighter > 0  # CROWN-IBP is tighter than IBP somewhere (usually at small ε)
    assert crown_ibp.supports(model)


def test_crown_ibp_in_training_uses_batch_statistics_and_trains():
    model = _model("full", 1, [100.0], seed=8)
    x, y = synthetic(128, 1)
    trainer = certify.CertifiedTraining(model, 0.2, ramp_steps=4, bounds="crown_ibp")
    assert trainer.describe()["bounds"] == "crown_ibp"
    trainer.compile(tf.keras.optimizers.Adam(1e-2))
    history = trainer.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    # In a training step the bounds use the clean batch's statistics: the box of the clean
    # points themselves bounds the training-mode logits.
    point = model.layers[1].quantize(tf.constant(x), gradient="none")
    crown = crown_ibp.margin_upper(model, point, point, y, training=True, point=point).numpy()
    logits = model(x, training=True).numpy()
    margins = logits - logits[np.arange(len(y)), y][:, None]
    np.testing.assert_allclose(crown, margins, atol=1e-3)
    # β = 0 (or ε = 0) is the IBP loss, β = 1 the CROWN-IBP loss.
    xs = tf.constant(x)
    lo, hi, pt = trainer._box(xs, 0.2)  # pylint: disable=protected-access
    bounds = {"ibp": bounds_lib.margin_upper(model, lo, hi, y, exact=False, training=True,
                                             point=pt),
              "crown": crown_ibp.margin_upper(model, lo, hi, y, training=True, point=pt)}
    for beta, eps, want in ((0.0, 0.2, "ibp"), (1.0, 0.2, "crown"), (1.0, 0.0, None)):
        loss, _ = trainer.robust_loss(xs, y, eps, beta=beta)
        if want is None:
            lo0, hi0, pt0 = trainer._box(xs, 0.0)  # pylint: disable=protected-access
            ref = bounds_lib.margin_upper(model, lo0, hi0, y, exact=False, training=True,
                                          point=pt0)
        else:
            ref = bounds[want]
        expected = tf.keras.losses.sparse_categorical_crossentropy(y, ref, from_logits=True)
        np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_crown_ibp_refuses_bnns_and_names_the_layer():
    model = _model("binary", 2, None)
    assert not crown_ibp.supports(model)
    with pytest.raises(ValueError, match="crown_ibp.*interval bounds|interval"):
        certify.CertifiedTraining(model, 0.1, bounds="crown_ibp")
    with pytest.raises(ValueError, match="bounds"):
        certify.CertifiedTraining(_model("full", 2, None), 0.1, bounds="alpha")


def test_mtl_ibp_steps_under_a_strategy_on_the_adversarys_images(distribute_scope):
    model = _model("full", 1, [100.0])
    trainer = certify.CertifiedTraining(model, 0.2, ramp_steps=4,
                                        adversary=training.RfgsmAdversary())
    trainer.compile(tf.keras.optimizers.Adam(1e-2))
    x, y = synthetic(256, 0)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = trainer.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert all(np.isfinite(history["loss"]))
    assert "adversarial_accuracy" in history and "clean_accuracy" not in history
    assert history["eps"][-1] == pytest.approx(0.2)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    params = trainer.describe()
    assert params["method"] == "ibp" and params["adversary"]["attack"] == "rfgsm"
    assert params["adversary"]["gradient"] == "straight_through"
    assert "MTL-IBP" in params["reference"]


def test_mtl_ibp_loss_weighs_the_cross_entropy_of_the_adversarys_images():
    """One step at κ = 0.5, ε = 0.2: loss = κ·CE(model(adversary image)) + (1 − κ)·CE(bound);
    the adversary gets the scheduled ε and the trainer's clip."""
    model = _model("full", 2, None)
    seen = []

    def brighten(net, x, y, eps, clip):  # a fixed image in the ball, far from x's loss
        seen.append((float(eps), clip))
        return tf.clip_by_value(x + eps, clip[0], clip[1])

    trainer = certify.CertifiedTraining(model, 0.2, ramp_start=0, ramp_steps=1, adversary=brighten)
    trainer.compile(tf.keras.optimizers.SGD(0.0), run_eagerly=True)
    x, y = synthetic(32, 1)
    trainer.train_on_batch(x, y)  # step 0: ε = 0, κ = 1
    eps, kappa = (float(v) for v in trainer.schedule(trainer.optimizer.iterations))
    assert (eps, kappa) == (pytest.approx(0.2), pytest.approx(0.5))
    logs = trainer.train_on_batch(x, y, return_dict=True)
    assert seen[-1] == (pytest.approx(0.2), (0.0, 1.0))
    y_t = tf.constant(y, tf.int32)
    robust, _ = trainer.robust_loss(tf.constant(x), y_t, tf.constant(eps))

    def mix(images):
        ce = tf.keras.losses.sparse_categorical_crossentropy(
            y_t, model(images, training=True), from_logits=True)
        return float(kappa * tf.reduce_mean(ce) + (1 - kappa) * tf.reduce_mean(robust))

    expected = mix(tf.clip_by_value(tf.constant(x) + eps, 0.0, 1.0))
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(mix(tf.constant(x)) - expected) > 1e-3  # the clean mix would differ


def test_rfgsm_adversary_stays_in_the_ball_at_a_scheduled_eps():
    model = _model("full", 2, None)
    x, y = synthetic(64, 2)
    x = tf.constant(x)
    adversary = training.RfgsmAdversary()
    for eps in (0.0, 0.1, 0.3):
        x_adv = adversary(model, x, tf.constant(y), tf.constant(eps), (0.0, 1.0)).numpy()
        assert x_adv.shape == x.shape and x_adv.dtype == np.float32
        assert np.all(np.abs(x_adv - x.numpy()) <= np.float32(eps))
        assert np.all((x_adv >= 0.0) & (x_adv <= 1.0))
        assert (eps == 0.0) == np.array_equal(x_adv, x.numpy())


def test_an_adversary_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="adversary"):
        certify.CertifiedTraining(_model("full", 1, [100.0]), 0.1, adversary="rfgsm")
