"""The exact verifier for BNNs (tfdisc.certify.exact, MILP and SAT) against enumeration of every
input."""
import numpy as np
import pytest
import tensorflow as tf

import tfdisc  # noqa: F401  (sets up legacy Keras first)
from tfdisc import certify
from tfdisc.certify import box as box_lib
from tfdisc.certify import exact
from tfdisc.certify.exact import milp, network, sat
from tfdisc.layers import BitDepthQuantization
from tests.testing_utils import box_points, tiny_fcn2

pytest.importorskip("pysat")
pytest.importorskip("highspy")
SOLVERS = ("milp", "sat")


def _bnn(seed, depth=3, width=12, classes=3):
    return tiny_fcn2("binary", seed, depth=depth, width=width, classes=classes, beta_sd=0.5)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_exact_statuses_match_enumeration(seed, eps, solver):
    model, rng = _bnn(seed)
    x = rng.uniform(0, 1, (16, 3, 4, 1)).astype(np.float32)
    y = model(x).numpy().argmax(1)
    cert = certify.certify(model, x, y, eps, search=False, method="exact", solver=solver,
                           enumerate_max=0)  # every box to the solver
    truth = certify.exhaustive(model, x, y, eps)  # ≤ 4^12 inputs per box
    assert cert.counts()["unknown"] == 0
    np.testing.assert_array_equal(cert.status == "certified", truth)
    assert np.sum(cert.decided_by == "exact") >= 8
    assert 0 < truth.sum() < len(truth)  # both outcomes are exercised
    for r, image in cert.counterexamples.items():
        assert np.max(np.abs(image - x[r])) <= eps and image.min() >= 0 and image.max() <= 1
        assert model(image[None]).numpy().argmax() != y[r]
    # The default: small boxes enumerated, the rest (and open points) to the solver.
    both = certify.certify(model, x, y, eps, search=False, method="exact", solver=solver)
    np.testing.assert_array_equal(both.status == "certified", truth)
    assert both.counts()["unknown"] == 0 and "enumeration" in set(both.decided_by)


def _model_bits(net, levels):
    """The signs (True = +1) of every sign layer on one quantized input, in float64."""
    out = net.a0 * (levels @ net.w0 + net.b0) + net.s0
    s = np.where(out >= 0, 1, -1)
    layers = [s > 0]
    for layer in net.binary[:-1]:
        s = np.where(layer.a * (s @ layer.w) + layer.s >= 0, 1, -1)
        layers.append(s > 0)
    return layers


def _encoding_errors(model, x, eps, mutation=None, rows=range(6)):
    """Points where the encoding excludes the model's own signs (unsound) or leaves a
    hidden unit free that the model's signs determine (loose)."""
    box = certify.input_box(model, x, eps)
    net = network.read(model)
    errors = []
    for r in rows:
        enc = sat.Encoder(net, box.table, box.lo_bin[r].reshape(-1), box.hi_bin[r].reshape(-1),
                          box_lib.jitter(box.layer, box.integer), mutation=mutation)
        for bins in box_points(box, r):
            choose = [v for p, vs in zip(enc.free, enc.choices) for b, v in vs if b == bins[p]]
            truth = _model_bits(net, box.table[bins].astype(np.float64))
            assume = list(choose)
            for bits, want in zip(enc.layer_bits, truth):
                for b, w in zip(bits, want):
                    if isinstance(b, bool):
                        if b != w:
                            errors.append(("fixed", r))
                    else:
                        assume.append(b if w else -b)
            if not enc.solver.solve(assumptions=assume):
                errors.append(("unsound", r))
            # Hidden binary units have exact integer thresholds: given the previous layer's
            # signs, the other sign must be impossible (unless the value is in the band).
            for li, (bits, want) in enumerate(zip(enc.layer_bits[1:], truth[1:])):
                for b, w in zip(bits, want):
                    if not isinstance(b, bool) and enc.solver.solve(
                            assumptions=[a for a in assume if a not in (b, -b)]
                            + [-b if w else b]):
                        errors.append(("loose", r, li))
        enc.solver.delete()
    return errors


def _hit_threshold(model, x, eps):
    """A (layer, unit, kind) threshold some reachable input meets exactly, for the mutations."""
    box = certify.input_box(model, x, eps)
    net = network.read(model)
    enc = sat.Encoder(net, box.table, box.lo_bin[0].reshape(-1), box.hi_bin[0].reshape(-1),
                      box_lib.jitter(box.layer, box.integer))
    for bins in box_points(box, 0):
        s = np.where(_model_bits(net, box.table[bins].astype(np.float64))[0], 1, -1)
        agree = (s @ net.binary[0].w + len(s)) // 2
        for j, kind, up, t in enc.thresholds[0]:
            if agree[j] == t:
                return (0, j, kind)
    return None


