"""Data loaders: real data slices where present, synthetic files in each format."""
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfdisc import data


# ------------------------------------------------------------- synthetic writers

def write_idx(path, array, compress=True):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(">" + "I" * array.ndim,
                                                                          *array.shape)
    raw = header + array.tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)


def make_mnist_dir(root, n_train=20, n_test=10, compress=True, seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    arrays = {}
    suffix = ".gz" if compress else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=n).astype(np.uint8)
        write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte{suffix}"), images, compress)
        write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte{suffix}"), labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


def make_cifar_python(root, cifar100=False, n=6, seed=0):
    rng = np.random.RandomState(seed)
    folder = os.path.join(root, "cifar-100-python" if cifar100 else "cifar-10-batches-py")
    os.makedirs(folder)
    names = ["train", "test"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    classes = 100 if cifar100 else 10
    out = {}
    for name in names:
        images = rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
        labels = rng.randint(0, classes, size=n)
        batch = {b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072)}
        if cifar100:
            batch[b"fine_labels"] = labels.tolist()
            batch[b"coarse_labels"] = (labels // 5).tolist()
        else:
            batch[b"labels"] = labels.tolist()
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f)
        out[name] = (images, labels)
    return out


def make_cifar_binary(root, cifar100=False, n=4, seed=0):
    rng = np.random.RandomState(seed)
    folder = os.path.join(root, "cifar-100-binary" if cifar100 else "cifar-10-batches-bin")
    os.makedirs(folder)
    names = ["train.bin", "test.bin"] if cifar100 else (
        [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"])
    out = {}
    for name in names:
        images = rng.randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
        labels = rng.randint(0, 100 if cifar100 else 10, size=n).astype(np.uint8)
        planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)
        if cifar100:
            records = np.concatenate([labels[:, None] // 5, labels[:, None], planes], axis=1)
        else:
            records = np.concatenate([labels[:, None], planes], axis=1)
        records.astype(np.uint8).tofile(os.path.join(folder, name))
        out[name] = (images, labels)
    return out


def png_bytes(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_image_tree(root, classes=("cat", "dog", "eel"), per_class=2, size=32, seed=0):
    rng = np.random.RandomState(seed)
    expected = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for label, cls in enumerate(sorted(classes)):
            os.makedirs(os.path.join(root, split, cls))
            for i in range(per_class):
                image = rng.randint(0, 256, size=(size, size, 3)).astype(np.uint8)
                with open(os.path.join(root, split, cls, f"{i:04d}.png"), "wb") as f:
                    f.write(png_bytes(image))
                xs.append(image)
                ys.append(label)
        expected[split] = (np.stack(xs), np.array(ys))
    return expected


# ------------------------------------------------------------- real data

class TestRealData:
    def test_mnist(self, mnist_dir):
        x, y = data.load_arrays("mnist", "test", data_dir=mnist_dir)
        assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8
        assert y.shape == (10000,) and y.dtype == np.int64
        np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
        assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

    def test_mnist_dataset_slice(self, mnist_dir):
        ds = data.load("mnist", "train", data_dir=mnist_dir, batch_size=16, limit=32)
        batches = list(ds)
        assert len(batches) == 2
        x, y = batches[0]
        assert x.dtype == tf.float32 and x.shape == (16, 28, 28, 1)
        assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
        assert y.dtype == tf.int64

    def test_parent_directory_is_accepted(self, mnist_dir):
        _, y = data.load_arrays("mnist", "test", data_dir=os.path.dirname(mnist_dir))
        assert len(y) == 10000

    def test_cifar10_archive(self, cifar10_dir):
        x, y = data.load_arrays("cifar10", "test", data_dir=cifar10_dir)
        assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
        assert np.bincount(y).tolist() == [1000] * 10
        # Standard label order: airplanes (0) are bluer than frogs (6) on average.
        blue_minus_red = x[..., 2].astype(float).mean(axis=(1, 2)) - x[..., 0].mean(axis=(1, 2))
        assert blue_minus_red[y == 0].mean() > blue_minus_red[y == 6].mean() + 10


# ------------------------------------------------------------- synthetic formats

class TestFormats:
    @pytest.mark.parametrize("compress", [True, False])
    def test_mnist_idx(self, tmp_path, compress):
        expected = make_mnist_dir(str(tmp_path), compress=compress)
        for split, prefix in (("train", "train"), ("test", "t10k")):
            x, y = data.load_arrays("mnist", split, data_dir=str(tmp_path))
            np.testing.assert_array_equal(x[..., 0], expected[prefix][0])
            np.testing.assert_array_equal(y, expected[prefix][1])

    def test_fashion_mnist_same_format(self, tmp_path):
        expected = make_mnist_dir(str(tmp_path / "fashion_mnist"))
        x, _ = data.load_arrays("fashion_mnist", "test", data_dir=str(tmp_path))
        np.testing.assert_array_equal(x[..., 0], expected["t10k"][0])

    @pytest.mark.parametrize("name", ["cifar10", "cifar100"])
    def test_cifar_python(self, tmp_path, name):
        expected = make_cifar_python(str(tmp_path), cifar100=name == "cifar100")
        x, y = data.load_arrays(name, "test", data_dir=str(tmp_path))
        key = "test" if name == "cifar100" else "test_batch"
        np.testing.assert_array_equal(x, expected[key][0])
        np.testing.assert_array_equal(y, expected[key][1])
        x, _ = data.load_arrays(name, "train", data_dir=str(tmp_path))
        assert len(x) == (6 if name == "cifar100" else 30)

    @pytest.mark.parametrize("name", ["cifar10", "cifar100"])
    def test_cifar_binary(self, tmp_path, name):
        expected = make_cifar_binary(str(tmp_path), cifar100=name == "cifar100")
        x, y = data.load_arrays(name, "test", data_dir=str(tmp_path))
        key = "test.bin" if name == "cifar100" else "test_batch.bin"
        np.testing.assert_array_equal(x, expected[key][0])
        np.testing.assert_array_equal(y, expected[key][1])

    def test_image_folder(self, tmp_path):
        expected = make_image_tree(str(tmp_path))
        x, y = data.load_arrays("cifar100", "train", data_dir=str(tmp_path))
        np.testing.assert_array_equal(x, expected["train"][0])
        np.testing.assert_array_equal(y, expected["train"][1])

    def test_image_folder_resizes_and_val_split(self, tmp_path):
        make_image_tree(str(tmp_path / "src"), size=40)
        os.rename(tmp_path / "src" / "test", tmp_path / "src" / "val")
        x, y = data.load_arrays("imagenet2012", "test", data_dir=str(tmp_path / "src"))
        assert x.shape == (6, 224, 224, 3) and y.tolist() == [0, 0, 1, 1, 2, 2]

    def test_tar_gz_of_image_folder(self, tmp_path):
        expected = make_image_tree(str(tmp_path / "tree"))
        archive_dir = tmp_path / "archive"
        archive_dir.mkdir()
        with tarfile.open(archive_dir / "images.tar.gz", "w:gz") as tar:
            tar.add(str(tmp_path / "tree" / "train"), arcname="prefix/train")
            tar.add(str(tmp_path / "tree" / "test"), arcname="prefix/test")
        x, y = data.load_arrays("cifar10", "test", data_dir=str(archive_dir))
        np.testing.assert_array_equal(x, expected["test"][0])
        np.testing.assert_array_equal(y, expected["test"][1])

    def test_environment_variable(self, tmp_path, monkeypatch):
        make_mnist_dir(str(tmp_path))
        monkeypatch.setenv("TFDISC_DATA_DIR", str(tmp_path))
        _, y = data.load_arrays("mnist", "test")
        assert len(y) == 10

    def test_argument_overrides_environment(self, tmp_path, monkeypatch):
        make_mnist_dir(str(tmp_path / "a"), n_test=3)
        make_mnist_dir(str(tmp_path / "b"), n_test=5)
        monkeypatch.setenv("TFDISC_DATA_DIR", str(tmp_path / "a"))
        _, y = data.load_arrays("mnist", "test", data_dir=str(tmp_path / "b"))
        assert len(y) == 5

    def test_second_load_uses_cache(self, tmp_path, monkeypatch):
        make_image_tree(str(tmp_path))
        first = data.load_arrays("cifar10", "train", data_dir=str(tmp_path))

        def fail(*args, **kwargs):
            raise AssertionError("decoded again instead of using the cache")

        monkeypatch.setattr(data, "_load_folder", fail)
        second = data.load_arrays("cifar10", "train", data_dir=str(tmp_path))
        np.testing.assert_array_equal(first[0], second[0])

    def test_cache_invalidated_when_files_change(self, tmp_path):
        make_mnist_dir(str(tmp_path), n_test=4, seed=0)
        _, y1 = data.load_arrays("mnist", "test", data_dir=str(tmp_path))
        make_mnist_dir(str(tmp_path), n_test=7, seed=1)
        _, y2 = data.load_arrays("mnist", "test", data_dir=str(tmp_path))
        assert len(y1) == 4 and len(y2) == 7

    def test_dataset_shuffle_and_batch(self, tmp_path):
        make_mnist_dir(str(tmp_path), n_train=20)
        ds = data.load("mnist", "train", data_dir=str(tmp_path), batch_size=8, seed=3)
        labels = np.concatenate([y.numpy() for _, y in ds])
        assert len(labels) == 20
        unshuffled = np.concatenate(
            [y.numpy() for _, y in data.load("mnist", "train", data_dir=str(tmp_path),
                                                shuffle=False)])
        assert sorted(labels) == sorted(unshuffled)


# ------------------------------------------------------------- errors

class TestErrors:
    def test_unknown_dataset(self):
        with pytest.raises(ValueError, match="available: cifar10, cifar100"):
            data.load("svhn", "train", data_dir=".")

    def test_unknown_split(self, tmp_path):
        with pytest.raises(ValueError, match="split"):
            data.load("mnist", "validation", data_dir=str(tmp_path))

    def test_missing_directory(self, tmp_path):
        with pytest.raises(data.DataError, match="not a directory.*t10k-images-idx3-ubyte.gz"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path / "nope"))

    def test_empty_directory(self, tmp_path):
        with pytest.raises(data.DataError, match="holds no mnist data; expected the four"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_missing_labels_file(self, tmp_path):
        make_mnist_dir(str(tmp_path))
        os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
        with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz but not its labels"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_truncated_idx(self, tmp_path):
        make_mnist_dir(str(tmp_path))
        path = tmp_path / "t10k-images-idx3-ubyte.gz"
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[:-100]))
        with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz is truncated"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_corrupt_gzip(self, tmp_path):
        make_mnist_dir(str(tmp_path))
        path = tmp_path / "t10k-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:50])
        with pytest.raises(data.DataError, match="Corrupt gzip file .*t10k-images"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_bad_magic(self, tmp_path):
        make_mnist_dir(str(tmp_path))
        (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"hello world"))
        with pytest.raises(data.DataError, match="not an IDX file"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_count_mismatch(self, tmp_path):
        make_mnist_dir(str(tmp_path))
        write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.zeros(3, np.uint8))
        with pytest.raises(data.DataError, match="10 images but .* 3 labels"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_corrupt_cifar_pickle(self, tmp_path):
        make_cifar_python(str(tmp_path))
        (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
        with pytest.raises(data.DataError, match="test_batch"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_missing_cifar_batch(self, tmp_path):
        make_cifar_python(str(tmp_path))
        os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
        with pytest.raises(data.DataError, match="Missing CIFAR python batch files: .*data_batch_3"):
            data.load_arrays("cifar10", "train", data_dir=str(tmp_path))

    def test_truncated_cifar_binary(self, tmp_path):
        make_cifar_binary(str(tmp_path))
        path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
        path.write_bytes(path.read_bytes()[:-7])
        with pytest.raises(data.DataError, match="test_batch.bin is truncated"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_corrupt_archive(self, tmp_path):
        (tmp_path / "cifar10.tar.gz").write_bytes(b"not a tar archive at all")
        with pytest.raises(data.DataError, match="cifar10.tar.gz"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_corrupt_image(self, tmp_path):
        make_image_tree(str(tmp_path))
        (tmp_path / "test" / "cat" / "0000.png").write_bytes(b"\x89PNG broken")
        with pytest.raises(data.DataError, match="Cannot decode image .*0000.png"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_labels_out_of_range(self, tmp_path):
        make_mnist_dir(str(tmp_path))
        write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.full(10, 12, np.uint8))
        with pytest.raises(data.DataError, match=r"labels must lie in \[0, 10\)"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))

    def test_no_local_copy_and_no_tfds(self, monkeypatch):
        import tensorflow_datasets as tfds

        def offline(*args, **kwargs):
            raise ConnectionError("network unreachable")

        monkeypatch.delenv("TFDISC_DATA_DIR", raising=False)
        monkeypatch.setattr(tfds, "load", offline)
        with pytest.raises(data.DataError, match="No local copy of 'cifar100'.*TFDISC_DATA_DIR"):
            data.load_arrays("cifar100", "test")

    @pytest.mark.parametrize("kwargs", [dict(batch_size=0), dict(limit=0), dict(limit=2.5)])
    def test_bad_batch_size_or_limit(self, tmp_path, kwargs):
        make_mnist_dir(str(tmp_path))
        with pytest.raises(ValueError, match="batch_size|limit"):
            data.load("mnist", "test", data_dir=str(tmp_path), **kwargs)
