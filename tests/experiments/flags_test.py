"""Issue 26: numeric flags refuse inf/nan/huge values; errors print the message alone; a run
prints where it really wrote; TensorFlow's log lines are printed once."""
import json
import os
import subprocess
import sys

import pytest
from absl import flags
from absl.testing import flagsaver

from tfdisc.experiments import common  # noqa: F401  (defines the flags)

FLAGS = flags.FLAGS


@pytest.mark.parametrize("name, value, match", [
    ("epsilons", ["1e400"], "finite"),  # was a raw OverflowError from the validator
    ("epsilons", ["0.1", "1e999999999"], "finite"),  # was a hang (Fraction built 10**1e9)
    ("train_eps", "1e400", "finite"),
    ("pgd_step_size", "1e400", "> 0"),
    ("learning_rate", float("inf"), "finite"),
    ("learning_rate", float("nan"), "finite"),
    ("connect_timeout", float("inf"), "finite"),
    ("seed", -1, "seed"),
    ("seed", 2 ** 32, "seed"),
])
def test_numeric_flags_refuse_non_finite_and_out_of_range_values(name, value, match):
    with flagsaver.flagsaver():
        with pytest.raises(flags.IllegalFlagValueError, match=match):
            setattr(FLAGS, name, value)


def _run(args, cwd, module="tfdisc.experiments.mnist", **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG", "TFDISC_VERBOSE")}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", module] + args, cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.parametrize("args, heading, message", [
    (["--epochs=0"], "FATAL Flags parsing error: ", "`epochs` is 0 but no `init_from`"),
    (["--data_dir=does_not_exist"], "FATAL Data error: ", "'does_not_exist' is not a directory"),
])
def test_errors_found_at_run_time_print_the_message_alone(tmp_path, args, heading, message):
    proc = _run(args, tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]  # was an 18-line traceback
    lines = [line for line in proc.stderr.splitlines() if line.startswith("FATAL")]
    assert len(lines) == 1 and lines[0].startswith(heading) and message in lines[0], \
        proc.stderr[-3000:]


def test_the_capacity_search_prints_a_flag_error_alone(tmp_path):
    """tune used to print its whole usage text (about 120 lines) before the message."""
    proc = _run(["--epochs=0", f"--output_dir={tmp_path / 'search'}"], tmp_path,
                module="tfdisc.experiments.tune")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "--width_space" not in proc.stderr, \
        proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("FATAL")]
    assert len(lines) == 1 and lines[0].startswith("FATAL Flags parsing error: ") \
        and "`epochs` is 0" in lines[0], proc.stderr[-3000:]


def test_a_run_with_a_stray_tf_config_writes_and_prints_its_own_path_and_logs_once(
        synthetic_mnist, tmp_path):
    out = tmp_path / "run"
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                            "task": {"type": "worker", "index": 1}})
    proc = _run(["--distribute=mirrored", "--width=8", "--epochs=1", "--batch_size=1000000",
                 "--test_limit=16", "--epsilons=0.1", "--save_model=false", "--verbose=0",
                 f"--data_dir={synthetic_mnist}", f"--output_dir={out}"], tmp_path,
                TF_CONFIG=tf_config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Not written to OUT/workers/worker_1 while printing OUT/results.json.
    assert os.path.isfile(out / "results.json") and not os.path.exists(out / "workers")
    assert f"Wrote {out / 'results.json'}" in proc.stdout
    assert "TF_CONFIG is set (task worker:1) but the run is not multi_worker" in proc.stderr
    # The batch larger than the 256 training examples: one full batch, said so.
    assert "The batch size 1000000 exceeds the 256 training examples" in proc.stderr
    # TensorFlow's logger had its own handler besides absl's: every line came out twice.
    assert proc.stderr.count("Using MirroredStrategy with devices") == 1, proc.stderr[-3000:]
