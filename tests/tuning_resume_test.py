"""Capacity search reruns: identity, --overwrite, corrupt state, fault history, a lone chief.

Searches are one or two trials of a width-8 FCN2 on a real MNIST slice (1 epoch).
"""
import dataclasses
import glob
import json
import os
import shutil
import socket

import keras_tuner as kt
import pytest

from tfdisc import pipeline, tuning


def base_config(mnist_dir, **kw):
    kw = {"dataset": "mnist", "model": "fcn2", "epochs": 1, "batch_size": 64,
          "train_limit": 300, "test_limit": 50, "data_dir": mnist_dir, "attacks": ("fgsm",),
          "epsilons": (0.1,), "verbose": 0, **kw}
    return pipeline.Config(**kw)


def make_settings(mnist_dir, output_dir, **kw):
    kw = {"base": base_config(mnist_dir), "output_dir": str(output_dir),
          "space": tuning.Space(width=(8,), depth=(2,), bits=(8,), precision=("full",)),
          "objective": tuning.Objective("fgsm", 0.1), "tuner": "grid",
          "validation_examples": 100, "report": "best", **kw}
    return tuning.SearchSettings(**kw)


@pytest.fixture(scope="module")
def finished_search(mnist_dir, tmp_path_factory):
    """A finished one-trial search (copy it before changing it)."""
    s = make_settings(mnist_dir, tmp_path_factory.mktemp("search") / "out")
    summary = tuning.run_search(s, progress=lambda line: None)
    assert summary["best_trial"] is not None
    return s


def copy_of(search, tmp_path):
    shutil.copytree(search.output_dir, tmp_path / "out")
    return dataclasses.replace(search, output_dir=str(tmp_path / "out"))


# ----------------------------------------------------------------- 1. other settings

@pytest.mark.parametrize("change,names", [
    ({"objective": tuning.Objective("fgsm", 0.3)}, ["--objective_eps: 0.1 in the search, 0.3 now"]),
    ({"space": tuning.Space(width=(8, 16), depth=(2,), precision=("full",))}, ["--width_space"]),
    ({"max_packed_bytes": 10}, ["--max_packed_bytes: None in the search, 10 now"]),
    ({"tuner": "random", "max_trials": 1}, ["--tuner: grid in the search, random now"]),
])
def test_rerun_with_other_settings_is_refused(finished_search, tmp_path, change, names):
    s = copy_of(finished_search, tmp_path)
    with open(os.path.join(s.output_dir, "trials.json")) as f:
        before = f.read()
    lines = []
    with pytest.raises(tuning.SearchStateError) as err:
        tuning.run_search(dataclasses.replace(s, **change), progress=lines.append)
    for name in names:
        assert name in str(err.value)
    assert "--overwrite" in str(err.value) and "another --output_dir" in str(err.value)
    assert not [l for l in lines if l.startswith("trial ")]  # nothing ran
    with open(os.path.join(s.output_dir, "trials.json")) as f:
        assert f.read() == before  # the old search's figures are not relabelled


def test_rerun_with_other_epochs_is_refused_but_report_flags_may_change(finished_search,
                                                                        tmp_path):
    s = copy_of(finished_search, tmp_path)
    with pytest.raises(tuning.SearchStateError, match="--epochs: 1 in the search, 2 now"):
        tuning.run_search(dataclasses.replace(
            s, base=dataclasses.replace(s.base, epochs=2)), progress=lambda line: None)
    # the test-set evaluation and the report are not part of the search: they may change
    lines = []
    summary = tuning.run_search(
        dataclasses.replace(s, report="all", base=dataclasses.replace(s.base, test_limit=40)),
        progress=lines.append)
    assert not [l for l in lines if l.startswith("trial ")]  # resumed: nothing rerun
    assert summary["trials"][0]["test"]["examples"] == 40


