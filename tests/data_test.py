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
from tfdisc.data_formats import image_folder

from tests.testing_utils import Py2StylePickler


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
        # Round robin over the classes: image i of every class, then image i + 1.
        order = [c * per_class + i for i in range(per_class) for c in range(len(classes))]
        expected[split] = (np.stack(xs)[order], np.array(ys)[order])
    return expected


# ------------------------------------------------------------- real data

class TestRealData:
    def test_mnist(self, mnist_dir, caplog):
        with caplog.at_level("INFO"):
            x, y = data.load_arrays("mnist", "test", data_dir=mnist_dir)
        assert "10000 examples, 10 classes (0 980, 1 1135, 2 1032" in caplog.text
        assert "official split" not in caplog.text
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
        assert x.shape == (6, 224, 224, 3) and y.tolist() == [0, 1, 2, 0, 1, 2]

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

        monkeypatch.setattr(image_folder, "read_image_folder", fail)
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
        with pytest.raises(data.DataError, match="Corrupt or truncated gzip file .*t10k-images"):
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


# ------------------------------------------------------------- issue 7: class maps, integrity

def make_tar(tree, archive, mode="w:gz", prefix=""):
    """A tar archive of ``tree``'s train/ and test/ (directory members included)."""
    with tarfile.open(archive, mode) as tar:
        for split in sorted(os.listdir(tree)):
            tar.add(os.path.join(tree, split), arcname=os.path.join(prefix, split))
    return str(archive)


def py2_pickle(obj):
    buf = io.BytesIO()
    Py2StylePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


class TestClassMap:
    """Issue 7 item 2: one class map per dataset, the same for every split."""

    def test_test_split_missing_a_class_keeps_labels(self, tmp_path):
        expected = make_image_tree(str(tmp_path), classes=("ant", "bee", "cat", "dog"))
        for f in os.listdir(tmp_path / "test" / "bee"):
            os.remove(tmp_path / "test" / "bee" / f)
        os.rmdir(tmp_path / "test" / "bee")
        _, y = data.load_arrays("cifar100", "test", data_dir=str(tmp_path))
        # Without one class map, cat and dog shifted down to 1 and 2.
        assert y.tolist() == [0, 2, 3, 0, 2, 3]
        np.testing.assert_array_equal(expected["test"][1][expected["test"][1] != 1], y)

    def test_archive_test_split_missing_a_class_keeps_labels(self, tmp_path):
        make_image_tree(str(tmp_path / "tree"), classes=("ant", "bee", "cat", "dog"))
        for f in os.listdir(tmp_path / "tree" / "test" / "ant"):
            os.remove(tmp_path / "tree" / "test" / "ant" / f)
        os.rmdir(tmp_path / "tree" / "test" / "ant")
        (tmp_path / "a").mkdir()
        make_tar(str(tmp_path / "tree"), tmp_path / "a" / "set.tar.gz", prefix="top")
        _, y = data.load_arrays("cifar100", "test", data_dir=str(tmp_path / "a"))
        assert y.tolist() == [1, 2, 3, 1, 2, 3]

    def test_empty_train_class_directory_counts(self, tmp_path):
        make_image_tree(str(tmp_path), classes=("ant", "cat"))
        (tmp_path / "train" / "bee").mkdir()
        _, y = data.load_arrays("cifar100", "test", data_dir=str(tmp_path))
        assert y.tolist() == [0, 2, 0, 2]

    @pytest.mark.parametrize("archive", [False, True])
    def test_class_unknown_to_train_split_is_an_error(self, tmp_path, archive):
        make_image_tree(str(tmp_path / "tree"))
        os.rename(tmp_path / "tree" / "test" / "eel", tmp_path / "tree" / "test" / "fox")
        root = tmp_path / "tree"
        if archive:
            root = tmp_path / "a"
            root.mkdir()
            make_tar(str(tmp_path / "tree"), root / "set.tar")
        with pytest.raises(data.DataError, match="test split of .* holds classes the training "
                                                 "split does not have: fox"):
            data.load_arrays("cifar100", "test", data_dir=str(root))

    def test_cifar10_names_use_official_order_even_with_classes_missing(self, tmp_path):
        make_image_tree(str(tmp_path), classes=("truck", "airplane", "frog"), per_class=1)
        _, y = data.load_arrays("cifar10", "train", data_dir=str(tmp_path))
        assert y.tolist() == [0, 6, 9]  # airplane, frog, truck in CIFAR10's order

    def test_no_train_split_needs_every_class(self, tmp_path):
        make_image_tree(str(tmp_path), classes=("cat", "dog"))
        for f in os.listdir(tmp_path / "train"):
            for g in os.listdir(tmp_path / "train" / f):
                os.remove(tmp_path / "train" / f / g)
            os.rmdir(tmp_path / "train" / f)
        os.rmdir(tmp_path / "train")
        with pytest.raises(data.DataError,
                           match="no train split .* holds 2 classes, not the dataset.s 100"):
            data.load_arrays("cifar100", "test", data_dir=str(tmp_path))


