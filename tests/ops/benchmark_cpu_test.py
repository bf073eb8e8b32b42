"""tfdisc.benchmarks.cpu: the CPU description and the AVX2-only emulation
(issue 13: ratios "on an AVX2-only CPU" measured on an AVX-512 host)."""
import os
import subprocess
import sys

import pytest

from tfdisc.benchmarks import cpu

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAS_AVX2 = "avx2" in cpu.describe()[2]
HAS_SSE41 = "sse4_1" in cpu.describe()[2]


def test_describe_names_the_cpu_and_only_known_flags():
    model, ident, flags = cpu.describe()
    assert model and "family" in ident
    assert set(flags) <= set(cpu.FLAGS)


def test_unknown_emulation_is_refused_by_name():
    with pytest.raises(ValueError, match="Unknown CPU to emulate 'sse2'"):
        cpu.emulate("sse2")


@pytest.mark.skipif(HAS_AVX2, reason="this CPU has AVX2")
def test_emulating_avx2_without_avx2_is_refused():
    with pytest.raises(ValueError, match="lacks avx2"):
        cpu.emulate("avx2")


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU lacks AVX2")
def test_avx2_emulation_caps_onednn_in_a_child_process(monkeypatch):
    for var in cpu.EMULATIONS["avx2"].env:
        monkeypatch.delenv(var, raising=False)
    kernels = cpu.emulate("avx2")  # monkeypatch restores os.environ afterwards
    assert kernels == ["avx2", "portable"]
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2" and os.environ["RUY_PATHS"] == "31"
    isa = cpu.onednn_isa()
    # oneDNN names the ISA it dispatches to; capped, it must not be AVX-512 or AMX.
    assert "AVX2" in isa and "AVX-512" not in isa and "AMX" not in isa, isa


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU lacks AVX2")
def test_benchmark_emulate_flag_states_the_cap_and_times_only_avx2_kernels(tmp_path):
    out = tmp_path / "ops.txt"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    result = subprocess.run(
        [sys.executable, "-m", "tfdisc.benchmarks.ops", "--quick", "--rounds=1",
         "--min_round_ms=1", "--nolce", "--sections=dense", "--emulate=avx2",
         f"--output={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "EMULATED avx2-only CPU" in text and "oneDNN reports isa: Intel AVX2" in text, text
    assert "kernel avx2" in text and "kernel portable" in text
    assert "kernel avx512" not in text and "kernel avx512bw" not in text


@pytest.mark.skipif(not HAS_SSE41, reason="this CPU lacks SSE4.1")
def test_sse41_emulation_caps_onednn_below_avx(monkeypatch):
    for var in cpu.EMULATIONS["sse41"].env:
        monkeypatch.delenv(var, raising=False)
    assert cpu.emulate("sse41") == ["portable"]
    isa = cpu.onednn_isa()
    assert "SSE4.1" in isa and "AVX" not in isa, isa