def test_encoding_admits_exactly_the_models_signs_and_mutations_are_caught():
    model, rng = _bnn(0)
    x = rng.uniform(0, 1, (6, 3, 4, 1)).astype(np.float32)
    assert _encoding_errors(model, x, 0.1) == []
    target = _hit_threshold(model, x, 0.1)
    assert target is not None
    layer, unit, kind = target
    shifted = _encoding_errors(model, x, 0.1, ("shift_hidden", layer, unit, kind), rows=[0])
    assert any(e[0] == "unsound" for e in shifted)
    dropped = _encoding_errors(model, x, 0.1, ("drop_hidden", layer, unit, kind), rows=[0])
    assert any(e[0] == "loose" for e in dropped)


def _milp_feasible(enc, fixed):
    """True if the MILP admits the column values ``fixed`` {column: 0/1}."""
    from tfdisc.certify.exact import _highs_worker  # pylint: disable=import-outside-toplevel

    h = _highs_worker._model(enc._message())  # pylint: disable=protected-access
    cols = np.array(sorted(fixed), np.int32)
    vals = np.array([float(fixed[c]) for c in cols])
    h.changeColsBounds(len(cols), cols, vals, vals)
    h.setOptionValue("time_limit", 30.0)
    h.run()

    status = h.getModelStatus()
    assert status.name in ("kOptimal", "kInfeasible")
    return status.name == "kOptimal"


def _milp_errors(model, x, eps, mutation=None, rows=range(4)):
    """As ``_encoding_errors``, for the MILP: points where the rows exclude the model's own
    signs (unsound), or admit the other sign of a hidden unit the model's signs determine."""
    box = certify.input_box(model, x, eps)
    net = network.read(model)
    errors = []
    for r in rows:
        enc = milp.Encoder(net, box.table, box.lo_bin[r].reshape(-1), box.hi_bin[r].reshape(-1),
                           box_lib.jitter(box.layer, box.integer), mutation=mutation)
        for bins in box_points(box, r):
            chosen = bins[enc.form.choices[:, 0]] == enc.form.choices[:, 1]
            fixed = dict(zip(enc.choice_vars.tolist(), chosen.astype(int).tolist()))
            truth = _model_bits(net, box.table[bins].astype(np.float64))
            for bits, want in zip(enc.layer_bits, truth):
                for b, w in zip(bits, want):
                    if isinstance(b, (bool, np.bool_)):
                        if b != w:
                            errors.append(("fixed", r))
                    else:
                        fixed[b] = int(w)
            if not _milp_feasible(enc, fixed):
                errors.append(("unsound", r))
            for li, (bits, want) in enumerate(zip(enc.layer_bits[1:], truth[1:])):
                for b, w in zip(bits, want):
                    if not isinstance(b, (bool, np.bool_)):
                        other = dict(fixed)
                        other[b] = 1 - int(w)
                        for later in enc.layer_bits[li + 2:]:
                            for c in later:
                                other.pop(c, None)
                        if _milp_feasible(enc, other):
                            errors.append(("loose", r, li))
    return errors


def _milp_target(model, x, eps):
    """A hidden unit (layer, unit) of example 0 not fixed over its box whose threshold some
    reachable input meets exactly."""
    box = certify.input_box(model, x, eps)
    net = network.read(model)
    enc = milp.Encoder(net, box.table, box.lo_bin[0].reshape(-1), box.hi_bin[0].reshape(-1),
                       box_lib.jitter(box.layer, box.integer))
    sets = network.sign_sets(net.binary[0])
    for bins in box_points(box, 0):
        s = np.where(_model_bits(net, box.table[bins].astype(np.float64))[0], 1, -1)
        d = s @ net.binary[0].w
        for j, b in enumerate(enc.layer_bits[1]):
            if isinstance(b, (bool, np.bool_)):
                continue
            for half in sets[j]:
                if half not in ("all", "none") and d[j] == half[1]:
                    return (0, j)
    return None


def test_milp_admits_exactly_the_models_signs_and_mutations_are_caught():
    model, rng = _bnn(0, depth=3, width=8)
    x = rng.uniform(0, 1, (4, 3, 4, 1)).astype(np.float32)
    assert _milp_errors(model, x, 0.1, rows=[0, 1]) == []
    target = _milp_target(model, x, 0.1)
    assert target is not None
    shifted = _milp_errors(model, x, 0.1, ("shift_hidden",) + target, rows=[0])
    assert any(e[0] == "unsound" for e in shifted)
    dropped = _milp_errors(model, x, 0.1, ("drop_hidden",) + target, rows=[0])
    assert any(e[0] == "loose" for e in dropped)


