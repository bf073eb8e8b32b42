"""The ``.npz`` cache of decoded arrays, under ``TFDISC_CACHE_DIR`` (default ``~/.cache/tfdisc``).

An entry is keyed by the dataset, the split, what the files are, and the
source files' paths, sizes and mtimes; it is read back with
``allow_pickle=False``. A corrupt entry is rebuilt; a read-only cache
directory means no cache.
"""
import hashlib
import os

import numpy as np

__all__ = ["CACHE_VERSION", "cache_dir", "cached"]

CACHE_VERSION = 3  # 3: image-folder trees and archives round robin over classes


def cache_dir():
    """``$TFDISC_CACHE_DIR``, or ``~/.cache/tfdisc``."""
    return os.environ.get("TFDISC_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfdisc")


def _cache_key(kind, name, split, sources):
    h = hashlib.sha1(f"{CACHE_VERSION}|{kind}|{name}|{split}".encode())
    for path in sources:
        stat = os.stat(path)
        h.update(f"|{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached(kind, name, split, sources, loader):
    """``loader() -> (x, y[, class names])`` through the .npz cache; returns a 3-tuple."""
    key = _cache_key(kind, name, split, sources)
    path = os.path.join(cache_dir(), f"{name}-{split}-{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path, allow_pickle=False) as entry:
                classes = entry["classes"].tolist() if "classes" in entry else None
                return entry["x"], entry["y"], classes
        except Exception:  # a corrupt cache entry is rebuilt
            pass
    x, y, *rest = loader()
    classes = rest[0] if rest else None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        extra = {} if classes is None else {"classes": np.array(classes, dtype=str)}
        np.savez(tmp, x=x, y=y, **extra)
        os.replace(tmp, path)
    except OSError:  # read-only home: work without a cache
        pass
    return x, y, classes
