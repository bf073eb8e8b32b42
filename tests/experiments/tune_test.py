"""python -m tfdisc.experiments.tune: flags, and distributed search over keras-tuner's oracle.

Real processes on 127.0.0.1 with free ports, a tiny search on a real MNIST
slice; every process runs under a subprocess timeout, so nothing can hang.
"""
import json
import re
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The real MNIST IDX files, found as tests/conftest.py finds them (../shared beside the repo).
MNIST = os.path.join(os.environ.get("TFDISC_TEST_DATASETS", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))), "shared", "datasets")), "mnist")
pytestmark = pytest.mark.skipif(not os.path.exists(MNIST), reason="MNIST slice not available")

TIMEOUT = 420  # seconds; every process and wait below is bounded by it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env():
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    environ.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    return environ


def tiny_args(out, *extra):
    return ["-m", "tfdisc.experiments.tune", f"--data_dir={MNIST}", "--train_limit=400",
            "--validation_examples=100", "--test_limit=100", "--width_space=8,16,32",
            "--depth_space=2", "--precision_space=full,binary", "--tuner=random",
            "--epochs=1", "--pgd_steps=2", f"--output_dir={out}", "--lease_seconds=8",
            "--heartbeat_seconds=1", "--timeout_seconds=150", *extra]


def start(args, log):
    return subprocess.Popen([sys.executable] + args, cwd=REPO_ROOT, env=env(),
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def start_cluster(tmp_path, max_trials, extra=()):
    port = free_port()
    out = tmp_path / "out"
    procs, logs = {}, {}
    for role in ("chief", "worker0", "worker1"):
        logs[role] = open(tmp_path / f"{role}.log", "w")
        procs[role] = start(tiny_args(out, f"--max_trials={max_trials}", f"--tuner_id={role}",
                                      "--oracle_ip=127.0.0.1", f"--oracle_port={port}",
                                      *extra), logs[role])
    return out, procs, logs


def finish(procs, logs, tmp_path):
    """Waits for every process (bounded); returns {role: (returncode, log text)}."""
    deadline = time.time() + TIMEOUT
    out = {}
    try:
        for role, proc in procs.items():
            try:
                proc.wait(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{role} did not finish within {TIMEOUT} s")
    finally:
        for role, proc in procs.items():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            logs[role].close()
    for role, proc in procs.items():
        out[role] = (proc.returncode, (tmp_path / f"{role}.log").read_text())
    return out


def trial_lines(text, status="completed"):
    return [l.split()[1] for l in text.splitlines() if l.startswith("trial ") and
            l.split()[2] == status]


@pytest.mark.parametrize("flag_values,message", [
    ({"width": "100"}, "--width does not apply to a search; use --width_space"),
    ({"adv_train": "true"}, "--adv_train does not apply to a search"),
    ({"width_space": "abc"}, "comma-separated list of positive"),
    ({"bits_space": "2,9"}, "bits"),
    ({"tuner_id": "worker0"}, "together"),
    ({"objective_eps": "0"}, "objective_eps"),
    ({"tuner": "random", "max_trials": "0"}, "max_trials"),
])
def test_flags_reject_bad_input(flag_values, message):
    from absl import flags  # pylint: disable=import-outside-toplevel
    from absl.testing import flagsaver  # pylint: disable=import-outside-toplevel

    from tfdisc.experiments import tune  # pylint: disable=import-outside-toplevel

    with flagsaver.as_parsed(**flag_values):
        with pytest.raises(flags.ValidationError, match=re.escape(message)):
            tune.settings()


def test_flags_describe_the_search():
    from absl.testing import flagsaver  # pylint: disable=import-outside-toplevel

    from tfdisc.experiments import tune  # pylint: disable=import-outside-toplevel

    with flagsaver.as_parsed(width_space="64..256*2", bits_space="8,2", tuner="grid",
                             objective_attack="fgsm", objective_eps="8/255",
                             max_binary_macs="1000", data_dir=MNIST):
        s = tune.settings()
    assert s.space.width.values() == [64, 128, 256] and s.space.bits == (8, 2)
    assert s.max_trials is None  # grid: exhausted unless --max_trials is given
    assert s.objective.attack == "fgsm" and s.objective.eps == pytest.approx(8 / 255)
    assert s.max_binary_macs == 1000 and s.base.dataset == "mnist"


def tune_flags(data_dir, out, **extra):
    return {"data_dir": data_dir, "train_limit": "300", "validation_examples": "100",
            "test_limit": "50", "width_space": "8", "depth_space": "2",
            "precision_space": "full", "tuner": "grid", "epochs": "1", "model": "fcn2",
            "objective_attack": "fgsm", "attack": "fgsm", "epsilons": "0.1", "verbose": "0",
            "output_dir": str(out), **extra}


def test_overwrite_removes_the_old_search_and_no_completed_trial_leaves_no_model(
        tmp_path, capsys):
    from absl.testing import flagsaver  # pylint: disable=import-outside-toplevel

    from tfdisc import tuning  # pylint: disable=import-outside-toplevel
    from tfdisc.experiments import tune  # pylint: disable=import-outside-toplevel

    out = str(tmp_path / "out")
    with flagsaver.as_parsed(**tune_flags(MNIST, out)):
        tune.main(["tune"])
    assert os.path.exists(os.path.join(out, "model.keras"))
    # a rerun with other flags is refused with the differing settings named, not resumed
    with flagsaver.as_parsed(**tune_flags(MNIST, out, objective_eps="0.3", epochs="2")):
        with pytest.raises(SystemExit) as exit_:
            tune.main(["tune"])
    for part in ("--objective_eps: 0.1 in the search, 0.3 now", "--epochs: 1 in the search, 2 now",
                 "--overwrite"):
        assert part in str(exit_.value.code)
    # a truncated oracle.json: the file is named, no JSONDecodeError traceback
    oracle_json = os.path.join(out, "search", "oracle.json")
    with open(oracle_json) as f:
        state = f.read()
    with open(oracle_json, "w") as f:
        f.write(state[:20])
    with flagsaver.as_parsed(**tune_flags(MNIST, out)):
        with pytest.raises(SystemExit) as exit_:
            tune.main(["tune"])
    assert f"The search state file {oracle_json} cannot be read" in str(exit_.value.code)
    capsys.readouterr()
    with flagsaver.as_parsed(**tune_flags(MNIST, out, overwrite="true",
                                          max_packed_bytes="1")):
        with pytest.raises(SystemExit) as exit_:
            tune.main(["tune"])
    assert exit_.value.code not in (0, None) and "no model.keras" in str(exit_.value.code)
    printed = capsys.readouterr().out
    assert "removed search, logs, trials.json, trials.csv, capacity.png, model.keras" in printed
    assert "no trial completed" in printed
    assert not os.path.exists(os.path.join(out, "model.keras"))  # the old best is gone
    with open(os.path.join(out, "trials.json")) as f:
        summary = json.load(f)
    assert summary["best_trial"] is None
    assert [r["status"] for r in summary["trials"]] == ["skipped"]
    with open(os.path.join(out, "search", tuning.SEARCH_RECORD)) as f:
        assert json.load(f)["max_packed_bytes"] == 1  # the new search's own record


def test_overwrite_is_refused_for_a_distributed_search(tmp_path):
    from absl import app  # pylint: disable=import-outside-toplevel
    from absl.testing import flagsaver  # pylint: disable=import-outside-toplevel

    from tfdisc.experiments import tune  # pylint: disable=import-outside-toplevel

    with flagsaver.as_parsed(**tune_flags(MNIST, tmp_path / "out", overwrite="true",
                                          tuner_id="chief", oracle_ip="127.0.0.1",
                                          oracle_port="8000")):
        with pytest.raises(app.UsageError, match="--overwrite is not supported in a distributed"):
            tune.main(["tune"])


def test_chief_and_two_workers_complete_every_trial_once(tmp_path):
    out, procs, logs = start_cluster(tmp_path, max_trials=4)
    result = finish(procs, logs, tmp_path)
    for role, (code, text) in result.items():
        assert code == 0, f"{role} failed:\n{text[-3000:]}"
    done = trial_lines(result["worker0"][1]) + trial_lines(result["worker1"][1])
    assert sorted(done) == sorted(set(done)) and len(done) == 4  # each exactly once
    assert trial_lines(result["worker0"][1]) and trial_lines(result["worker1"][1])  # both ran
    with open(out / "trials.json") as f:
        summary = json.load(f)
    assert sorted(r["trial_id"] for r in summary["trials"]) == sorted(done)
    assert all(r["status"] == "completed" for r in summary["trials"])
    best = max(summary["trials"], key=lambda r: r["validation"]["adversarial_accuracy"])
    assert summary["trials"][[r["trial_id"] for r in summary["trials"]].index(
        summary["best_trial"])]["validation"]["adversarial_accuracy"] == \
        best["validation"]["adversarial_accuracy"]
    chief = result["chief"][1]
    assert f"best trial {summary['best_trial']}:" in chief
    assert (out / "model.keras").exists() and (out / "capacity.png").exists()


def test_killed_worker_trial_is_retried_and_search_finishes(tmp_path):
    out, procs, logs = start_cluster(tmp_path, max_trials=3)
    oracle_file = out / "search" / "oracle.json"
    victim, trial_id = None, None
    deadline = time.time() + TIMEOUT
    while victim is None and time.time() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            break
        try:
            with open(oracle_file) as f:
                ongoing = json.load(f)["ongoing_trials"]
        except (OSError, ValueError, KeyError):
            ongoing = {}
        # oracle.json still lists a trial as ongoing just after it ended; a trial
        # whose record (written at its end) is absent is certainly running.
        running = [(w, t) for w, t in ongoing.items()
                   if not (out / "search" / f"trial_{t}" / "tfdisc_trial.json").exists()]
        if running:
            victim, trial_id = running[0]
        else:
            time.sleep(0.1)
    assert victim in ("worker0", "worker1"), "no worker started a trial"
    procs[victim].send_signal(signal.SIGKILL)  # during its trial
    result = finish(procs, logs, tmp_path)
    assert result[victim][0] == -signal.SIGKILL
    survivor = "worker1" if victim == "worker0" else "worker0"
    for role in ("chief", survivor):
        assert result[role][0] == 0, f"{role} failed:\n{result[role][1][-3000:]}"
    assert trial_id not in trial_lines(result[victim][1])  # it died before finishing
    assert f"worker {victim} stopped responding during trial {trial_id}" in result["chief"][1]
    with open(out / "trials.json") as f:
        rows = {r["trial_id"]: r for r in json.load(f)["trials"]}
    assert len(rows) == 3
    # the killed trial was retried by the survivor (one retry allowed) and completed once
    assert rows[trial_id]["status"] == "completed"
    assert trial_lines(result[survivor][1]).count(trial_id) == 1
    assert all(r["status"] == "completed" for r in rows.values())
    # the fault history: who ran each attempt of the retried trial, in trials.json and printed
    assert [(a["worker"], a["status"]) for a in rows[trial_id]["attempts"]] == [
        (victim, "lost"), (survivor, "completed")]
    assert all(len(r["attempts"]) == 1 for t, r in rows.items() if t != trial_id)
    assert f"trial {trial_id} completed after 2 attempts: {victim} lost" in result["chief"][1]
