"""What every format family shares: ``DataError``, and a ``Layout``'s answer ``Found``.

A *layout* is one way a dataset's files can lie in a directory (the four IDX
files of MNIST, ``cifar-10-batches-py/``, an image-folder tree, a tar archive
of one). ``Layout.find(directory, split, dataset)`` looks in one directory and
returns ``None`` when its files are not there, or a ``Found``: the files that
key the decoded-array cache and a ``read()`` that decodes them. ``dataset``
is the registry entry (``tfdisc.datasets.Dataset``); a layout reads only its
``name``, ``shape``, ``num_classes``, ``class_names`` and ``layout_help``.
"""
import gzip
import os
import zlib
from typing import Callable, NamedTuple, Optional, Sequence

__all__ = ["DataError", "Found", "Layout", "find_file", "read_maybe_gz"]


class DataError(ValueError):
    """Missing, corrupt or unrecognised dataset files."""


class Found(NamedTuple):
    """A split located by a ``Layout``.

    Attributes:
      kind: what the cache key says the files are (e.g. ``"idx"``, ``"tar"``).
      sources: the files read; their paths, sizes and mtimes key the cache.
      read: ``() -> (uint8 images NHWC, int64 labels[, class names])``.
      where: the source named in messages and logs (a file or directory).
    """
    kind: str
    sources: Sequence[str]
    read: Callable[[], tuple]
    where: str


class Layout:
    """One on-disk arrangement of a dataset's files; see the module doc."""

    #: Words for the layout in "expected ..." messages.
    describe = ""

    def find(self, directory, split, dataset) -> Optional[Found]:
        """The ``split`` in ``directory``, or None if this layout's files are absent.

        Raises:
          DataError: the files are there but incomplete or unreadable.
        """
        raise NotImplementedError


def find_file(directory, names):
    """The first of ``names`` (or ``name.gz``) that is a file in ``directory``, or None."""
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    return None


def read_maybe_gz(path):
    """The bytes of ``path``, gunzipped if it ends in ``.gz``."""
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"Corrupt or truncated gzip file {path}: {e}.") from e
    return raw
