"""The exact verifier for full-precision ReLU networks (tfdisc.certify.exact.relu, a MILP on
HiGHS) against enumeration of every quantized input."""
import numpy as np
import pytest
import tensorflow as tf

import tfdisc  # noqa: F401  (sets up legacy Keras first)
from tfdisc import certify
from tfdisc.certify import box as box_lib
from tfdisc.certify import exact
from tfdisc.certify.exact import relu
from tests.testing_utils import box_points, tiny_fcn2

pytest.importorskip("highspy")


def _relu_net(seed):
    return tiny_fcn2("full", seed, mean_sd=0.3)


def _data(model, rng, n=16):
    x = rng.uniform(0, 1, (n, 3, 4, 1)).astype(np.float32)
    return x, model(x).numpy().argmax(1)


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_relu_milp_statuses_match_enumeration(eps):
    model, rng = _relu_net(0)
    x, y = _data(model, rng)
    assert exact.read(model)[0] == "relu"
    cert = certify.certify(model, x, y, eps, search=False, method="exact", enumerate_max=0)
    truth = certify.exhaustive(model, x, y, eps)  # ≤ 4^12 inputs per box
    assert cert.counts()["unknown"] == 0
    np.testing.assert_array_equal(cert.status == "certified", truth)
    assert np.sum(cert.decided_by == "exact") >= 8
    assert 0 < truth.sum() < len(truth)  # both outcomes are exercised
    for r, image in cert.counterexamples.items():
        assert np.max(np.abs(image - x[r])) <= eps and image.min() >= 0 and image.max() <= 1
        assert model(image[None]).numpy().argmax() != y[r]


def test_relu_milp_on_a_convolutional_network_matches_enumeration():
    """cnn_small (two strided convolutions, then dense layers): the MILP composes the
    convolutions' matrices from their back-substitution; statuses equal enumeration's."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = tfdisc.models.build("cnn_small", precision="full", input_bits=2, width=4,
                                input_shape=(3, 4, 1), num_classes=3)
    for layer in model.layers:  # scaled kernels, shifted batch norms: the classes vary
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n))
            layer.beta.assign(rng.normal(0, 0.5, n))
        elif hasattr(layer, "kernel"):
            layer.kernel.assign(layer.kernel * 3.0)
    assert any(isinstance(layer, tf.keras.layers.Conv2D) for layer in model.layers)
    x, y = _data(model, rng)
    assert exact.read(model)[0] == "relu"
    outcomes = []
    for eps in (0.1, 0.2):
        cert = certify.certify(model, x, y, eps, search=False, method="exact", enumerate_max=0)
        truth = certify.exhaustive(model, x, y, eps, max_points=1 << 20)
        assert cert.counts()["unknown"] == 0
        np.testing.assert_array_equal(cert.status == "certified", truth)
        assert np.sum(cert.decided_by == "exact") >= 2
        outcomes.extend(truth)
    assert 0 < sum(outcomes) < len(outcomes)  # both outcomes are exercised


def _activations(model, image):
    """Every ReLU layer's float32 input of the model on one image, in order."""
    outs, h = [], image[None]
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        if isinstance(layer, tf.keras.layers.ReLU):
            outs.append(h.numpy().reshape(-1))
        h = layer(h)
    return outs


def _assignment(enc, model, box, r, bins):
    """The column values the model's own float32 computation gives at quantized input ``bins``."""
    values = np.zeros(len(enc.lb))
    values[enc.choice_vars] = (bins[enc.form.choices[:, 0]] == enc.form.choices[:, 1])
    image = box_lib.realize(box, r, bins.reshape(box.x.shape[1:]))
    assert image is not None
    for layer, pre in zip(enc.layers, _activations(model, image)):
        values[layer["z"]] = pre[layer["live"]]
        values[layer["h"]] = np.maximum(pre[layer["unstable"]], 0.0)
        values[layer["d"]] = pre[layer["unstable"]] > 0
    return values


def _violations(enc, values):
    """Rows (with the column bounds) the assignment breaks, with no tolerance at all."""
    bad = int(np.sum(values < np.asarray(enc.lb)) + np.sum(values > np.asarray(enc.ub)))
    for idx, val, lower, upper in enc.rows:
        act = float(values[idx] @ val)
        bad += int(act < lower or act > upper)
    return bad


def _loose(enc, values):
    """Active unstable units whose rows, given the other columns, let h exceed the model's."""
    loose = 0
    for layer in enc.layers:
        for col, dcol in zip(layer["h"], layer["d"]):
            if values[dcol] < 0.5:
                continue
            top = enc.ub[col]
            for idx, val, _, upper in enc.rows:
                where = np.nonzero(idx == col)[0]
                if len(where) and np.isfinite(upper) and val[where[0]] > 0:
                    rest = values[idx] @ val - values[col] * val[where[0]]
                    top = min(top, (upper - rest) / val[where[0]])
            loose += int(top > values[col] + 1e-9)
    return loose


