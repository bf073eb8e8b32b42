"""The framework-free C++ tests of cc_ops/core, built with the host compiler and run natively.

``core_test.cc`` checks every kernel this CPU supports (dense and conv drivers) against the
reference kernel; ``spin_pool_test.cc`` checks the op library's worker pool. CI otherwise
runs core_test only cross-compiled for AArch64 (cc_ops/test_aarch64.sh). The C++ benchmarks
(``cc_ops/bench``) are compiled, not run.
"""
import ast
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CXX = os.environ.get("CXX", "g++")


def _bgemm_sources():
    with open(os.path.join(ROOT, "cc_ops", "sources.bzl"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    lists = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
             if isinstance(n, ast.Assign)}
    return [os.path.join("cc_ops", s) for s in lists["BGEMM_SRCS"]]


@pytest.mark.skipif(shutil.which(CXX) is None, reason=f"no C++ compiler ({CXX})")
@pytest.mark.parametrize("test", ["core_test", "spin_pool_test"])
def test_native_cc(test, tmp_path):
    binary = str(tmp_path / test)
    build = subprocess.run(
        [CXX, "-std=c++17", "-O2", "-ffp-contract=off", "-pthread", "-I.",
         os.path.join("cc_ops", "tests", test + ".cc"), *_bgemm_sources(), "-o", binary],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([binary], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
    tail = (run.stdout + run.stderr)[-3000:]
    assert run.returncode == 0, tail
    summary = re.search(r"(\d+) checks, (\d+) failures", run.stdout)
    assert summary, tail
    assert int(summary.group(1)) > 100 and int(summary.group(2)) == 0, tail


@pytest.mark.skipif(shutil.which(CXX) is None, reason=f"no C++ compiler ({CXX})")
@pytest.mark.parametrize("bench", ["core_bench", "spin_pool_bench"])
def test_benchmark_sources_compile(bench):
    # The C++ benchmarks run by hand (cc_ops/bench/run.sh) and by Bazel's build //...; a change
    # to a core/ interface must not leave them broken until someone next runs them.
    build = subprocess.run(
        [CXX, "-std=c++17", "-fsyntax-only", "-I.", os.path.join("cc_ops", "bench", bench + ".cc")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
