"""The dataset registry: one ``Dataset`` entry per dataset, everything about it in one place.

An entry holds what ``tfdisc.data`` needs to find, read and check a dataset
(image shape, number of classes, official class order, the on-disk layouts it
may come in, the official split sizes, its tensorflow-datasets name) and the
defaults of runs on it (``tfdisc.experiments.train --dataset=NAME``: model,
precision, ε grid, batch sizes, top-k; the adversarial-training ε of
``tfdisc.training``).

Adding a dataset is one ``register(Dataset(...))`` call, here for a built-in
one, or in user code before ``tfdisc.data.load``. Its ``layouts`` come from
``tfdisc.data_formats``; a new file format needs a new ``Layout`` there, e.g.::

    from tfdisc import data_formats, datasets

    datasets.register(datasets.Dataset(
        name="emnist_digits", shape=(28, 28, 1), num_classes=10,
        layouts=(data_formats.MnistFiles(),),
        split_sizes={"train": 240000, "test": 40000}))
"""
import dataclasses
from collections.abc import Mapping
from typing import Optional, Tuple

from tfdisc.data_formats import (CifarBinary, CifarPython, ImageArchive, ImageFolder, Layout,
                                 MnistFiles)

__all__ = ["DEFAULT_TRAIN_EPS", "Dataset", "REGISTRY", "SPLITS", "SPLIT_SIZES", "TRAIN_EPS",
           "get", "names", "register", "unregister"]

SPLITS = ("train", "test")
#: Adversarial-training ε of a dataset whose entry does not say (the paper's CIFAR value).
DEFAULT_TRAIN_EPS = 8 / 255


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset.

    Attributes:
      name: the name ``tfdisc.data.load`` and ``--dataset`` take.
      shape: image shape (height, width, channels).
      num_classes: labels lie in ``[0, num_classes)``.
      layouts: ``tfdisc.data_formats.Layout``s tried in order in each
        candidate directory (the data directory, its sub-directory ``name``,
        then those of ``dir_aliases``).
      split_sizes: ``{"train": n, "test": n}`` of the official splits; a local
        copy of another size is logged with a warning (a subset is fine).
      tfds_name: tensorflow-datasets name (default ``name``).
      tfds_test_split: the tensorflow-datasets split read as ``"test"``.
      class_names: official class names in label order, used for an image
        folder whose class directories all bear official names (else sorted
        directory names give the labels).
      dir_aliases: further sub-directory names of a data directory to look in.
      layout_help: words for "expected ..." messages; default the layouts'
        ``describe`` joined.
      train_eps: adversarial-training ε (``--train_eps`` default).
      run_defaults: flag defaults of a run on this dataset (``model``,
        ``precision``, ``epsilons``, ``batch_size``, ...), as its binary sets them.
      top_k: accuracies a run measures, e.g. ``(1, 5)``.
    """
    name: str
    shape: Tuple[int, int, int]
    num_classes: int
    layouts: Tuple[Layout, ...]
    split_sizes: Mapping
    tfds_name: Optional[str] = None
    tfds_test_split: str = "test"
    class_names: Optional[Tuple[str, ...]] = None
    dir_aliases: Tuple[str, ...] = ()
    layout_help: Optional[str] = None
    train_eps: float = DEFAULT_TRAIN_EPS
    run_defaults: Mapping = dataclasses.field(default_factory=dict)
    top_k: Tuple[int, ...] = (1,)

    def __post_init__(self):
        def fix(field, value):
            object.__setattr__(self, field, value)

        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Dataset `name` must be an identifier-like string, got "
                             f"{self.name!r}.")
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if shape is None or len(shape) != 3 or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"Dataset {self.name!r}: `shape` must be (height, width, channels) "
                             f"of positive integers, got {self.shape!r}.")
        fix("shape", shape)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or (
                self.num_classes < 1):
            raise ValueError(f"Dataset {self.name!r}: `num_classes` must be a positive integer, "
                             f"got {self.num_classes!r}.")
        layouts = tuple(self.layouts) if isinstance(self.layouts, (tuple, list)) else ()
        if not layouts or not all(isinstance(l, Layout) for l in layouts):
            raise ValueError(f"Dataset {self.name!r}: `layouts` must be a non-empty sequence of "
                             f"tfdisc.data_formats.Layout, got {self.layouts!r}.")
        fix("layouts", layouts)
        if not isinstance(self.split_sizes, Mapping) or set(self.split_sizes) != set(SPLITS) or \
                not all(isinstance(n, int) and n >= 1 for n in self.split_sizes.values()):
            raise ValueError(f"Dataset {self.name!r}: `split_sizes` must give the official "
                             f"number of examples of {SPLITS}, got {self.split_sizes!r}.")
        fix("split_sizes", dict(self.split_sizes))
        if self.class_names is not None:
            fix("class_names", tuple(self.class_names))
            if len(self.class_names) != self.num_classes or len(set(self.class_names)) != len(
                    self.class_names):
                raise ValueError(f"Dataset {self.name!r}: `class_names` must be "
                                 f"{self.num_classes} distinct names, got {self.class_names!r}.")
        fix("tfds_name", self.tfds_name or self.name)
        fix("dir_aliases", tuple(self.dir_aliases))
        if self.layout_help is None:
            fix("layout_help", ", or ".join(l.describe for l in layouts))
        fix("run_defaults", dict(self.run_defaults))
        fix("top_k", tuple(self.top_k))

    def candidate_subdirs(self):
        """Sub-directories of a data directory that may hold this dataset's files."""
        return (self.name,) + self.dir_aliases


