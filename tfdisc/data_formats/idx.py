"""IDX files (the MNIST format), raw or gzip, and the MNIST file layout.

``read_idx`` checks that the header's shape matches the data size;
``read_mnist`` that images and labels agree. Both raise ``DataError`` naming
the file.
"""
import math
import struct

import numpy as np

from tfdisc.data_formats.base import DataError, Found, Layout, find_file, read_maybe_gz

__all__ = ["MnistFiles", "read_idx", "read_mnist"]


def read_idx(path):
    """Reads an IDX file (optionally gzip-compressed) into a numpy array."""
    raw = read_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number).")
    type_code, ndim = raw[2], raw[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if type_code not in dtypes or ndim == 0:
        raise DataError(f"{path} is not an IDX file (type 0x{type_code:02x}, {ndim} dims).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header).")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(dtypes[type_code])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"found {len(raw) - header} bytes."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def read_mnist(images_path, labels_path):
    """MNIST-format image and label files as ``(uint8 images NHW1, int64 labels)``."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"MNIST-format files must hold images of rank 3 and labels of rank 1; got "
            f"{images.shape} in {images_path} and {labels.shape} in {labels_path}."
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels."
        )
    if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
        raise DataError(f"MNIST-format files must hold uint8 images and integer labels; got "
                        f"{images.dtype} in {images_path} and {labels.dtype} in {labels_path}.")
    return images[..., None], labels.astype(np.int64)


class MnistFiles(Layout):
    """``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (or ``-images.idx3-ubyte``)."""

    describe = ("the four MNIST-format files train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                "t10k-labels-idx1-ubyte.gz (or uncompressed)")

    def find(self, directory, split, dataset):
        prefix = "train" if split == "train" else "t10k"
        images = find_file(directory, [f"{prefix}-images-idx3-ubyte",
                                       f"{prefix}-images.idx3-ubyte"])
        labels = find_file(directory, [f"{prefix}-labels-idx1-ubyte",
                                       f"{prefix}-labels.idx1-ubyte"])
        if not (images or labels):
            return None
        if not (images and labels):
            raise DataError(
                f"Incomplete MNIST-format data in {directory}: found {images or labels} but not "
                f"its {'labels' if images else 'images'} file; expected "
                f"{dataset.layout_help}."
            )
        return Found("idx", (images, labels), lambda: read_mnist(images, labels), images)