class TestArchiveIntegrity:
    """Issue 7 item 3: a damaged archive is an error naming the file, never a partial load."""

    @pytest.fixture
    def tree(self, tmp_path):
        make_image_tree(str(tmp_path / "tree"), per_class=3)  # 18 images, as in the probe
        (tmp_path / "a").mkdir()
        return tmp_path

    def test_tar_cut_at_member_boundary(self, tree):
        path = make_tar(str(tree / "tree"), tree / "a" / "set.tar", mode="w")
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        cut = [m for m in members if m.isfile()][6].offset  # six images survive, as in the probe
        raw = open(path, "rb").read()[:cut]
        with open(path, "wb") as f:
            f.write(raw)
        with tarfile.open(path) as tar:  # tarfile itself reads the first members without error
            assert 0 < sum(m.isfile() for m in tar) < 18
        for split in ("train", "test"):
            with pytest.raises(data.DataError, match=r"set\.tar is truncated or corrupt: the "
                                                     r"archive ends at byte \d+ without"):
                data.load_arrays("cifar10", split, data_dir=str(tree / "a"))

    def test_tar_gz_with_flipped_bytes(self, tree):
        path = make_tar(str(tree / "tree"), tree / "a" / "set.tar.gz")
        raw = bytearray(open(path, "rb").read())
        for i in range(len(raw) // 2, len(raw) // 2 + 16):
            raw[i] ^= 0xFF
        with open(path, "wb") as f:
            f.write(raw)
        with pytest.raises(data.DataError, match=r"set\.tar\.gz is truncated or corrupt"):
            data.load_arrays("cifar10", "test", data_dir=str(tree / "a"))

    def test_tar_gz_with_flipped_bytes_after_the_wanted_images(self, tree):
        # A corrupt tail is detected although the train images before it decode fine.
        path = make_tar(str(tree / "tree"), tree / "a" / "set.tar.gz")
        raw = bytearray(open(path, "rb").read())
        raw[-12] ^= 0x01  # inside the deflate stream's last bytes / CRC
        with open(path, "wb") as f:
            f.write(raw)
        with pytest.raises(data.DataError, match=r"set\.tar\.gz is truncated or corrupt"):
            data.load_arrays("cifar10", "train", data_dir=str(tree / "a"))

    def test_tar_gz_truncated(self, tree):
        path = make_tar(str(tree / "tree"), tree / "a" / "set.tar.gz")
        raw = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(raw[:int(len(raw) * 0.9)])
        with pytest.raises(data.DataError, match=r"set\.tar\.gz is truncated or corrupt"):
            data.load_arrays("cifar10", "train", data_dir=str(tree / "a"))

    def test_tar_with_corrupt_header(self, tree):
        path = make_tar(str(tree / "tree"), tree / "a" / "set.tar", mode="w")
        with tarfile.open(path) as tar:
            offset = [m for m in tar.getmembers() if m.isfile()][9].offset
        raw = bytearray(open(path, "rb").read())
        raw[offset + 148:offset + 156] = b"9999999\0"  # header checksum field
        with open(path, "wb") as f:
            f.write(raw)
        with pytest.raises(data.DataError, match=r"set\.tar is truncated or corrupt: invalid "
                                                 r"member header at byte"):
            data.load_arrays("cifar10", "test", data_dir=str(tree / "a"))

    def test_intact_archives_load(self, tree):
        expected = make_image_tree(str(tree / "tree2"), per_class=3, seed=1)
        for mode, name in (("w", "b.tar"), ("w:gz", "c.tgz")):
            (tree / name).mkdir()
            make_tar(str(tree / "tree2"), tree / name / name, mode=mode)
            x, y = data.load_arrays("cifar100", "test", data_dir=str(tree / name))
            np.testing.assert_array_equal(x, expected["test"][0])
            np.testing.assert_array_equal(y, expected["test"][1])


class TestCounts:
    """Issue 7 items 3 and 4: counts checked where the data is read, and reported."""

    def test_python_batch_with_more_images_than_labels(self, tmp_path):
        make_cifar_python(str(tmp_path), n=5)
        path = tmp_path / "cifar-10-batches-py" / "test_batch"
        batch = pickle.loads(path.read_bytes())
        batch[b"labels"] = batch[b"labels"][:3]
        path.write_bytes(pickle.dumps(batch))
        with pytest.raises(data.DataError, match="test_batch holds 5 images but 3 labels"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    @pytest.mark.parametrize("labels, match", [
        ([0.5, 1.0, 2.0], "must be integers of rank 1, got float64"),
        ([[1], [2], [3]], "must be integers of rank 1, got int64 of shape"),
        ("abc", "must be integers of rank 1, got a str"),
    ])
    def test_python_batch_with_bad_labels(self, tmp_path, labels, match):
        make_cifar_python(str(tmp_path), n=3)
        path = tmp_path / "cifar-10-batches-py" / "test_batch"
        batch = pickle.loads(path.read_bytes())
        batch[b"labels"] = labels
        path.write_bytes(pickle.dumps(batch))
        with pytest.raises(data.DataError, match=match):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_python_batch_with_pixels_out_of_range(self, tmp_path):
        make_cifar_python(str(tmp_path), n=2)
        path = tmp_path / "cifar-10-batches-py" / "test_batch"
        batch = pickle.loads(path.read_bytes())
        batch[b"data"] = batch[b"data"].astype(np.int64) + 1  # a 256 would wrap to 0 as uint8
        path.write_bytes(pickle.dumps(batch))
        with pytest.raises(data.DataError, match=r"pixel values must lie in \[0, 255\]"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_cifar10_binary_batch_cut_at_a_record_boundary(self, tmp_path):
        make_cifar_binary(str(tmp_path), n=4)
        path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
        path.write_bytes(path.read_bytes()[:-3073])
        for split in ("train", "test"):
            with pytest.raises(data.DataError, match="different numbers of records .*"
                                                     "data_batch_3.bin: 3"):
                data.load_arrays("cifar10", split, data_dir=str(tmp_path))

    def test_counts_per_class_are_logged(self, tmp_path, caplog):
        make_image_tree(str(tmp_path), classes=("ant", "bee", "cat"))
        for f in os.listdir(tmp_path / "test" / "bee"):
            os.remove(tmp_path / "test" / "bee" / f)
        with caplog.at_level("INFO"):
            data.load_arrays("cifar100", "test", data_dir=str(tmp_path))
        text = caplog.text
        assert "cifar100 test from" in text
        assert "4 examples, 3 classes (ant 2, bee 0, cat 2)" in text
        assert "has no example of 1 classes: bee" in text
        assert "the official split has 10000" in text

    def test_real_cifar10_archive_has_official_counts(self, cifar10_dir, caplog):
        with caplog.at_level("INFO"):
            data.load_arrays("cifar10", "test", data_dir=cifar10_dir)
        assert ("10000 examples, 10 classes (airplane 1000, automobile 1000, bird 1000"
                in caplog.text)
        assert "official split" not in caplog.text

    def test_real_mnist_with_flipped_bytes(self, mnist_dir, tmp_path):
        for name in os.listdir(mnist_dir):
            if name.startswith("t10k"):
                (tmp_path / name).write_bytes(open(os.path.join(mnist_dir, name), "rb").read())
        path = tmp_path / "t10k-labels-idx1-ubyte.gz"
        raw = bytearray(path.read_bytes())
        for i in range(100, 110):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
        with pytest.raises(data.DataError, match="Corrupt or truncated gzip file .*"
                                                 "t10k-labels-idx1-ubyte.gz"):
            data.load_arrays("mnist", "test", data_dir=str(tmp_path))


class TestEmptySplits:
    """Issue 7 item 15: an empty split is our error at load time, not TF's later."""

    def test_image_folder_with_empty_test_split(self, tmp_path):
        make_image_tree(str(tmp_path))
        for cls in os.listdir(tmp_path / "test"):
            for f in os.listdir(tmp_path / "test" / cls):
                os.remove(tmp_path / "test" / cls / f)
        with pytest.raises(data.DataError, match="No images under .*test/<class>/"):
            data.load("cifar10", "test", data_dir=str(tmp_path))

    def test_idx_with_zero_images(self, tmp_path):
        make_mnist_dir(str(tmp_path), n_test=0)
        with pytest.raises(data.DataError, match="mnist test split from .*t10k-images.* holds no "
                                                 "examples"):
            data.load("mnist", "test", data_dir=str(tmp_path))

    def test_python_batch_with_zero_images(self, tmp_path):
        make_cifar_python(str(tmp_path), cifar100=True, n=0)
        with pytest.raises(data.DataError, match="cifar100 test split from .* holds no examples"):
            data.load_arrays("cifar100", "test", data_dir=str(tmp_path))

    @pytest.mark.parametrize("stop", [0, -20])
    def test_from_arrays_empty_slice(self, stop):
        x, y = np.zeros((10, 28, 28, 1), np.uint8), np.zeros(10, np.int64)
        with pytest.raises(ValueError, match="No examples to build a dataset from"):
            data.from_arrays(x[:stop], y[:stop], shuffle=True)

    def test_from_arrays_length_mismatch(self):
        with pytest.raises(ValueError, match="`x` holds 4 examples but `y` holds 3 labels"):
            data.from_arrays(np.zeros((4, 2, 2, 1), np.uint8), np.zeros(3, np.int64))


class TestPickleSafety:
    """Issue 7 item 13: python batches go through a restricted unpickler."""

    @staticmethod
    def payload(marker):
        class WritesMarker:  # pylint: disable=too-few-public-methods
            def __reduce__(self):
                return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

        return pickle.dumps({b"data": WritesMarker(), b"labels": [0]})

    def test_payload_is_live(self, tmp_path):
        # Guard for the test below: plain pickle.load runs the payload.
        marker = tmp_path / "control"
        pickle.loads(self.payload(marker))
        assert marker.read_text() == "ran"

    @pytest.mark.parametrize("batch", ["test_batch", "data_batch_2"])
    def test_malicious_batch_runs_nothing(self, tmp_path, batch):
        make_cifar_python(str(tmp_path))
        marker = tmp_path / "marker"
        (tmp_path / "cifar-10-batches-py" / batch).write_bytes(self.payload(marker))
        split = "test" if batch == "test_batch" else "train"
        with pytest.raises(data.DataError, match=f"{batch}: UnpicklingError: it refers to "
                                                 f"builtins.exec"):
            data.load_arrays("cifar10", split, data_dir=str(tmp_path))
        assert not marker.exists()

    def test_os_system_payload_runs_nothing(self, tmp_path):
        make_cifar_python(str(tmp_path))
        marker = tmp_path / "marker"

        class Shell:  # pylint: disable=too-few-public-methods
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Shell()))
        with pytest.raises(data.DataError, match="test_batch: .*refers to (posix|os).system"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))
        assert not marker.exists()

    def test_missing_module(self, tmp_path):
        make_cifar_python(str(tmp_path))
        (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
            b"\x80\x02cno_such_module\nThing\nq\x00)\x81q\x01.")
        with pytest.raises(data.DataError, match="test_batch: .*no_such_module.Thing"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    def test_object_array_is_refused(self, tmp_path):
        make_cifar_python(str(tmp_path))
        batch = {b"data": np.array([None, 1], dtype=object), b"labels": [0, 1]}
        (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
        with pytest.raises(data.DataError,
                           match="test_batch: .*numpy dtype 'O8' is not a plain number type"):
            data.load_arrays("cifar10", "test", data_dir=str(tmp_path))

    @pytest.mark.parametrize("style", ["py2", 2, 4, 5])
    @pytest.mark.parametrize("labels_as", ["list", "array", "numpy scalars"])
    def test_official_and_numpy_pickles_read(self, tmp_path, style, labels_as):
        rng = np.random.RandomState(0)
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        expected = {}
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = rng.randint(0, 256, (4, 32, 32, 3)).astype(np.uint8)
            labels = rng.randint(0, 10, 4)
            stored = {"list": labels.tolist(), "array": labels,
                      "numpy scalars": [np.int64(v) for v in labels]}[labels_as]
            batch = {"batch_label": f"batch {name}", "labels": stored,
                     "data": images.transpose(0, 3, 1, 2).reshape(4, 3072),
                     "filenames": [f"img_{i}.png" for i in range(4)]}
            if style == "py2":
                raw = py2_pickle(batch)
            else:
                raw = pickle.dumps({k.encode(): v for k, v in batch.items()}, protocol=style)
            (folder / name).write_bytes(raw)
            expected[name] = images, labels
        x, y = data.load_arrays("cifar10", "test", data_dir=str(tmp_path))
        np.testing.assert_array_equal(x, expected["test_batch"][0])
        np.testing.assert_array_equal(y, expected["test_batch"][1])
        x, y = data.load_arrays("cifar10", "train", data_dir=str(tmp_path))
        np.testing.assert_array_equal(y, np.concatenate(
            [expected[f"data_batch_{i}"][1] for i in range(1, 6)]))

    def test_cache_is_read_without_pickle(self, tmp_path):
        make_mnist_dir(str(tmp_path / "d"))
        data.load_arrays("mnist", "test", data_dir=str(tmp_path / "d"))
        cache = os.environ["TFDISC_CACHE_DIR"]
        entries = [f for f in os.listdir(cache) if f.startswith("mnist-test-")]
        marker = tmp_path / "marker"
        for entry in entries:  # replace every mnist test entry with a pickled payload
            evil = np.empty(1, dtype=object)
            evil[0] = type("E", (), {"__reduce__": lambda self: (
                exec, (f"open({str(marker)!r}, 'w').write('ran')",))})()
            np.savez(os.path.join(cache, entry), x=evil, y=evil, allow_pickle=True)
        _, y = data.load_arrays("mnist", "test", data_dir=str(tmp_path / "d"))
        assert len(y) == 10 and not marker.exists()


def test_round_robin_makes_every_prefix_class_balanced():
    """A class-by-class tree (as the CIFAR10 JPEG archive is) must not make "the first N test
    images" one class: items come round robin, each class keeping its own order."""
    labels = np.repeat([0, 1, 2], [3, 2, 3])
    order = image_folder.round_robin(labels)
    assert labels[order].tolist() == [0, 1, 2, 0, 1, 2, 0, 2]
    assert order.tolist() == [0, 3, 5, 1, 4, 6, 2, 7]


def test_real_cifar10_test_prefix_is_class_balanced(cifar10_dir):
    _, y = data.load_arrays("cifar10", "test", data_dir=cifar10_dir)
    assert np.bincount(y[:500], minlength=10).tolist() == [50] * 10
    assert np.bincount(y, minlength=10).tolist() == [1000] * 10
