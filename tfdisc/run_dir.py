"""A run's directory: refusing finished runs, resuming unfinished ones, loading and saving models.

``prepare_output_dir`` never lets a new run write beside an old run's results;
``load_model`` reads only the ``.keras`` format in Keras's safe mode;
``save_model`` writes atomically.
"""
import json
import os
import shutil
import zipfile

import tensorflow as tf

from tfdisc import results

__all__ = ["OUTPUT_FILES", "OutputDirError", "load_model", "model_path", "prepare_output_dir",
           "save_model"]

# What a run writes into its output directory (cleared by ``prepare_output_dir(overwrite=True)``).
OUTPUT_FILES = ("results.json", "flags.json", "config.json", "model.keras", "logs", "backup",
                "workers", "export")
# A directory holding one of these holds a finished run; others may belong to a resumable one.
_FINISHED_FILES = ("results.json", "model.keras")


class OutputDirError(ValueError):
    """The output directory cannot be used (not writable, or holds an earlier run)."""


def prepare_output_dir(path, *, overwrite=False, unique=False, config=None):
    """Creates ``path`` for a run and returns it.

    A directory that holds a finished run (``results.json`` or ``model.keras``)
    is refused, so a new run never leaves an old result or model beside its
    own files. ``overwrite=True`` removes every run file (``OUTPUT_FILES``)
    first; ``unique=True`` picks the first free ``path_1``, ``path_2``, ...
    instead (for default paths). A directory holding an unfinished run (e.g.
    killed during training) is reused so that the same command resumes it,
    but only for the same ``config`` (``Config.identity()``, kept in
    ``config.json``).

    Raises:
      OutputDirError: the directory holds a finished run, or an unfinished run
        of another configuration (and neither option is given), or it cannot
        be created or written.
    """
    def files(p):
        return [f for f in OUTPUT_FILES if os.path.exists(os.path.join(p, f))]

    def finished(p):
        return any(f in _FINISHED_FILES for f in files(p))

    def other_config(p):
        saved = os.path.join(p, "config.json")
        if config is None or not os.path.isfile(saved):
            return bool(files(p)) and config is not None
        with open(saved) as f:
            try:
                return json.load(f) != json.loads(json.dumps(config))
            except ValueError:
                return True

    def busy(p):
        return os.path.isdir(p) and (finished(p) or other_config(p))

    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"Output directory {path!r} exists and is not a directory.")
    if busy(path):
        if unique:
            i = 1
            while busy(f"{path}_{i}") or (os.path.exists(f"{path}_{i}")
                                          and not os.path.isdir(f"{path}_{i}")):
                i += 1
            path = f"{path}_{i}"
        elif overwrite:
            for name in files(path):
                target = os.path.join(path, name)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                else:
                    os.remove(target)
        else:
            what = ("a finished run" if finished(path)
                    else "an unfinished run of another configuration")
            raise OutputDirError(
                f"Output directory {path!r} already holds {what} ({', '.join(files(path))}); "
                "choose another directory, or pass --overwrite to replace it.")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test.{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OutputDirError(f"Output directory {path!r} cannot be written: "
                             f"{e.strerror or e}.") from None
    if config is not None:
        results.write_json(os.path.join(path, "config.json"), config)
    return path


def model_path(path, what="model"):
    """The ``.keras`` file ``load_model`` would read, checked without loading it.

    Raises:
      ValueError: nothing at ``path``, or not a ``.keras`` (zip) file.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise ValueError(f"{what}: no saved model at {path!r}.")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        raise ValueError(f"{what}: {path!r} is not a .keras model file; only the .keras format "
                         "is loaded (.h5 and SavedModel files can run code when loaded).")
    return path


def load_model(path, what="model"):
    """Loads a saved ``.keras`` model (a file, or a directory holding model.keras).

    Only the ``.keras`` zip format is read, in Keras's safe mode: legacy
    ``.h5`` and SavedModel files can carry Python code (e.g. a ``Lambda``
    layer) that loading would run.

    Raises:
      ValueError: nothing at ``path``, another format, or a file that is not a
        loadable model.
    """
    path = model_path(path, what)
    try:
        return tf.keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad file
        raise ValueError(f"{what}: {path!r} is not a loadable Keras model "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") \
            from None


def save_model(model, output_dir):
    """Saves ``model`` as ``output_dir/model.keras`` atomically."""
    path = os.path.join(output_dir, "model.keras")
    tmp = os.path.join(output_dir, f".model.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
