"""The op library's C++ sources are listed once (cc_ops/sources.bzl) and used
by both builds: the g++ build (tfdisc/ops/_build.py) and Bazel (cc_ops/BUILD)."""
import ast
import glob
import os

from tfdisc.ops import _build

ROOT = _build.source_root()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _on_disk():
    found = []
    for sub in ("core", "kernels", "ops"):
        found += glob.glob(os.path.join(ROOT, "cc_ops", sub, "**", "*.cc"), recursive=True)
    return sorted(os.path.relpath(path, ROOT) for path in found)


def test_every_source_file_listed_once():
    listed = _build.read_sources(ROOT)
    assert len(listed) == len(set(listed)), "a source is listed twice"
    assert sorted(listed) == _on_disk()


def test_bazel_uses_the_lists():
    # cc_ops/BUILD loads the lists and names no library .cc file itself (only
    # its test and benchmark mains); the root BUILD names none either.
    with open(os.path.join(REPO, "cc_ops", "BUILD")) as f:
        tree = ast.parse(f.read())
    load = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "load"]
    assert any(ast.literal_eval(call.args[0]) == ":sources.bzl"
               and set(_build.SOURCE_LISTS) <= {ast.literal_eval(a) for a in call.args[1:]}
               for call in load)
    for build in ("cc_ops/BUILD", "BUILD"):
        with open(os.path.join(REPO, build)) as f:
            strings = [ast.literal_eval(node) for node in ast.walk(ast.parse(f.read()))
                       if isinstance(node, ast.Constant) and isinstance(node.value, str)]
        listed_here = [s for s in strings if s.endswith(".cc")
                       and not s.startswith(("tests/", "bench/"))]
        assert listed_here == [], f"{build} lists sources itself: {listed_here}"


def test_read_sources_rejects_a_broken_list(tmp_path):
    (tmp_path / "cc_ops").mkdir()
    (tmp_path / "cc_ops" / "sources.bzl").write_text('BGEMM_SRCS = ["a.cc"]\n')
    try:
        _build.read_sources(str(tmp_path))
    except RuntimeError as e:
        assert "TF_OPS_SRCS" in str(e)
    else:
        raise AssertionError("missing TF_OPS_SRCS not reported")