@pytest.mark.parametrize("seed", [0, 3])
def test_first_binary_bounds_contain_every_reachable_sum(seed):
    """The linear bounds on the first binary layer's sums hold at every point of the box and
    are never looser than the interval ones."""
    model, rng = _bnn(seed, width=16)
    x = rng.uniform(0, 1, (4, 3, 4, 1)).astype(np.float32)
    box = certify.input_box(model, x, 0.1)
    net = network.read(model)
    tighter = 0
    for r in range(len(x)):
        form = network.first_layer_form(net, box.table, box.lo_bin[r].reshape(-1),
                                        box.hi_bin[r].reshape(-1),
                                        box_lib.jitter(box.layer, box.integer))
        d_min, d_max = network.first_binary_bounds(form, net.binary[0])
        free = [j for j, f in enumerate(form.fixed) if f is None]
        w = net.binary[0].w
        fixed = np.array([0 if f is None else (1 if f else -1) for f in form.fixed])
        radius = np.abs(w[free]).sum(axis=0)
        assert np.all(d_min >= fixed @ w - radius) and np.all(d_max <= fixed @ w + radius)
        tighter += int(np.sum(d_max - d_min < 2 * radius))
        for bins in box_points(box, r):
            s = np.where(_model_bits(net, box.table[bins].astype(np.float64))[0], 1, -1)
            d = s @ w
            assert np.all(d >= d_min) and np.all(d <= d_max), (r, bins)
    assert tighter > 0


def test_point_decision_certifies_what_the_bounds_cannot_and_only_the_models_class():
    """One quantized input: enumerating the signs inside the rounding bands certifies the
    model's class (on almost every point), and never another class."""
    model, rng = _bnn(1, width=16)
    x = rng.uniform(0, 1, (64, 3, 4, 1)).astype(np.float32)
    box = certify.input_box(model, x, 0.0)
    check = exact.point_checker(model, box)
    pred = model(box.table[box.lo_bin].astype(np.float32)).numpy().argmax(1)
    decided = 0
    for r in range(len(x)):
        bins = box.lo_bin[r].reshape(-1)
        for k in range(3):
            got = check(bins, k)
            assert not (got and k != pred[r])  # never certifies a class the model does not give
            decided += bool(got)
    assert decided >= 60, decided


def test_milp_loosened_margin_certifies_a_counterexample():
    """Loosening the solver margin (the "no counterexample" cutoff) is caught by enumeration."""
    model, rng = _bnn(0)
    x = rng.uniform(0, 1, (16, 3, 4, 1)).astype(np.float32)
    y = model(x).numpy().argmax(1)
    truth = certify.exhaustive(model, x, y, 0.1)
    box = certify.input_box(model, x, 0.1)
    rows = np.nonzero(~truth)[0]
    assert len(rows)
    statuses = {}
    for mutation in (None, ("loose_margin",)):
        cert = certify.Certificate(0.1, len(y))
        exact.verify(model, box, y, rows, cert, mutation=mutation, solver="milp")
        statuses[mutation] = set(cert.status[rows])
    assert statuses[None] == {"counterexample"}
    assert "certified" in statuses[("loose_margin",)]  # a false certificate: caught


def test_a_solver_process_past_its_time_is_killed_and_replaced():
    """HiGHS can overrun its own time limit; the worker process is killed after the grace time
    and the next query gets a new one."""
    model, rng = _bnn(0)
    x = rng.uniform(0, 1, (1, 3, 4, 1)).astype(np.float32)
    box = certify.input_box(model, x, 0.1)
    net = network.read(model)
    enc = milp.Encoder(net, box.table, box.lo_bin[0].reshape(-1), box.hi_bin[0].reshape(-1),
                       box_lib.jitter(box.layer, box.integer))
    proc = milp.HighsProcess()
    assert proc._load(enc)  # pylint: disable=protected-access
    first = proc.proc
    proc._send(("sleep",))  # pylint: disable=protected-access  # an unknown message: replies
    assert proc._recv(30.0)[0] == "error"  # pylint: disable=protected-access
    proc.proc.send_signal(19)  # SIGSTOP: the worker stops answering, as a spinning HiGHS
    proc._send(("solve", np.zeros(len(enc.lb)), 0.0, 0.5))  # pylint: disable=protected-access
    assert proc._recv(1.0) is None and proc.proc is None  # pylint: disable=protected-access
    assert first.poll() is not None  # killed
    assert proc.solve(enc, np.zeros(len(enc.lb)), 0.0, 5.0)[0] == "solved"  # a new process
    proc.kill()


def test_eps_zero_certifies_clean_accuracy_by_the_model():
    model, rng = _bnn(2)
    x = rng.uniform(0, 1, (20, 3, 4, 1)).astype(np.float32)
    y = model(x).numpy().argmax(1)
    y[:5] = (y[:5] + 1) % 3
    for method, solver in (("branch", "milp"), ("exact", "milp"), ("exact", "sat")):
        cert = certify.certify(model, x, y, 0.0, search=False, method=method, solver=solver)
        np.testing.assert_array_equal(cert.status == "certified", np.arange(20) >= 5)
        assert cert.counts()["unknown"] == 0