def test_relu_encoding_admits_the_models_computation_and_mutations_are_caught():
    """Every row holds exactly at the model's own float32 values (sound), each active unstable
    unit's output is pinned to its pre-activation (tight); dropping a row, or the rounding
    allowance, is caught."""
    model, rng = _relu_net(0)
    x, _ = _data(model, rng, 4)
    box = certify.input_box(model, x, 0.1)
    _, net = exact.read(model)
    jitter = box_lib.jitter(box.layer, box.integer)
    found = {"drop_upper": 0, "shift_error": 0}
    for r in range(len(x)):
        args = (net, box.table, box.lo_bin[r].reshape(-1), box.hi_bin[r].reshape(-1), jitter)
        enc = relu.Encoder(*args)
        assert sum(len(layer["h"]) for layer in enc.layers) > 0  # unstable units exist
        dropped = relu.Encoder(*args, mutation=("drop_upper", 3, 0))
        no_err = relu.Encoder(*args, mutation=("shift_error",))
        for bins in box_points(box, r, most=64):
            values = _assignment(enc, model, box, r, bins)
            assert _violations(enc, values) == 0
            assert _loose(enc, values) == 0
            found["drop_upper"] += _loose(dropped, _assignment(dropped, model, box, r, bins))
            found["shift_error"] += _violations(no_err, _assignment(no_err, model, box, r, bins))
    assert found["drop_upper"] > 0 and found["shift_error"] > 0


def test_relu_loosened_margin_certifies_a_counterexample():
    model, rng = _relu_net(0)
    x, y = _data(model, rng)
    truth = certify.exhaustive(model, x, y, 0.1)
    box = certify.input_box(model, x, 0.1)
    rows = np.nonzero(~truth)[0]
    assert len(rows)
    statuses = {}
    for mutation in (None, ("loose_margin",)):
        cert = certify.Certificate(0.1, len(y))
        exact.verify(model, box, y, rows, cert, mutation=mutation)
        statuses[mutation] = set(cert.status[rows])
    assert statuses[None] == {"counterexample"}
    assert "certified" in statuses[("loose_margin",)]


def test_auto_uses_the_relu_milp_and_records_it():
    model, rng = _relu_net(0)
    x, y = _data(model, rng, 8)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    record = certify.sweep(model, ds, [0.0, 0.1], search=False, time_limit=5.0, enumerate_max=0)
    assert record["method"]["complete"] == ["exact"]
    assert record["method"]["exact"]["encoding"] == "relu"
    assert record["status_counts"][0.1]["unknown"] == 0
    assert record["status_counts"][0.0]["certified"] == 8  # each model's own class


def test_boxes_past_the_choice_cap_stay_unknown(monkeypatch):
    model, rng = _relu_net(0)
    x, y = _data(model, rng, 6)
    monkeypatch.setattr(relu, "MAX_CHOICES", 1)
    cert = certify.certify(model, x, y, 0.1, search=False, method="exact", enumerate_max=0)
    big = certify.input_box(model, x, 0.1).num_free() > 1
    assert big.sum() >= 3
    assert set(cert.status[big & (cert.decided_by != "ibp")]) <= {"unknown"}
    assert "certified" not in set(cert.status[big & (cert.decided_by == "exact")])


def test_relu_milp_refuses_what_it_cannot_encode():
    model, rng = _relu_net(0)
    x, y = _data(model, rng, 2)
    with pytest.raises(exact.ExactUnsupportedError, match="'sat' does not encode relu"):
        certify.certify(model, x, y, 0.1, method="exact", solver="sat", search=False)
    assert certify.certify(model, x, y, 0.1, search=False, solver="sat").method == "branch"
    # Max pooling has no linear rule: neither encoding reads it.
    inputs = tf.keras.Input((4, 4, 1))
    h = tfdisc.layers.BitDepthQuantization(2)(inputs)
    h = tf.keras.layers.Conv2D(2, 2, activation="relu")(h)
    h = tf.keras.layers.MaxPooling2D()(h)
    pooled = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(h)))
    assert not exact.supports(pooled)
    xp = rng.uniform(0, 1, (2, 4, 4, 1)).astype(np.float32)
    with pytest.raises(exact.ExactUnsupportedError, match="relu: .*linear rule"):
        certify.certify(pooled, xp, [0, 1], 0.1, method="exact", search=False)
    assert certify.certify(pooled, xp, [0, 1], 0.1, search=False).method == "branch"
