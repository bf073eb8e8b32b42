"""Fixtures for the experiment binaries: parsed absl flags and synthetic datasets on disk."""
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
from absl import flags


@pytest.fixture(autouse=True)
def parsed_flags():
    """Binaries read absl flags; tests set them with flagsaver on top of the defaults."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    yield


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                    *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def synthetic_mnist(tmp_path_factory):
    """MNIST-format IDX gz files: 256 train / 128 test images of 10 separable classes."""
    root = tmp_path_factory.mktemp("mnist")
    rng = np.random.RandomState(0)
    for prefix, n in (("train", 256), ("t10k", 128)):
        y = rng.randint(0, 10, n)
        x = rng.randint(0, 60, (n, 28, 28))
        for c in range(10):
            x[y == c, 2 * c:2 * c + 4, :] += 180
        _write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), x)
        _write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), y)
    return str(root)


def _png_bytes(array):
    from PIL import Image  # pylint: disable=import-outside-toplevel

    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


@pytest.fixture(scope="session")
def synthetic_cifar10(tmp_path_factory):
    """A .tar.gz of train|test/<class>/NNNN.jpg, as ../shared/datasets/cifar10 ships CIFAR10."""
    root = tmp_path_factory.mktemp("cifar10")
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
    rng = np.random.RandomState(1)
    with tarfile.open(os.path.join(root, "cifar10-jpeg-q75.tar.gz"), "w:gz") as tar:
        for split, per_class in (("train", 6), ("test", 3)):
            for c, name in enumerate(classes):
                for i in range(per_class):
                    image = rng.randint(0, 80, (32, 32, 3))
                    image[:, :, c % 3] += 20 * c
                    data = _png_bytes(image)
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root)


@pytest.fixture(scope="session")
def synthetic_cifar100(tmp_path_factory):
    """CIFAR100 official python batches: cifar-100-python/{train,test}."""
    root = tmp_path_factory.mktemp("cifar100")
    batches = root / "cifar-100-python"
    batches.mkdir()
    rng = np.random.RandomState(2)
    for split, n in (("train", 200), ("test", 100)):
        fine = rng.randint(0, 100, n)
        data = rng.randint(0, 256, (n, 3072)).astype(np.uint8)
        with open(batches / split, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": list(map(int, fine)),
                         b"coarse_labels": list(map(int, fine // 5))}, f)
    return str(root)


@pytest.fixture(scope="session")
def synthetic_imagenet(tmp_path_factory):
    """An image-folder tree train|val/<wnid>/*.JPEG with 6 classes of small images."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.RandomState(3)
    for split, per_class in (("train", 4), ("val", 2)):
        for c in range(6):
            d = root / split / f"n0000{c:04d}"
            d.mkdir(parents=True)
            for i in range(per_class):
                (d / f"img_{i}.JPEG").write_bytes(_png_bytes(rng.randint(0, 256, (40, 48, 3))))
    return str(root)