REGISTRY = {}


def register(dataset, *, replace=False):
    """Adds ``dataset`` (a ``Dataset``) to the registry; returns it.

    Raises:
      TypeError: not a ``Dataset``.
      ValueError: the name is taken (pass ``replace=True`` to replace it).
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register takes a tfdisc.datasets.Dataset, got "
                        f"{type(dataset).__name__}.")
    if dataset.name in REGISTRY and not replace:
        raise ValueError(f"Dataset {dataset.name!r} is registered already; pass replace=True "
                         f"to replace it.")
    REGISTRY[dataset.name] = dataset
    return dataset


def unregister(name):
    """Removes a dataset from the registry (e.g. one a test registered)."""
    REGISTRY.pop(get(name).name)


def get(name):
    """The ``Dataset`` registered as ``name``.

    Raises:
      ValueError: no such dataset.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; available: "
                         f"{', '.join(sorted(REGISTRY))}.") from None


def names():
    """The registered dataset names, sorted."""
    return sorted(REGISTRY)


class _View(Mapping):
    """A read-only ``{name: getattr(entry, field)}`` that follows the registry."""

    def __init__(self, field):
        self._field = field

    def __getitem__(self, name):
        if name not in REGISTRY:
            raise KeyError(name)
        return getattr(REGISTRY[name], self._field)

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self):
        return len(REGISTRY)

    def __repr__(self):
        return repr(dict(self))


#: ``{name: {split: official size}}`` of every registered dataset.
SPLIT_SIZES = _View("split_sizes")
#: ``{name: adversarial-training ε}`` of every registered dataset.
TRAIN_EPS = _View("train_eps")


# ---------------------------------------------------------------- the built-in datasets

_MNIST_RUN = dict(model="fcn2", epsilons=["0.1", "0.2", "0.3"])
_CIFAR_EPSILONS = ["1/255", "2/255", "4/255", "8/255", "16/255", "32/255"]
_IMAGE_TREE = (ImageFolder(), ImageArchive())

register(Dataset(
    name="mnist", shape=(28, 28, 1), num_classes=10, layouts=(MnistFiles(),),
    split_sizes={"train": 60000, "test": 10000}, train_eps=0.3, run_defaults=_MNIST_RUN))

register(Dataset(
    name="fashion_mnist", shape=(28, 28, 1), num_classes=10, layouts=(MnistFiles(),),
    split_sizes={"train": 60000, "test": 10000}, train_eps=0.3, run_defaults=_MNIST_RUN))

register(Dataset(
    name="cifar10", shape=(32, 32, 3), num_classes=10,
    layouts=(CifarPython("cifar-10-batches-py", cifar100=False),
             CifarBinary("cifar-10-batches-bin", cifar100=False)) + _IMAGE_TREE,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
    split_sizes={"train": 50000, "test": 10000},
    layout_help="cifar-10-batches-py/ or cifar-10-batches-bin/, or an image-folder tree "
                "train|test/<class>/*.png|jpg, or a .tar.gz of such a tree",
    run_defaults=dict(model="alexnet_cifar", precision="full", epsilons=_CIFAR_EPSILONS)))

register(Dataset(
    name="cifar100", shape=(32, 32, 3), num_classes=100,
    layouts=(CifarPython("cifar-100-python", cifar100=True),
             CifarBinary("cifar-100-binary", cifar100=True)) + _IMAGE_TREE,
    split_sizes={"train": 50000, "test": 10000},
    layout_help="cifar-100-python/ or cifar-100-binary/, or an image-folder tree "
                "train|test/<class>/*.png|jpg, or a .tar.gz of such a tree",
    run_defaults=dict(model="resnet20", precision="xnor", epsilons=_CIFAR_EPSILONS)))

register(Dataset(
    name="imagenet2012", shape=(224, 224, 3), num_classes=1000,
    layouts=(ImageFolder("an image-folder tree train|test/<class>/*.jpg (val accepted for "
                         "test)"), ImageArchive()),
    tfds_test_split="validation", dir_aliases=("imagenet",),
    split_sizes={"train": 1281167, "test": 50000},
    run_defaults=dict(model="alexnet", precision="xnor", batch_size=256, eval_batch_size=100,
                      epsilons=["1/255", "2/255", "4/255", "8/255", "16/255"]),
    top_k=(1, 5)))
