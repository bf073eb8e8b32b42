"""Builds the tfdisc op library from a source checkout.

    python cc_ops/build.py                 # -> tfdisc/ops/_tfdisc_ops-<key>.so
    python cc_ops/build.py --out lib.so    # elsewhere
    python cc_ops/build.py --sanitize --out /tmp/asan/_tfdisc_ops.so

The logic lives in tfdisc/ops/_build.py (shared with setup.py and the lazy
loader); this file only parses arguments. A library written next to the
package is found by tfdisc.ops._loader before its build cache.
"""

import argparse
import glob
import importlib.util
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_build_module():
    spec = importlib.util.spec_from_file_location(
        "_tfdisc_build", os.path.join(ROOT, "tfdisc", "ops", "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="output path (default: tfdisc/ops/_tfdisc_ops-<key>.so, "
                        "where tfdisc.ops finds it)")
    parser.add_argument("--sanitize", action="store_true",
                        help="build with -fsanitize=address,undefined")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    build = _load_build_module()
    if args.out is None and args.sanitize:
        parser.error("--sanitize needs --out (the sanitized library must not "
                     "replace the one tfdisc.ops loads)")
    out = args.out or os.path.join(ROOT, "tfdisc", "ops",
                                   build.library_name(build.build_key(ROOT)))
    build.build_library(out, root=ROOT, sanitize=args.sanitize,
                        verbose=args.verbose)
    if args.out is None:
        for stale in glob.glob(os.path.join(os.path.dirname(out), "_tfdisc_ops-*.so")):
            if stale != out:
                os.remove(stale)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
