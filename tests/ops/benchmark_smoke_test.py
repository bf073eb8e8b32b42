"""Smoke test of `python -m tfdisc.benchmarks.ops --quick` (issue 8): the
script runs end to end on tiny shapes and writes its report. It asserts no
speed (timings on a shared machine are not test material), only that every
section ran and the packed models agree with larq."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_quick_run_writes_every_section(tmp_path):
    out = tmp_path / "ops.txt"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "tfdisc.benchmarks.ops", "--quick", "--rounds=1",
         "--min_round_ms=1", "--nolce", "--kernels=portable",
         f"--output={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    for header in ("== roofline", "== dense", "== dispatch", "== gemv", "== conv in graph",
                   "== conv:", "== e2e"):
        assert header in text, f"section {header!r} missing:\n{text}"
    assert "cpu flags" in text and "kernel 'auto' runs" in text
    assert "kernel portable" in text and "% of its roofline" in text
    assert "== summary" in text
    agreement = [line for line in text.splitlines() if "argmax agreement" in line]
    assert agreement and all("argmax agreement 100%" in line for line in agreement), text
