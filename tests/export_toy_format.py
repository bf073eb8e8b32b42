"""A toy export format for tests/export_registry_test.py: the Keras weights in a ``.npz`` file.

Everything the format needs is the one ``formats.Format`` entry of :func:`entry`; registering it
(:func:`register`) is the only change it takes for ``tfdisc.export.export``/``load``/``predictor``
and the ``--formats``/``--export`` flags to handle it. The command-line test runs
``python -c "from tests import export_toy_format as t; t.register(); t.run_export_cli()" ...``.
"""
import runpy

import numpy as np

import tfdisc  # noqa: F401  (selects legacy Keras before TensorFlow loads)
from tfdisc.export import formats

import tensorflow as tf  # pylint: disable=wrong-import-order

NAME = "toy_npz"
FILE_NAME = "weights.npz"
_MARK = "tfdisc_toy_npz"  # a key only this writer puts in the archive: what `owns` looks for
#: Paths the toy loader was called with (the safety test checks it never sees an HDF5 file).
LOADED = []


def write(model, path, *, input_dtype="float32"):
    """The model's architecture (JSON) and its weights, one array each, in one ``.npz``."""
    assert input_dtype == "float32"  # the entry says so: export() refuses the rest first
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    np.savez(path, **{_MARK: np.array(1), "config": np.array(model.to_json())}, **arrays)
    return path


def load(path, *, allow_unsafe=False):  # pylint: disable=unused-argument
    """Rebuilds the Keras model from the architecture and sets its weights."""
    LOADED.append(path)
    with np.load(path, allow_pickle=False) as archive:
        model = tf.keras.models.model_from_json(str(archive["config"]))
        n = sum(k.startswith("w") for k in archive.files)
        model.set_weights([archive[f"w{i}"] for i in range(n)])
    return model


def runner(model):
    return (lambda x: model(x, training=False).numpy(), np.dtype(np.float32),
            tuple(model.input_shape[1:]))


def owns(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return _MARK in archive.files
    except (OSError, ValueError):
        return False


def entry():
    return formats.Format(
        name=NAME, file_name=FILE_NAME, write=write, load=load, runner=runner,
        matches=lambda path: path.endswith(".npz"), owns=owns, input_dtypes=("float32",),
        description="test: architecture JSON and weights in a .npz")


def register():
    return formats.register(entry())


def run_export_cli():
    """``python -m tfdisc.export`` in this process (after :func:`register`)."""
    runpy.run_module("tfdisc.export", run_name="__main__", alter_sys=True)
