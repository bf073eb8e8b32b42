"""Entry point of the py_test targets: runs pytest on the given arguments.

Bazel runs a py_test's `main` as a script; pytest files have no main, so the
targets in //:BUILD pass their test files here as `args`.
"""
import os
import sys

import pytest

if __name__ == "__main__":
    # Say which op library the tests load (the Bazel-built one, through
    # TFDISC_OPS_LIBRARY set by the target).
    print(f"TFDISC_OPS_LIBRARY={os.environ.get('TFDISC_OPS_LIBRARY')}", flush=True)
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
