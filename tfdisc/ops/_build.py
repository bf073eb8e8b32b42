"""Compiles the cc_ops custom-op library with g++ and TensorFlow's flags.

No Bazel: this is the tensorflow/custom-op Makefile recipe in Python
(`tf.sysconfig.get_compile_flags()` / `get_link_flags()`, `-fPIC -shared`).
It is used three ways:

* `setup.py` calls `build_library()` when TensorFlow is importable at build
  time and ships the result next to `tfdisc/ops/__init__.py`;
* `tfdisc.ops._loader` calls it on first use into a cache directory when no
  usable prebuilt library exists (for example after `pip install -e .` in an
  isolated build environment, or after a TensorFlow upgrade);
* `python cc_ops/build.py` (a thin CLI over this module), also with
  `--sanitize` for the AddressSanitizer/UBSan build.

This module imports TensorFlow lazily and nothing else from tfdisc, so
setup.py can load it by file path.
"""

import ast
import concurrent.futures
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

# The one source list is cc_ops/sources.bzl (also loaded by cc_ops/BUILD).
SOURCES_FILE = "cc_ops/sources.bzl"
SOURCE_LISTS = ("BGEMM_SRCS", "TF_OPS_SRCS")


def read_sources(root):
    """Op library sources relative to `root` (the directory containing
    `cc_ops/`), read from cc_ops/sources.bzl: its list literals are parsed
    with `ast`, nothing is executed."""
    path = os.path.join(root, SOURCES_FILE)
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    lists = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            lists[node.targets[0].id] = ast.literal_eval(node.value)
    missing = [name for name in SOURCE_LISTS if name not in lists]
    if missing:
        raise RuntimeError(f"{path} does not define {', '.join(missing)}")
    return tuple("cc_ops/" + src for name in SOURCE_LISTS for src in lists[name])


# -ffp-contract=off: the output transform must round like TensorFlow's
# separate multiply and add (see cc_ops/core/output_transform.h).
BASE_FLAGS = ("-O3", "-fPIC", "-ffp-contract=off", "-Wall", "-Wno-sign-compare",
              "-Wno-deprecated-declarations")
# TensorFlow's absl headers stop being constant expressions under UBSan's
# null and nonnull-attribute checks (GCC 12), so those checks are left out of the
# op-library build; cc_ops/sanitize.sh stage 1 runs core/ with all of UBSan.
SANITIZE_FLAGS = ("-O1", "-g", "-fno-omit-frame-pointer",
                  "-fsanitize=address,undefined",
                  "-fno-sanitize=null,nonnull-attribute,returns-nonnull-attribute",
                  "-fno-sanitize-recover=all")


def library_name(key):
    """File name of the library for build `key`."""
    return f"_tfdisc_ops-{key}.so"


def source_root():
    """Directory containing `cc_ops/`: the repository, or the copy shipped in
    the package (`tfdisc/ops/_src`). Returns None when neither exists."""
    here = os.path.dirname(os.path.abspath(__file__))
    for root in (os.path.join(here, "_src"),
                 os.path.dirname(os.path.dirname(here))):
        if os.path.isfile(os.path.join(root, "cc_ops", "core", "types.h")):
            return root
    return None


def all_source_files(root):
    """Every file that affects the build (sources, headers, the source list;
    not the standalone tests and benchmark mains), sorted."""
    files = []
    for dirpath, _, names in os.walk(os.path.join(root, "cc_ops")):
        for name in names:
            rel_dir = os.path.relpath(dirpath, os.path.join(root, "cc_ops"))
            if (name.endswith((".cc", ".h")) or name == "sources.bzl") and \
                    rel_dir.split(os.sep)[0] not in ("tests", "bench"):
                files.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(files)


def source_hash(root):
    digest = hashlib.sha256()
    for rel in all_source_files(root):
        digest.update(rel.encode())
        with open(os.path.join(root, rel), "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(BASE_FLAGS).encode())
    return digest.hexdigest()[:16]


def tf_flags():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return list(tf.sysconfig.get_compile_flags()), list(tf.sysconfig.get_link_flags())


def build_key(root):
    """Identifies a build: TensorFlow version + Python ABI + source hash."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    abi = sysconfig.get_config_var("SOABI") or sys.implementation.cache_tag
    return f"tf{tf.__version__}-{abi}-{source_hash(root)}"


def _compiler():
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(
            f"C++ compiler {cxx!r} not found (set CXX or install g++); it is "
            "needed to build the tfdisc op library")
    return cxx


def build_library(out_path, *, root=None, sanitize=False, jobs=None,
                  verbose=False):
    """Compiles the op library to `out_path` and returns the path.

    Compiles into a temporary file and renames it, so concurrent builders
    never see a half-written library. Raises RuntimeError with the compiler
    output on failure.
    """
    root = root or source_root()
    if root is None:
        raise RuntimeError("tfdisc C++ sources (cc_ops/) not found")
    cxx = _compiler()
    compile_flags, link_flags = tf_flags()
    flags = list(SANITIZE_FLAGS if sanitize else BASE_FLAGS)
    if sanitize:
        flags += ["-fPIC", "-ffp-contract=off", "-Wno-deprecated-declarations"]
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        def compile_one(src):
            obj = os.path.join(tmp, src.replace("/", "_") + ".o")
            cmd = [cxx, *flags, *compile_flags, "-I", root, "-c",
                   os.path.join(root, src), "-o", obj]
            if verbose:
                print(" ".join(cmd), flush=True)
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"compiling {src} failed:\n{result.stderr}")
            return obj

        jobs = jobs or max(1, os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            objects = list(pool.map(compile_one, read_sources(root)))
        tmp_lib = os.path.join(tmp, os.path.basename(out_path))
        cmd = [cxx, "-shared", *flags, *objects, "-o", tmp_lib, *link_flags]
        if verbose:
            print(" ".join(cmd), flush=True)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"linking the op library failed:\n{result.stderr}")
        os.replace(tmp_lib, out_path)
    return out_path
