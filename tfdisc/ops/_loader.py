"""Finds, builds if needed, and loads the tfdisc op library (LazySO-style).

The library's file name carries a build key (TensorFlow version, Python ABI
and a hash of the C++ sources and flags): ``_tfdisc_ops-<key>.so``, so a
TensorFlow upgrade or a source change never loads a library with the wrong
ABI; it rebuilds. Search order:

1. ``TFDISC_OPS_LIBRARY``: an explicit path (used by the sanitizer run).
2. ``tfdisc/ops/_tfdisc_ops-<key>.so`` next to this file: built by
   ``setup.py`` when TensorFlow is importable at build time, by
   ``python cc_ops/build.py``, or on first use in a source checkout
   (``pip install -e .``), where the package directory is the natural place
   (``*.so`` is git-ignored) and is reused by every later process.
3. ``<cache>/ops/_tfdisc_ops-<key>.so`` for cache = ``$TFDISC_CACHE_DIR``
   and ``~/.cache/tfdisc``; an installed package without a prebuilt library
   compiles here on first use (about a minute on two cores).

Any failure (no compiler, no sources, compile error, load error) raises
``ImportError`` naming the cause; nothing else in tfdisc depends on this.
"""

import fcntl
import glob
import os
import threading

from tfdisc.ops import _build

_LOCK = threading.Lock()
_LIBRARY = None
_HERE = os.path.dirname(os.path.abspath(__file__))


def _cache_dirs():
    dirs = []
    if os.environ.get("TFDISC_CACHE_DIR"):
        dirs.append(os.environ["TFDISC_CACHE_DIR"])
    dirs.append(os.path.join(os.path.expanduser("~"), ".cache", "tfdisc"))
    return [os.path.join(d, "ops") for d in dirs]


def _is_source_checkout(root):
    return os.path.abspath(root) == os.path.dirname(os.path.dirname(_HERE))


def _build_into(directory, name, root):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    # A file lock so that parallel processes (pytest-xdist, several
    # experiments) build once.
    with open(os.path.join(directory, ".tfdisc_ops.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.isfile(path):
                _build.build_library(path, root=root)
                for stale in glob.glob(os.path.join(directory, "_tfdisc_ops-*.so")):
                    if stale != path:
                        os.remove(stale)
        except RuntimeError as e:
            raise ImportError(f"tfdisc op library could not be built: {e}") from e
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


def library_path():
    """Path of a library matching this TensorFlow, building it if needed."""
    explicit = os.environ.get("TFDISC_OPS_LIBRARY")
    if explicit:
        if not os.path.isfile(explicit):
            raise ImportError(f"TFDISC_OPS_LIBRARY={explicit!r} does not exist")
        return explicit
    root = _build.source_root()
    if root is None:
        raise ImportError(
            "tfdisc op library: no prebuilt library and no C++ sources "
            "(cc_ops/) to build one from; reinstall tfdisc")
    name = _build.library_name(_build.build_key(root))
    candidates = [_HERE] + _cache_dirs()
    for directory in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    if _is_source_checkout(root) and os.access(_HERE, os.W_OK):
        return _build_into(_HERE, name, root)
    return _build_into(_cache_dirs()[0], name, root)


def load():
    """Returns the loaded op module (``tf.load_op_library``), loading once."""
    global _LIBRARY  # pylint: disable=global-statement
    with _LOCK:
        if _LIBRARY is None:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel

            path = library_path()
            try:
                _LIBRARY = tf.load_op_library(path)
            except (tf.errors.NotFoundError, OSError) as e:
                raise ImportError(
                    f"tfdisc op library {path} failed to load (ABI mismatch "
                    f"with TensorFlow {tf.__version__}?): {e}") from e
        return _LIBRARY
