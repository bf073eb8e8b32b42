"""Finding, building and loading the op library; failures are ImportErrors."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from tfdisc.ops import _build, _loader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _copy_sources(tmp_path, edit=True):
    root = tmp_path / "src"
    shutil.copytree(os.path.join(_build.source_root(), "cc_ops"), root / "cc_ops",
                    ignore=shutil.ignore_patterns("tests", "*.py", "*.sh", "*.md"))
    if edit:
        with open(root / "cc_ops" / "core" / "types.h", "a") as f:
            f.write("\n// edited\n")
    return str(root)


class TestBuildKey:
    def test_key_names_tf_version_and_changes_with_sources(self, tmp_path):
        key = _build.build_key(_build.source_root())
        assert key.startswith(f"tf{tf.__version__}-")
        assert _build.build_key(_copy_sources(tmp_path)) != key
        assert _build.library_name(key) == f"_tfdisc_ops-{key}.so"

    def test_key_ignores_location(self, tmp_path):
        assert _build.build_key(_copy_sources(tmp_path, edit=False)) == \
            _build.build_key(_build.source_root())


class TestFailures:
    def test_missing_compiler(self, tmp_path, monkeypatch):
        monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
        with pytest.raises(RuntimeError, match="compiler"):
            _build.build_library(str(tmp_path / "lib.so"), root=_build.source_root())

    def test_loader_turns_build_failure_into_import_error(self, tmp_path, monkeypatch):
        root = _copy_sources(tmp_path)  # new key: nothing prebuilt anywhere
        monkeypatch.delenv("TFDISC_OPS_LIBRARY", raising=False)
        monkeypatch.setattr(_build, "source_root", lambda: root)
        monkeypatch.setenv("TFDISC_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
        with pytest.raises(ImportError, match="could not be built.*compiler"):
            _loader.library_path()

    def test_missing_sources(self, monkeypatch):
        monkeypatch.delenv("TFDISC_OPS_LIBRARY", raising=False)
        monkeypatch.setattr(_build, "source_root", lambda: None)
        with pytest.raises(ImportError, match="no C\\+\\+ sources"):
            _loader.library_path()

    def test_bad_library_is_import_error_and_tfdisc_still_works(self, tmp_path):
        bogus = tmp_path / "bogus.so"
        bogus.write_text("not a shared library")
        code = textwrap.dedent("""
            import tfdisc
            tfdisc.models.build("fcn2", precision="binary", width=8, depth=2)
            try:
                import tfdisc.ops
            except ImportError as e:
                print("IMPORT_ERROR", e)
        """)
        env = dict(os.environ, TFDISC_OPS_LIBRARY=str(bogus), TF_CPP_MIN_LOG_LEVEL="3",
                   PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        assert "IMPORT_ERROR tfdisc op library" in result.stdout
        assert str(bogus) in result.stdout
