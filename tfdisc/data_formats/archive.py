"""Tar archives (plain or gzip) of an image-folder tree, checked whole before use.

``tarfile`` stops without an error where a member header is missing or
invalid, so ``read_image_archive`` requires the end-of-archive block where it
stopped, and reads a gzip stream to its end for the CRC and length check.
``ImageArchive`` is the layout: the first ``.tar.gz``/``.tgz``/``.tar`` file
of the directory, by name.
"""
import gzip
import os
import tarfile
import zlib

import numpy as np

from tfdisc.data_formats.base import DataError, Found, Layout
from tfdisc.data_formats.image_folder import (class_map, decode_image, is_image, round_robin,
                                              split_dir_names)

__all__ = ["ARCHIVE_EXTENSIONS", "ImageArchive", "read_image_archive"]

ARCHIVE_EXTENSIONS = (".tar.gz", ".tgz", ".tar")


def _scan_archive(path, split):
    """Classes and the wanted split's images of a tar archive, after checking its integrity.

    Returns ``(train_classes or None, split_classes, [(class, member name, bytes)])``.
    ``tarfile`` stops without an error where a member header is missing or
    invalid, so the block where it stopped must be the end-of-archive block,
    and a gzip stream is read to its end for the CRC and length check.
    """
    wanted = split_dir_names(split)
    classes = {}  # split directory name -> set of class names
    items = []
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                for member in tar:
                    parts = [p for p in member.name.replace("\\", "/").split("/")
                             if p not in ("", ".")]
                    if member.isdir() and len(parts) >= 2 and not parts[-1].startswith("."):
                        classes.setdefault(parts[-2], set()).add(parts[-1])
                    elif member.isfile() and len(parts) >= 3 and is_image(parts[-1]):
                        classes.setdefault(parts[-3], set()).add(parts[-2])
                        if parts[-3] in wanted:
                            items.append((parts[-2], member.name, tar.extractfile(member).read()))
                end = tar.offset
            stream.seek(end)
            block = stream.read(tarfile.BLOCKSIZE)
            if len(block) < tarfile.BLOCKSIZE:
                raise tarfile.ReadError(f"the archive ends at byte {end} without its "
                                        f"end-of-archive block")
            if block.count(0) != len(block):
                raise tarfile.ReadError(f"invalid member header at byte {end}")
            while stream.read(1 << 20):  # the gzip CRC and length are checked at the end
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"Archive {path} is truncated or corrupt: {e}.") from e
    split_classes = set().union(*(classes.get(s, set()) for s in wanted))
    return classes.get("train"), split_classes, items


def read_image_archive(path, split, *, shape, num_classes, official=None):
    """``(images, labels, class names)`` of the ``[prefix/]split/<class>/<image>`` members of
    a tar archive (plain or gzip), after checking the whole archive's integrity.

    Labels come from ``class_map`` (arguments as there); images come round robin over
    the classes, each class's by member name, as ``list_image_folder`` orders a tree.

    Raises:
      DataError: a truncated or corrupt archive, an image that cannot be
        decoded, no image in the split, or as ``class_map``.
    """
    train_classes, split_classes, items = _scan_archive(path, split)
    if not items:
        raise DataError(
            f"Archive {path} has no images at {split_dir_names(split)[0]}/<class>/*.png|jpg "
            f"(expected layout: [prefix/]train|test/<class>/<image>)."
        )
    classes = class_map(train_classes, split_classes, where=path, split=split,
                        num_classes=num_classes, official=official)
    index = {c: i for i, c in enumerate(classes)}
    items.sort(key=lambda item: (item[0], item[1]))  # by class, then by name
    items = [items[i] for i in round_robin([index[cls] for cls, _, _ in items])]  # as a tree
    xs = np.empty((len(items),) + shape, np.uint8)
    ys = np.empty(len(items), np.int64)
    for i, (cls, name, data) in enumerate(items):
        xs[i] = decode_image(data, f"{path}:{name}", shape)
        ys[i] = index[cls]
    return xs, ys, classes


class ImageArchive(Layout):
    """The first archive of an image-folder tree in the directory, by file name."""

    describe = "a .tar.gz of such a tree"

    def __init__(self, describe=None):
        if describe is not None:
            self.describe = describe

    def find(self, directory, split, dataset):
        archives = sorted(f for f in os.listdir(directory)
                          if f.lower().endswith(ARCHIVE_EXTENSIONS))
        if not archives:
            return None
        archive = os.path.join(directory, archives[0])
        return Found("tar", [archive], lambda: read_image_archive(
            archive, split, shape=dataset.shape, num_classes=dataset.num_classes,
            official=dataset.class_names), archive)
