"""Readers of the on-disk dataset formats, one module per format family.

``tfdisc.data`` finds the files and builds pipelines; these modules read them,
each checking what its format allows, and each raising ``DataError`` naming
the file:

* ``idx``: IDX files (MNIST format), raw or gzip; the header's shape must
  match the data size, and images and labels must agree. Layout ``MnistFiles``.
* ``cifar``: CIFAR python batches (through ``safe_pickle.safe_unpickle``, a
  restricted unpickler: a crafted file runs nothing and imports nothing) and
  binary batches. Layouts ``CifarPython``, ``CifarBinary``.
* ``image_folder``: ``train|test/<class>/<image>`` trees, labelled with one
  ``class_map`` per dataset. Layout ``ImageFolder``.
* ``archive``: tar archives of such a tree; an archive must end with its
  end-of-archive block, and a gzip stream is read to its end for the CRC and
  length check. Layout ``ImageArchive``.
* ``cache``: the ``.npz`` cache of decoded arrays.

A *layout* (``base.Layout``) is how a dataset's files lie in a directory; a
registry entry of ``tfdisc.datasets`` lists its layouts. A new file format is
a new module here with a reader and a ``Layout``.
"""
from tfdisc.data_formats.archive import ImageArchive, read_image_archive
from tfdisc.data_formats.base import DataError, Found, Layout
from tfdisc.data_formats.cifar import (CifarBinary, CifarPython, read_cifar_binary,
                                       read_cifar_python)
from tfdisc.data_formats.idx import MnistFiles, read_idx, read_mnist
from tfdisc.data_formats.image_folder import (ImageFolder, class_map, decode_image,
                                              list_image_folder, read_image_folder)
from tfdisc.data_formats.safe_pickle import safe_unpickle

__all__ = ["CifarBinary", "CifarPython", "DataError", "Found", "ImageArchive", "ImageFolder",
           "Layout", "MnistFiles", "class_map", "decode_image", "list_image_folder",
           "read_cifar_binary", "read_cifar_python", "read_idx", "read_image_archive",
           "read_image_folder", "read_mnist", "safe_unpickle"]