def test_a_training_run_directory_is_refused(mnist_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with pytest.raises(tuning.SearchStateError, match="training run"):
        tuning.check_search(make_settings(mnist_dir, out))


# ----------------------------------------------------------------- 2. --overwrite, no best

def test_overwrite_leaves_a_directory_without_a_search_alone(tmp_path):
    (tmp_path / "model.keras").write_text("not a search's")
    assert tuning.remove_outputs(str(tmp_path)) == []
    assert (tmp_path / "model.keras").exists()


# ----------------------------------------------------------------- 3. corrupt state

@pytest.mark.parametrize("name", ["oracle.json", "tuner0.json", "TRIAL/trial.json",
                                  f"TRIAL/{tuning.TRIAL_RECORD}",
                                  tuning.SEARCH_RECORD])
def test_truncated_state_file_is_a_clear_error(finished_search, tmp_path, name):
    s = copy_of(finished_search, tmp_path)
    trial_dir, = glob.glob(os.path.join(s.project_dir, "trial_*"))
    path = os.path.join(s.project_dir, name.replace("TRIAL", os.path.basename(trial_dir)))
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[:len(text) // 2])  # killed while writing
    with pytest.raises(tuning.SearchStateError) as err:
        tuning.run_search(s, progress=lambda line: None)
    assert path in str(err.value) and "truncated or corrupt" in str(err.value)
    assert "--overwrite" in str(err.value)


def test_deleted_oracle_is_a_clear_error(finished_search, tmp_path):
    s = copy_of(finished_search, tmp_path)
    os.remove(os.path.join(s.project_dir, "oracle.json"))
    with pytest.raises(tuning.SearchStateError, match="no oracle.json"):
        tuning.run_search(s, progress=lambda line: None)


def test_search_state_is_written_atomically(tmp_path, monkeypatch):
    """keras-tuner writes oracle.json, trial.json and the tuner file in place; a kill while
    writing truncates them. The search writes all three through tfdisc.results.write_json."""
    from keras_tuner.src import utils as kt_utils  # pylint: disable=import-outside-toplevel

    def in_place(*args, **kwargs):
        raise AssertionError("keras-tuner's in-place save_json was used")

    monkeypatch.setattr(kt_utils, "save_json", in_place)
    oracle, tuner = _oracle(tmp_path)
    t0 = oracle.create_trial("tuner0")
    _end(oracle, t0)
    tuner.save()
    for name in ("oracle.json", "tuner0.json", f"trial_{t0.trial_id}/trial.json"):
        with open(tmp_path / "p" / name) as f:
            json.load(f)


# ----------------------------------------------------------------- 4. fault history

def _oracle(tmp_path, **kw):
    oracle = tuning.make_oracle("grid", tuning.Space(width=(8, 16)), max_trials=2,
                                max_retries_per_trial=1, lease_seconds=0.3, **kw)
    tuner = tuning.CapacityTuner(oracle, base=pipeline.Config(dataset="mnist"), data=None,
                                 objective=tuning.Objective("fgsm", 0.1),
                                 directory=str(tmp_path), project_name="p")
    return oracle, tuner


def _end(oracle, trial, adv=0.5):
    oracle.update_trial(trial.trial_id, {tuning.OBJECTIVE: adv})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_retried_trial_records_its_attempts_and_workers(tmp_path):
    import time  # pylint: disable=import-outside-toplevel

    oracle, _ = _oracle(tmp_path)
    lines = []
    oracle.progress = lines.append
    t0 = oracle.create_trial("worker0")
    t1 = oracle.create_trial("worker1")
    _end(oracle, t1)
    again = None
    for _ in range(10):  # worker0 falls silent past its lease; worker1 picks up the retry
        time.sleep(0.15)
        oracle.get_trial(t1.trial_id)
        again = oracle.create_trial("worker1")
        if again.status == "RUNNING":
            break
    assert again.trial_id == t0.trial_id
    _end(oracle, again)
    attempts = oracle.attempts[t0.trial_id]
    assert [(a["worker"], a["status"]) for a in attempts] == [("worker0", "lost"),
                                                              ("worker1", "completed")]
    assert "stopped responding" in attempts[0]["message"]
    assert [(a["worker"], a["status"]) for a in oracle.attempts[t1.trial_id]] == [
        ("worker1", "completed")]
    # the printed table says it: the chief's line for the retried trial
    line = next(l for l in lines if l.startswith(f"trial {t0.trial_id} completed"))
    assert "2 attempts: worker0 lost" in line and "worker1 completed" in line
    # trials.json / trials.csv
    rows = {r["trial_id"]: r for r in tuning.collect(oracle, str(tmp_path / "p"))}
    assert [(a["attempt"], a["worker"], a["status"]) for a in rows[t0.trial_id]["attempts"]] \
        == [(1, "worker0", "lost"), (2, "worker1", "completed")]
    objective = tuning.Objective("fgsm", 0.1).describe()
    tuning.write_trials(str(tmp_path), {"trials": list(rows.values()),
                                        "pareto_front": [], "objective": objective})
    with open(tmp_path / "trials.csv") as f:
        header, *table = [line.strip().split(",") for line in f]
    row = dict(zip(header, next(r for r in table if r[0] == t0.trial_id)))
    assert row["attempts"] == "2" and row["workers"] == "worker0;worker1"
    # the history survives a reload of the oracle (oracle.json)
    reloaded, _ = _oracle(tmp_path)
    reloaded.reload()
    assert reloaded.attempts == oracle.attempts


def test_attempt_running_when_the_search_stopped_is_recorded_as_interrupted(tmp_path):
    oracle, _ = _oracle(tmp_path)
    t0 = oracle.create_trial("tuner0")  # then the process is killed
    reloaded, _ = _oracle(tmp_path)
    reloaded.reload()
    assert reloaded.attempts[t0.trial_id][0]["status"] == "interrupted"
    again = reloaded.create_trial("tuner0")
    assert again.trial_id == t0.trial_id
    _end(reloaded, again)
    assert [a["status"] for a in reloaded.attempts[t0.trial_id]] == ["interrupted",
                                                                      "completed"]


def test_worker_skipped_trial_is_not_a_failure_on_the_chief(tmp_path):
    """keras-tuner's gRPC drops the trial message, which said "skipped over budget"."""
    oracle, _ = _oracle(tmp_path, max_consecutive_failures=1)
    oracle.record_dir = str(tmp_path / "p")
    t0 = oracle.create_trial("worker0")
    with open(tmp_path / "p" / f"trial_{t0.trial_id}" / tuning.TRIAL_RECORD, "w") as f:
        json.dump({"status": "skipped", "reason": "over budget: 9 packed bytes > 1"}, f)
    as_received = kt.engine.trial.Trial(t0.hyperparameters, trial_id=t0.trial_id,
                                        status="FAILED")  # what EndTrial rebuilds: no message
    oracle.end_trial(as_received)
    assert tuning.is_skipped(oracle.trials[t0.trial_id])
    assert oracle.stop_reason is None  # not a failure
    assert oracle.attempts[t0.trial_id][0]["status"] == "skipped"


# ----------------------------------------------------------------- 5. a chief left alone

def test_unfinished_counts_running_retried_and_unstarted_trials(tmp_path):
    import time  # pylint: disable=import-outside-toplevel

    oracle = tuning.make_oracle("grid", tuning.Space(width=(8, 16, 32, 64)),
                                max_retries_per_trial=1, lease_seconds=0.2)
    tuning.CapacityTuner(oracle, base=pipeline.Config(dataset="mnist"), data=None,
                         objective=tuning.Objective("fgsm", 0.1), directory=str(tmp_path),
                         project_name="p")
    alive = oracle.create_trial("worker0")
    oracle.create_trial("worker1")
    time.sleep(0.1)
    oracle.get_trial(alive.trial_id)  # worker0 stays alive; worker1 falls silent
    time.sleep(0.15)
    oracle.get_trial(alive.trial_id)
    oracle.reap()
    assert oracle.unfinished() == {"running": 1, "retry": 1, "unstarted": 2}
    assert oracle.describe_unfinished() == ("1 trial(s) running, 1 waiting for a retry, "
                                            "2 not started yet")


def test_chief_without_workers_writes_trials_json_and_says_to_rerun(mnist_dir, tmp_path,
                                                                    monkeypatch):
    """A chief resuming a local search (it reloads the oracle although it has no tuner file
    of its own yet) whom no worker calls: it counts the unstarted trial, writes trials.json
    with the completed one, and says what to rerun."""
    for name in tuning.Distributed.ENV:  # restored after the test
        monkeypatch.setenv(name, "unset")
    local = make_settings(mnist_dir, tmp_path / "out", stop_after=1,
                          space=tuning.Space(width=(8, 16), depth=(2,), precision=("full",)))
    tuning.run_search(local, progress=lambda line: None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chief = dataclasses.replace(
        local, stop_after=None, distributed=tuning.Distributed("chief", "127.0.0.1", port),
        timeout_seconds=2.0, lease_seconds=1.0, heartbeat_seconds=0.5, poll_seconds=0.2,
        command="python -m tfdisc.experiments.tune --overwrite --tuner_id=chief")
    with pytest.raises(tuning.SearchTimeout) as err:
        tuning.run_search(chief, progress=lambda line: None)
    message = str(err.value)
    assert "0 trial(s) running, 0 waiting for a retry, 1 not started yet" in message
    assert "with the 1 trial(s) that ended" in message
    assert "rerun the chief and its workers with: python -m tfdisc.experiments.tune " \
           "--tuner_id=chief" in message  # not --overwrite, which would delete the search
    with open(tmp_path / "out" / "trials.json") as f:
        summary = json.load(f)
    assert summary["search_finished"] is False and summary["test_complete"] is False
    assert summary["unfinished"] == {"running": 0, "retry": 0, "unstarted": 1}
    assert [r["status"] for r in summary["trials"]] == ["completed"]
    assert summary["best_trial"] == summary["trials"][0]["trial_id"]
    assert os.path.exists(tmp_path / "out" / "model.keras")


def test_test_figures_of_another_search_are_not_reused(finished_search, tmp_path):
    """search/ deleted by hand, trials.json kept: the new search's trial 0 is another model."""
    s = copy_of(finished_search, tmp_path)
    shutil.rmtree(s.project_dir)
    lines = []
    summary = tuning.run_search(
        dataclasses.replace(s, space=tuning.Space(width=(16,), depth=(2,), precision=("full",))),
        progress=lines.append)
    assert not [l for l in lines if "reused from trials.json" in l]
    assert summary["trials"][0]["hyperparameters"]["width"] == 16
    again = []
    tuning.run_search(dataclasses.replace(
        s, space=tuning.Space(width=(16,), depth=(2,), precision=("full",))),
        progress=again.append)  # the same search: its own figures are reused
    assert sum("reused from trials.json" in l for l in again) == 1


def test_search_from_before_the_record_resumes_with_a_warning(finished_search, tmp_path):
    s = copy_of(finished_search, tmp_path)
    os.remove(os.path.join(s.project_dir, tuning.SEARCH_RECORD))
    lines = []
    tuning.run_search(s, progress=lines.append)
    assert any(l.startswith("warning:") and "made before tfdisc recorded" in l for l in lines)
    assert not [l for l in lines if l.startswith("trial ")]  # resumed, nothing rerun
    with open(os.path.join(s.project_dir, tuning.SEARCH_RECORD)) as f:
        assert json.load(f) == tuning.search_identity(s)  # recorded from now on
