"""tfdisc.tuning: the capacity search on a tiny real-MNIST slice."""
import dataclasses
import json
import os
import time

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import models, pipeline, tuning

# The real MNIST IDX files, found as tests/conftest.py finds them (../shared beside the repo).
MNIST = os.path.join(os.environ.get("TFDISC_TEST_DATASETS", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "datasets")), "mnist")
needs_mnist = pytest.mark.skipif(not os.path.exists(MNIST), reason="MNIST slice not available")


def base_config(**kw):
    kw = {"dataset": "mnist", "model": "fcn2", "epochs": 1, "batch_size": 64,
          "train_limit": 500, "test_limit": 100, "data_dir": MNIST, "attacks": ("fgsm", "pgd"),
          "epsilons": (0.1, 0.2), "attack_params": {"pgd": {"steps": 2}}, "verbose": 0, **kw}
    return pipeline.Config(**kw)


def settings(tmp_path, **kw):
    kw = {"base": base_config(), "output_dir": str(tmp_path / "out"),
          "space": tuning.Space(width=(8, 16), depth=(2,), bits=(8,),
                                precision=("full", "binary")),
          "objective": tuning.Objective("fgsm", 0.1), "tuner": "grid",
          "validation_examples": 150, **kw}
    return tuning.SearchSettings(**kw)


# ----------------------------------------------------------------- pieces

def test_parse_int_space():
    assert tuning.parse_int_space("150,300,600", "width") == (150, 300, 600)
    assert tuning.parse_int_space("600", "width") == (600,)
    assert tuning.parse_int_space("64..512*2", "width").values() == [64, 128, 256, 512]
    assert tuning.parse_int_space("100..300/100", "width").values() == [100, 200, 300]
    for bad, match in (("abc", "comma-separated"), ("0,4", "positive"), ("9..3", "low ≤ high"),
                       ("4..8*1", "step"), ("", "positive")):
        with pytest.raises(ValueError, match=match):
            tuning.parse_int_space(bad, "width")


def test_space_rejects_bad_choices_and_builds_hyperparameters():
    with pytest.raises(ValueError, match="bits"):
        tuning.Space(width=(8,), bits=(9,))
    with pytest.raises(ValueError, match="precision"):
        tuning.Space(width=(8,), precision=("ternary",))
    hp = tuning.Space(width="8..32*2", depth=(2, 3), bits=(8,), precision=("full",)
                      ).hyperparameters()
    assert {p.name for p in hp.space} == {"width", "depth", "bits", "precision"}
    assert hp.values["bits"] == 8 and hp.values["precision"] == "full"


def test_profile_counts_binary_macs_and_packed_size():
    full = models.build("fcn2", precision="full", width=64, depth=3)
    binary = models.build("fcn2", precision="binary", width=64, depth=3)
    pf, pb = tuning.profile(full), tuning.profile(binary)
    assert pf["binary_macs"] == 0
    assert pb["binary_macs"] == 2 * 64 * 64  # two binarized 64×64 hidden layers
    assert pf["macs"] == pb["macs"] == 784 * 64 + 2 * 64 * 64 + 64 * 10
    # binarized kernels are stored at 1 bit instead of 32
    assert pf["packed_bytes"] - pb["packed_bytes"] == pytest.approx(2 * 64 * 64 * 31 / 8, abs=600)


def test_split_validation_is_disjoint_and_checked():
    x = np.arange(100)[:, None]
    y = np.arange(100)
    xt, yt, xv, yv = tuning.split_validation(x, y, 20)
    assert len(yv) == 20 and len(yt) == 80 and not set(yv) & set(yt)
    assert set(yv) == set(tuning.split_validation(x, y, 20)[3])  # same split every time
    for bad in (0, 100, 2.5):
        with pytest.raises(ValueError, match="validation_examples"):
            tuning.split_validation(x, y, bad)


def test_objective_and_settings_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="objective_eps"):
        tuning.Objective("pgd", 0.0)
    with pytest.raises(ValueError):
        tuning.Objective("nope", 0.1)
    with pytest.raises(ValueError, match="tuner"):
        settings(tmp_path, tuner="evolution")
    with pytest.raises(ValueError, match="max_trials"):
        tuning.make_oracle("random", tuning.Space(width=(8,)), max_trials=None)
    with pytest.raises(ValueError, match="heartbeat"):
        settings(tmp_path, lease_seconds=1.0, heartbeat_seconds=1.0)
    with pytest.raises(ValueError, match="together"):
        tuning.Distributed.from_env(tuner_id="worker0")


# ----------------------------------------------------------------- the Keras 3 trap

