"""Finds, builds if needed, and loads the tfdisc op library (LazySO-style).

Search order:

1. ``TFDISC_OPS_LIBRARY``: an explicit path (used by the sanitizer run).
2. ``tfdisc/ops/_tfdisc_ops.so`` next to this file (built by ``setup.py`` or
   ``python cc_ops/build.py``), if its stamp ``_tfdisc_ops.so.json`` matches
   the installed TensorFlow and the current sources.
3. A build cache, ``$TFDISC_CACHE_DIR`` or ``~/.cache/tfdisc``, in a directory
   keyed by TensorFlow version, Python ABI and source hash; compiled there on
   first use (about a minute on two cores), so a TensorFlow upgrade or a
   source change rebuilds instead of loading a library with the wrong ABI.

Any failure (no compiler, no sources, compile error, load error) raises
``ImportError`` naming the cause; nothing else in tfdisc depends on this.
"""

import fcntl
import json
import os
import threading

from tfdisc.ops import _build

_LOCK = threading.Lock()
_LIBRARY = None


def _cache_dir():
    return os.environ.get("TFDISC_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfdisc")


def _prebuilt(key):
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, _build.LIBRARY_NAME)
    try:
        with open(path + ".json") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if os.path.isfile(path) and stamp.get("key") == key:
        return path
    return None


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
    key = _build.build_key(root)
    path = _prebuilt(key)
    if path:
        return path
    directory = os.path.join(_cache_dir(), f"ops-{key}")
    path = os.path.join(directory, _build.LIBRARY_NAME)
    if os.path.isfile(path):
        return path
    os.makedirs(directory, exist_ok=True)
    # A file lock so that parallel processes (pytest-xdist, several
    # experiments) build once.
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.isfile(path):
                _build.build_library(path, root=root)
        except RuntimeError as e:
            raise ImportError(f"tfdisc op library could not be built: {e}") from e
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


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
