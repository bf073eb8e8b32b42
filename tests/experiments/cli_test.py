"""The product card's command, run verbatim as a new user would (issue 14)."""
import json
import os
import subprocess
import sys

# Lines TensorFlow's C++ runtime prints at start-up; the binaries hide them by default.
STARTUP_NOISE = ("cpu_feature_guard", "cudart_stub", "cuInit", "absl::InitializeLog",
                 "oneDNN custom operations", "port.cc")


def _run(args, cwd, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ.update(env)
    return subprocess.run([sys.executable, "-m"] + args, cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=900, check=False)


def test_card_command_runs_verbatim_and_quietly(cifar10_dir, tmp_path):
    proc = _run(["tfdisc.experiments.cifar", "--bits=2", "--binary", "--train_limit=64",
                 "--test_limit=32"], cwd=tmp_path, TFDISC_DATA_DIR=cifar10_dir)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    run_dir = os.path.join("runs", "cifar10_alexnet_cifar_binary_2b")
    with open(tmp_path / run_dir / "results.json") as f:
        record = json.load(f)
    assert (record["model"], record["precision"], record["bits"]) == ("alexnet_cifar", "binary", 2)
    assert record["data"]["test_examples"] == 32
    assert f"Wrote {os.path.join(run_dir, 'results.json')}" in proc.stdout
    noise = [line for line in output.splitlines() if any(n in line for n in STARTUP_NOISE)]
    assert not noise, noise
    # The same command again does not clobber the first run.
    assert not os.path.exists(tmp_path / (run_dir + "_1"))


def test_no_data_anywhere_names_every_source(tmp_path):
    proc = _run(["tfdisc.experiments.cifar100", "--epochs=1"], cwd=tmp_path,
                TFDISC_DATA_DIR="", TFDS_DATA_DIR=str(tmp_path / "tfds"))
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if "--data_dir" in l]
    assert lines, proc.stderr[-3000:]
    assert "TFDISC_DATA_DIR" in lines[-1] and "tensorflow-datasets" in lines[-1]


def test_start_up_lines_only_on_request(tmp_path):
    os.makedirs(tmp_path / "run")  # the report refuses a results directory without results
    with open(tmp_path / "run" / "results.json", "w") as f:
        json.dump({"dataset": "mnist", "model": "fcn2", "precision": "full", "bits": 8,
                   "clean_accuracy": 0.9, "adversarial_accuracy": {"0.1": 0.5}}, f)
    args = ["tfdisc.experiments.report", f"--results_dir={tmp_path}", f"--out={tmp_path}/r.md"]
    quiet = _run(args, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not any(n in quiet.stdout + quiet.stderr for n in STARTUP_NOISE)
    verbose = _run(args, cwd=tmp_path, TFDISC_VERBOSE="1")
    assert verbose.returncode == 0
    assert any(n in verbose.stderr for n in STARTUP_NOISE)
