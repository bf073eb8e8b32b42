"""Image-folder trees ``train|test/<class>/<image>`` and their one class map per dataset.

``val`` and ``validation`` are accepted for ``test``. Labels come from
``class_map``: the sorted class directories of the train split (empty ones
count), or the dataset's official class order when every name found is an
official class name. Images come round robin over the classes: the first image
(by file name) of every class in label order, then the second, and so on
(``round_robin``). A tree has no canonical order, and class by class would make
every prefix of the test set ("the first 500 test images") one class.
``ImageFolder`` is the layout; ``tfdisc.data_formats.archive``
reads tar archives of such a tree with the same helpers. Every reader raises
``DataError`` naming the file.
"""
import io
import os

import numpy as np

from tfdisc.data_formats.base import DataError, Found, Layout

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "class_map", "decode_image", "is_image",
           "list_image_folder", "read_image_folder", "round_robin", "split_dir_names"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def decode_image(data, where, shape):
    """Image file bytes as a uint8 array of ``shape`` (HWC), resized if needed."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("L" if shape[-1] == 1 else "RGB")
            if image.size != (shape[1], shape[0]):
                image = image.resize((shape[1], shape[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception as e:  # PIL raises many types for bad data
        raise DataError(f"Cannot decode image {where}: {e}.") from e
    return array.reshape(shape)


def split_dir_names(split):
    return ("train",) if split == "train" else ("test", "val", "validation")


def is_image(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def class_map(train_classes, split_classes, *, where, split, num_classes, official=None):
    """The dataset's class names in label order, checked against one split's classes.

    Args:
      train_classes: class directory names of the train split, or None when
        the source has no train split.
      split_classes: class directory names of the split being read.
      where: the source, for messages.
      split: the split being read, for messages.
      num_classes: the dataset's number of classes.
      official: the dataset's official class names in label order (CIFAR10),
        used when every name found is one of them.

    Raises:
      DataError: the split holds a class the map does not know, or there is no
        train split and ``split_classes`` is not every class of the dataset.
    """
    found = set(split_classes) | set(train_classes or ())
    if official and found <= set(official):
        classes = list(official)
    elif train_classes is not None:
        classes = sorted(set(train_classes))
    else:
        classes = sorted(set(split_classes))
        if len(classes) != num_classes:
            raise DataError(
                f"{where} has no train split to take the class list from, and its {split} split "
                f"holds {len(classes)} classes, not the dataset's {num_classes}: labels would "
                f"depend on which classes are present. Add train/<class>/ directories (they may "
                f"be empty).")
    unknown = sorted(set(split_classes) - set(classes))
    if unknown:
        raise DataError(
            f"The {split} split of {where} holds classes the training split does not have: "
            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}. Labels come from "
            f"one class map per dataset (the train split's class directories).")
    return classes


def round_robin(labels):
    """The order that takes items round robin over the classes: the indices of ``labels``
    sorted by (rank of the item within its class, label); items of one class keep their
    order. So every prefix holds the classes in equal numbers, as far as they have items."""
    labels = np.asarray(labels, np.int64)
    rank = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        rank[where] = np.arange(len(where))
    return np.lexsort((labels, rank))


def list_image_folder(root, split, *, num_classes, official=None):
    """``(class names, entries)`` of a tree ``root/split/<class>/<image>``, or None.

    ``entries`` are ``(label, path)``, round robin over the classes (``round_robin``),
    each class's images by file name; labels come from ``class_map`` (arguments as there).

    Raises:
      DataError: as ``class_map``, or a split without images.
    """
    def class_dirs(split_dir):
        return sorted(c for c in os.listdir(split_dir)
                      if not c.startswith(".") and os.path.isdir(os.path.join(split_dir, c)))

    split_dir = next((os.path.join(root, s) for s in split_dir_names(split)
                      if os.path.isdir(os.path.join(root, s))), None)
    if split_dir is None:
        return None
    train_dir = os.path.join(root, "train")
    train_classes = class_dirs(train_dir) if os.path.isdir(train_dir) else None
    split_classes = class_dirs(split_dir)
    classes = class_map(train_classes, split_classes, where=root, split=split,
                        num_classes=num_classes, official=official)
    index = {c: i for i, c in enumerate(classes)}
    entries = [(index[c], os.path.join(split_dir, c, f)) for c in split_classes
               for f in sorted(os.listdir(os.path.join(split_dir, c))) if is_image(f)]
    if not entries:
        raise DataError(f"No images under {split_dir}/<class>/ (expected *.png or *.jpg).")
    return classes, [entries[i] for i in round_robin([label for label, _ in entries])]


def read_image_folder(entries, shape):
    """Decodes the ``(label, path)`` entries of ``list_image_folder``."""
    xs = np.empty((len(entries),) + shape, np.uint8)
    ys = np.empty(len(entries), np.int64)
    for i, (label, path) in enumerate(entries):
        with open(path, "rb") as f:
            xs[i] = decode_image(f.read(), path, shape)
        ys[i] = label
    return xs, ys



class ImageFolder(Layout):
    """A tree ``train|test/<class>/<image>`` in the directory itself."""

    def __init__(self, describe="an image-folder tree train|test/<class>/*.png|jpg"):
        self.describe = describe

    def find(self, directory, split, dataset):
        listing = list_image_folder(directory, split, num_classes=dataset.num_classes,
                                    official=dataset.class_names)
        if listing is None:
            return None
        classes, entries = listing
        return Found(f"folder|{'/'.join(classes)}", [p for _, p in entries],
                     lambda: read_image_folder(entries, dataset.shape) + (classes,), directory)