@needs_mnist
def test_default_keras_tuner_path_rejects_tf_keras_models(tmp_path):
    """keras-tuner 1.4.8 type-checks models against Keras 3 (keras-tuner#1039).

    This is why CapacityTuner overrides run_trial; if keras-tuner ever accepts
    tf-keras models, this test tells us the workaround can go.
    """
    cfg = base_config(width=8, depth=2)
    tuner = kt.RandomSearch(
        hypermodel=lambda hp: pipeline.build_model(cfg), objective="val_accuracy",
        max_trials=1, directory=str(tmp_path), project_name="default")
    x = np.zeros((4, 28, 28, 1), "float32")
    y = np.zeros((4,), "int64")
    with pytest.raises(kt.errors.FatalTypeError, match="valid Keras Model"):
        tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)


# ----------------------------------------------------------------- searches

@needs_mnist
def test_grid_search_records_trials_budget_front_and_best(tmp_path):
    lines = []
    s = settings(tmp_path, max_binary_macs=100, report="best")  # binary w16: 256 binary MACs
    summary = tuning.run_search(s, progress=lines.append)
    rows = {r["trial_id"]: r for r in summary["trials"]}
    assert len(rows) == 4
    status = {(r["hyperparameters"]["precision"], r["hyperparameters"]["width"]): r["status"]
              for r in rows.values()}
    assert status == {("full", 8): "completed", ("full", 16): "completed",
                      ("binary", 8): "completed", ("binary", 16): "skipped"}
    skipped = next(r for r in rows.values() if r["status"] == "skipped")
    assert skipped["binary_macs"] == 256 and "validation" not in skipped
    assert "over budget" in skipped["reason"]
    assert not os.path.exists(os.path.join(s.project_dir, f"trial_{skipped['trial_id']}",
                                           "model.keras"))  # never trained
    # one progress line per trial with hyperparameters, capacity and both accuracies
    trial_lines = [l for l in lines if l.startswith("trial ")]
    assert len(trial_lines) == 4
    done_line = next(l for l in trial_lines if "completed" in l)
    for part in ("width=", "params", "binary_MACs", "packed", "val clean", "adv fgsm eps=0.1",
                 "grad=straight_through"):
        assert part in done_line

    done = [r for r in rows.values() if r["status"] == "completed"]
    best = max(done, key=lambda r: r["validation"]["adversarial_accuracy"])
    assert rows[summary["best_trial"]]["validation"]["adversarial_accuracy"] == \
        best["validation"]["adversarial_accuracy"]
    # test-set figures for the reported (best) trial only
    assert [r["trial_id"] for r in done if "test" in r] == [summary["best_trial"]]
    test = rows[summary["best_trial"]]["test"]
    assert test["examples"] == 100 and set(test["attacks"]) == {"fgsm", "pgd"}
    assert test["attacks"]["pgd"]["gradient"] == "straight_through"
    # Pareto front: no completed trial is at least as small and strictly more robust
    front = summary["pareto_front"]
    assert front and summary["best_trial"] in front
    for tid in front:
        r = rows[tid]
        assert not any(o["packed_bytes"] <= r["packed_bytes"] and
                       o["validation"]["adversarial_accuracy"] >
                       r["validation"]["adversarial_accuracy"] for o in done)

    # the recorded objective is what the saved model scores on the validation split
    x, y, _, _ = pipeline.load_data(s.base)
    _, _, xv, yv = tuning.split_validation(x, y, s.validation_examples, seed=s.base.seed)
    model = pipeline.load_model(os.path.join(s.project_dir, best["model_file"]))
    _, adv, _ = s.objective.measure(model, xv, yv)
    assert adv == pytest.approx(best["validation"]["adversarial_accuracy"])
    assert summary["data"]["validation_examples"] == 150
    assert summary["data"]["train_examples"] == 350

    out = s.output_dir
    with open(os.path.join(out, "trials.json")) as f:
        assert json.load(f)["best_trial"] == summary["best_trial"]
    with open(os.path.join(out, "trials.csv")) as f:
        assert len(f.read().strip().splitlines()) == 5
    with open(os.path.join(out, "capacity.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    best_model = pipeline.load_model(out)
    assert best_model.__class__.__module__.startswith("tf_keras")
    assert best_model.count_params() == best["params"]
    logs = os.listdir(os.path.join(out, "logs"))
    assert {f"trial_{r['trial_id']}" for r in done} <= set(logs)
    assert all(not os.path.isabs(r["model_file"]) for r in done)  # portable paths


@needs_mnist
def test_stop_after_then_rerun_resumes_without_repeating(tmp_path):
    s = settings(tmp_path, stop_after=2, base=base_config(train_limit=300),
                 validation_examples=100)
    first, second = [], []
    summary = tuning.run_search(s, progress=first.append)
    assert not summary["search_finished"]
    assert sum(l.startswith("trial ") for l in first) == 2
    done_first = {r["trial_id"] for r in summary["trials"] if r["status"] == "completed"}
    assert len(done_first) == 2
    stamps = {t: os.path.getmtime(os.path.join(s.project_dir, f"trial_{t}", "model.keras"))
              for t in done_first}
    time.sleep(0.05)
    summary = tuning.run_search(s, progress=second.append)  # the same command again
    ran_second = [l.split()[1] for l in second if l.startswith("trial ")]
    assert len(ran_second) == 2 and not set(ran_second) & done_first
    assert sorted(r["status"] for r in summary["trials"]) == ["completed"] * 4
    for t, stamp in stamps.items():  # finished trials were not rerun
        assert os.path.getmtime(os.path.join(s.project_dir, f"trial_{t}", "model.keras")) \
            == stamp
    third = []
    summary = tuning.run_search(dataclasses.replace(s, stop_after=None),
                                progress=third.append)
    assert not [l for l in third if l.startswith("trial ")]  # nothing left to run
    assert summary["search_finished"] and len(summary["trials"]) == 4


@needs_mnist
def test_rerun_reuses_test_figures_and_adds_transfer_between_twins(tmp_path, monkeypatch):
    s = settings(tmp_path, report="all", base=base_config(train_limit=300),
                 space=tuning.Space(width=(8,), depth=(2,), bits=(8,),
                                    precision=("full", "binary")),
                 validation_examples=100)
    first = tuning.run_search(s, progress=lambda line: None)
    rows = {r["trial_id"]: r for r in first["trials"]}
    assert all("transfer" not in r["test"] for r in rows.values())

    lines, loaded = [], []
    s2 = dataclasses.replace(s, transfer_attacks=("fgsm",))
    real_load = pipeline.load_model
    monkeypatch.setattr(pipeline, "load_model",
                        lambda path, *a, **k: loaded.append(path) or real_load(path, *a, **k))
    second = tuning.run_search(s2, progress=lines.append)
    monkeypatch.undo()
    # The test evaluation and the transfer both ways load each trial's model once (and the
    # best trial's once more, to save it as model.keras); it was three times each.
    paths = [os.path.join(s.project_dir, r["model_file"]) for r in second["trials"]]
    assert sorted(loaded) == sorted(paths + [os.path.join(
        s.project_dir, next(r for r in second["trials"]
                            if r["trial_id"] == second["best_trial"])["model_file"])])
    assert sum("reused from trials.json" in l for l in lines) == 4  # 2 trials x 2 attacks
    assert sum(l.startswith("transfer: ") for l in lines) == 2
    x, y, xt, yt = pipeline.load_data(s.base)
    del x, y
    for row in second["trials"]:
        assert row["test"]["attacks"] == rows[row["trial_id"]]["test"]["attacks"]
        t = row["test"]["transfer"]["fgsm"]
        twin = next(r for r in second["trials"] if r["trial_id"] != row["trial_id"])
        assert t["source_trial"] == twin["trial_id"] and t["examples"] == 100
        assert t["gradient"] == "straight_through"
        target = pipeline.load_model(os.path.join(s.project_dir, row["model_file"]))
        source = pipeline.load_model(os.path.join(s.project_dir, twin["model_file"]))
        from tfdisc import data, evaluate  # pylint: disable=import-outside-toplevel
        want = evaluate.transfer(source, target, data.from_arrays(xt, yt, batch_size=100),
                                 [0.1, 0.2], "fgsm")
        assert t["adversarial_accuracy"]["0.1"] == pytest.approx(want[0.1])
        assert t["adversarial_accuracy"]["0.2"] == pytest.approx(want[0.2])
    with open(os.path.join(s.output_dir, "trials.csv")) as f:
        assert "test_transfer_fgsm_eps0.1" in f.readline()

    again = []
    tuning.run_search(s2, progress=again.append)  # nothing is evaluated twice
    assert not [l for l in again if l.startswith("transfer: ")]
    assert sum("reused from trials.json" in l for l in again) == 4
    with pytest.raises(ValueError, match="transfer attack"):
        dataclasses.replace(s, transfer_attacks=("nope",))
    with pytest.raises(ValueError, match="transfer_limit"):
        dataclasses.replace(s, transfer_limit=0)
    limited = tuning.run_search(dataclasses.replace(s2, transfer_limit=40),
                                progress=lambda line: None)
    assert all(r["test"]["transfer"]["fgsm"]["examples"] == 40 for r in limited["trials"])
    assert all(r["test"]["attacks"]["fgsm"]["examples"] == 100 for r in limited["trials"])


@needs_mnist
def test_interrupted_test_evaluation_resumes_where_it_stopped(tmp_path, monkeypatch):
    s = settings(tmp_path, report="all", base=base_config(train_limit=300),
                 space=tuning.Space(width=(8,), depth=(2,), bits=(8,),
                                    precision=("full", "binary")),
                 validation_examples=100)
    real, calls = pipeline.evaluate_attacks, []

    def stops_at_the_fourth(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt("session ended")
        calls.append(kwargs.get("attacks"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_attacks", stops_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        tuning.run_search(s, progress=lambda line: None)
    with open(os.path.join(s.output_dir, "trials.json")) as f:
        partial = json.load(f)
    assert partial["test_complete"] is False
    done = [(r["trial_id"], name) for r in partial["trials"]
            for name in (r.get("test") or {}).get("attacks", {})]
    assert len(done) == 3  # 2 trials x 2 attacks, stopped before the last

    monkeypatch.setattr(pipeline, "evaluate_attacks", real)
    lines = []
    full = tuning.run_search(s, progress=lines.append)
    assert sum("reused from trials.json" in line for line in lines) == 3
    assert full["test_complete"] is True
    assert all(sorted(r["test"]["attacks"]) == ["fgsm", "pgd"] for r in full["trials"])


@needs_mnist
@pytest.mark.parametrize("tuner,kw", [("bayesian", {"max_trials": 3}),
                                      ("hyperband", {"hyperband_factor": 2})])
def test_bayesian_and_hyperband_search_tf_keras_models(tmp_path, tuner, kw):
    s = settings(tmp_path, tuner=tuner, base=base_config(epochs=2, train_limit=300),
                 validation_examples=100,
                 space=tuning.Space(width="8..16*2", depth=(2,), precision=("binary",)), **kw)
    summary = tuning.run_search(s, progress=lambda line: None)
    done = [r for r in summary["trials"] if r["status"] == "completed"]
    assert len(done) >= 2 and summary["best_trial"] is not None
    if tuner == "hyperband":
        # later rounds continue from a parent trial's saved model, up to max_epochs
        assert any(r.get("hyperband", {}).get("trial_id") for r in done)
        assert max(r["epochs"] for r in done) == 2


# ----------------------------------------------------------------- the leased oracle

def _oracle(tmp_path, max_retries):
    oracle = tuning.make_oracle("grid", tuning.Space(width=(8, 16)), max_trials=2,
                                max_retries_per_trial=max_retries, lease_seconds=0.3)
    tuning.CapacityTuner(oracle, base=base_config(), data=None,
                         objective=tuning.Objective("fgsm", 0.1), directory=str(tmp_path),
                         project_name="p")
    return oracle


def _end(oracle, trial, adv=0.5):
    oracle.update_trial(trial.trial_id, {tuning.OBJECTIVE: adv})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


@pytest.mark.parametrize("max_retries", [1, 0])
def test_silent_worker_loses_its_trial_to_a_retry_or_failure(tmp_path, max_retries):
    oracle = _oracle(tmp_path, max_retries)
    t0 = oracle.create_trial("worker0")
    t1 = oracle.create_trial("worker1")
    assert t0.status == t1.status == "RUNNING" and t0.trial_id != t1.trial_id
    _end(oracle, t1)
    assert oracle.create_trial("worker1").status == "IDLE"  # worker0 may still fail
    for _ in range(3):  # worker1 keeps asking; worker0 is silent past its lease
        time.sleep(0.15)
        oracle.get_trial(t1.trial_id)
        again = oracle.create_trial("worker1")
        if again.status != "IDLE":
            break
    if max_retries:
        assert again.status == "RUNNING" and again.trial_id == t0.trial_id
        _end(oracle, again)
        assert oracle.trials[t0.trial_id].status == "COMPLETED"
        again = oracle.create_trial("worker1")
    else:
        assert oracle.trials[t0.trial_id].status == "FAILED"
        assert "stopped responding" in oracle.trials[t0.trial_id].message
    assert again.status == "STOPPED"
    time.sleep(0.35)
    oracle.reap()
    assert oracle.finished()


def test_heartbeats_keep_a_slow_trial(tmp_path):
    oracle = _oracle(tmp_path, 1)
    t0 = oracle.create_trial("worker0")
    for _ in range(5):  # 0.5 s of work, heartbeat every 0.1 s, lease 0.3 s
        time.sleep(0.1)
        oracle.get_trial(t0.trial_id)
        oracle.reap()
    assert oracle.ongoing_trials.get("worker0") is t0 and t0.status == "RUNNING"