def test_eps_zero_point_rule_on_a_model_the_bounds_cannot_certify():
    """A near tie at ε = 0: interval bounds widened for float32 cannot certify it, the model
    run on the single input does."""
    inputs = tf.keras.Input((4,))
    q = BitDepthQuantization(2)(inputs)
    out = tf.keras.layers.Dense(2, use_bias=False, kernel_initializer=tf.constant_initializer(
        [[1.0, 1.0 - 1e-7]] * 4))(q)
    model = tf.keras.Model(inputs, out)
    x = np.full((1, 4), 0.9, np.float32)
    cert = certify.certify(model, x, [0], 0.0, search=False, method="branch")
    assert model(x).numpy().argmax() == 0
    assert cert.status[0] == "certified" and cert.decided_by[0] == "point"


def test_sweep_records_the_method_solver_and_counts():
    model, rng = _bnn(1)
    x = rng.uniform(0, 1, (8, 3, 4, 1)).astype(np.float32)
    y = model(x).numpy().argmax(1)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    record = certify.sweep(model, ds, [0.0, 0.1], search=False, time_limit=5.0, enumerate_max=0)
    assert record["method"]["complete"] == ["exact"]
    assert record["method"]["exact"]["solver"].startswith("highs")
    assert record["method"]["exact"]["name"] == "exact-milp"
    assert record["method"]["exact"]["time_limit_s"] == 5.0
    assert sum(record["status_counts"][0.1].values()) == 8
    assert record["status_counts"][0.0]["unknown"] == 0


def test_exact_refuses_bad_input(monkeypatch):
    model, rng = _bnn(0)
    x = rng.uniform(0, 1, (2, 3, 4, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="method"):
        certify.certify(model, x, [0, 1], 0.1, method="sat")
    with pytest.raises(ValueError, match="solver"):
        certify.certify(model, x, [0, 1], 0.1, solver="cplex")
    with pytest.raises(ValueError, match="workers"):
        certify.certify(model, x, [0, 1], 0.1, workers=0)
    with pytest.raises(ValueError, match="time_limit"):
        certify.certify(model, x, [0, 1], 0.1, time_limit=0)
    with pytest.raises(ValueError, match="eps"):
        certify.certify(model, x, [0, 1], 1.5, method="exact")
    with pytest.raises(ValueError, match="eps"):
        certify.certify(model, x, [0, 1], -0.1, method="exact")
    # A layer with no encoding: max pooling after a float convolution (neither a BNN nor a
    # chain of affine layers and ReLUs).
    inputs = tf.keras.Input((3, 4, 1))
    h = BitDepthQuantization(2)(inputs)
    h = tf.keras.layers.MaxPooling2D()(tf.keras.layers.Conv2D(2, 2, padding="same")(h))
    pooled = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(h)))
    assert not exact.supports(pooled)
    with pytest.raises(exact.ExactUnsupportedError, match="does not support layer.*method='branch'"):
        certify.certify(pooled, x, [0, 1], 0.1, method="exact", search=False)
    assert certify.certify(pooled, x, [0, 1], 0.1, search=False).method == "branch"  # auto
    # Without the input quantizer.
    inputs = tf.keras.Input((3, 4, 1))
    h = tf.keras.layers.Flatten()(inputs)
    plain = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(h))
    with pytest.raises(exact.ExactUnsupportedError, match="BitDepthQuantization"):
        certify.certify(plain, x, [0, 1], 0.1, method="exact")
    # The solver not installed.
    def missing():
        raise ImportError("The exact BNN verifier needs python-sat: `pip install tfdisc[verify]`")
    monkeypatch.setattr(sat, "_pysat", missing)
    with pytest.raises(ImportError, match=r"pip install tfdisc\[verify\]"):
        certify.certify(model, x, [0, 1], 0.1, method="exact", search=False, solver="sat")
    assert certify.certify(model, x, [0, 1], 0.1, search=False,
                           solver="sat").method == "branch"  # auto
    monkeypatch.setattr(milp, "_highspy", missing)
    with pytest.raises(ImportError, match=r"pip install tfdisc\[verify\]"):
        certify.certify(model, x, [0, 1], 0.1, method="exact", search=False)
    assert certify.certify(model, x, [0, 1], 0.1, search=False).method == "branch"  # auto


def test_missing_solver_message_names_the_extra(monkeypatch):
    import builtins  # pylint: disable=import-outside-toplevel

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("pysat"):
            raise ImportError("no pysat")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install tfdisc\[verify\]"):
        sat.solver_version()
