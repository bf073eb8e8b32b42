"""The dataset registry (issue 27): a new dataset is one ``tfdisc.datasets`` entry.

A tiny dataset registered here, with synthetic files in tmp_path in an existing format,
loads through ``tfdisc.data.load_arrays`` / ``load`` with no other change; a new file
format is one ``Layout``.
"""
import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from tfdisc import data, data_formats, datasets, training


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with open(path, "wb") as f:
        f.write(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _tiny_idx_dir(root, n_train=12, n_test=6, seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.randint(0, 256, (n, 8, 8)).astype(np.uint8)
        y = rng.randint(0, 3, n).astype(np.uint8)
        _write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), x)
        _write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), y)
        out[prefix] = (x, y)
    return out


@pytest.fixture
def register():
    """Registers datasets for one test and removes them afterwards."""
    added = []

    def add(entry, **kwargs):
        added.append(entry.name)
        return datasets.register(entry, **kwargs)

    yield add
    for name in added:
        datasets.REGISTRY.pop(name, None)


def tiny_digits(**kwargs):
    return datasets.Dataset(**{**dict(
        name="tiny_digits", shape=(8, 8, 1), num_classes=3,
        layouts=(data_formats.MnistFiles(),), split_sizes={"train": 12, "test": 6}), **kwargs})


def test_a_registered_dataset_loads_like_a_built_in_one(register, tmp_path):
    arrays = _tiny_idx_dir(str(tmp_path / "tiny_digits"))  # the dataset's sub-directory
    register(tiny_digits(train_eps=0.25))
    assert "tiny_digits" in data.DATASETS
    assert data.info("tiny_digits") == ((8, 8, 1), 3)
    assert data.SPLIT_SIZES["tiny_digits"] == {"train": 12, "test": 6}
    assert training.adversarial_eps("tiny_digits") == 0.25
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = data.load_arrays("tiny_digits", split, data_dir=str(tmp_path))
        np.testing.assert_array_equal(x[..., 0], arrays[prefix][0])
        np.testing.assert_array_equal(y, arrays[prefix][1])
    batches = list(data.load("tiny_digits", "test", data_dir=str(tmp_path), batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 2]
    assert float(np.max(np.concatenate([b[0] for b in batches]))) <= 1.0


def test_a_registered_dataset_gets_the_checks_of_every_dataset(register, tmp_path):
    register(tiny_digits(num_classes=2))
    _tiny_idx_dir(str(tmp_path))  # labels 0..2: outside [0, 2)
    with pytest.raises(data.DataError, match=r"tiny_digits labels must lie in \[0, 2\)"):
        data.load_arrays("tiny_digits", "train", data_dir=str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataError, match="holds no tiny_digits data; expected the four "
                                             "MNIST-format files"):
        data.load_arrays("tiny_digits", "train", data_dir=str(empty))


def test_image_folder_dataset_with_an_official_class_order(register, tmp_path):
    register(datasets.Dataset(
        name="tiny_shapes", shape=(4, 4, 3), num_classes=2, class_names=("zebra", "apple"),
        layouts=(data_formats.ImageFolder(), data_formats.ImageArchive()),
        split_sizes={"train": 4, "test": 2}))
    for split, n in (("train", 2), ("test", 1)):
        for value, cls in ((10, "zebra"), (200, "apple")):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(d / f"{i}.png")
    x, y = data.load_arrays("tiny_shapes", "train", data_dir=str(tmp_path))
    # Official order: zebra = 0 although "apple" sorts first.
    assert sorted(zip(y.tolist(), x[:, 0, 0, 0].tolist())) == [(0, 10), (0, 10), (1, 200),
                                                               (1, 200)]
    assert datasets.get("tiny_shapes").layout_help == (
        "an image-folder tree train|test/<class>/*.png|jpg, or a .tar.gz of such a tree")


class _NpzLayout(data_formats.Layout):
    """A new file format: ``<split>.npz`` holding ``x`` and ``y``."""

    describe = "train.npz and test.npz with arrays x and y"

    def find(self, directory, split, dataset):
        path = os.path.join(directory, f"{split}.npz")
        if not os.path.isfile(path):
            return None

        def read():
            with np.load(path, allow_pickle=False) as f:
                return f["x"], f["y"].astype(np.int64)
        return data_formats.Found("npz", [path], read, path)


def test_a_new_file_format_is_one_layout(register, tmp_path):
    register(datasets.Dataset(name="tiny_npz", shape=(2, 2, 1), num_classes=2,
                              layouts=(_NpzLayout(),), split_sizes={"train": 3, "test": 3}))
    x = np.arange(12, dtype=np.uint8).reshape(3, 2, 2, 1)
    np.savez(tmp_path / "test.npz", x=x, y=np.array([0, 1, 1]))
    got_x, got_y = data.load_arrays("tiny_npz", "test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(got_x, x)
    assert got_y.tolist() == [0, 1, 1]
    with pytest.raises(data.DataError, match="expected train.npz and test.npz with arrays x"):
        data.load_arrays("tiny_npz", "train", data_dir=str(tmp_path))


def test_registry_refuses_bad_entries(register):
    with pytest.raises(ValueError, match="registered already"):
        datasets.register(datasets.get("mnist"))
    with pytest.raises(TypeError, match="Dataset"):
        datasets.register(("mnist", (28, 28, 1), 10))
    with pytest.raises(ValueError, match="`shape` must be"):
        tiny_digits(shape=(8, 8))
    with pytest.raises(ValueError, match="`layouts` must be"):
        tiny_digits(layouts=())
    with pytest.raises(ValueError, match="`split_sizes`"):
        tiny_digits(split_sizes={"train": 12})
    with pytest.raises(ValueError, match="`class_names` must be 3 distinct"):
        tiny_digits(class_names=("a", "b"))
    with pytest.raises(ValueError, match="Unknown dataset 'nope'; available: cifar10, cifar100"):
        data.load_arrays("nope", "train")
    register(tiny_digits())
    datasets.register(tiny_digits(num_classes=4), replace=True)
    assert data.info("tiny_digits") == ((8, 8, 1), 4)
    datasets.unregister("tiny_digits")
    assert "tiny_digits" not in data.DATASETS


def test_built_in_entries_keep_their_values():
    assert {n: (d.shape, d.num_classes, d.tfds_name, d.tfds_test_split)
            for n, d in data.DATASETS.items()} == {
        "mnist": ((28, 28, 1), 10, "mnist", "test"),
        "fashion_mnist": ((28, 28, 1), 10, "fashion_mnist", "test"),
        "cifar10": ((32, 32, 3), 10, "cifar10", "test"),
        "cifar100": ((32, 32, 3), 100, "cifar100", "test"),
        "imagenet2012": ((224, 224, 3), 1000, "imagenet2012", "validation")}
    assert dict(training.DEFAULT_TRAIN_EPS) == {
        "mnist": 0.3, "fashion_mnist": 0.3, "cifar10": 8 / 255, "cifar100": 8 / 255,
        "imagenet2012": 8 / 255}
    assert training.adversarial_eps("not_a_dataset") == 8 / 255
