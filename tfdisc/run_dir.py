"""A run's directory: refusing finished runs, resuming unfinished ones, loading and saving models.

``prepare_output_dir`` never lets a new run write beside an old run's results,
nor delete the model it is about to read; ``load_model`` reads only the
``.keras`` format in Keras's safe mode; ``save_model`` writes atomically.

A run writes ``config.json`` first, ``model.keras`` once training has ended
(before evaluation), and ``results.json`` last, each atomically: a directory
holding ``results.json`` holds a finished run with everything in it; one
without is an unfinished run, which the same command resumes. The training
backup (Keras ``BackupAndRestore``) records the configuration it belongs to
(``prepare_backup``) and is discarded only after ``results.json`` is written
(``discard_backup``), so a run killed during evaluation resumes at evaluation.
"""
import json
import os
import shutil
import zipfile

import tensorflow as tf

from tfdisc import layers, models, quantize, results

__all__ = ["BackupError", "OUTPUT_FILES", "OutputDirError", "check_saved_model", "discard_backup",
           "load_model", "model_path", "prepare_backup", "prepare_output_dir", "read_backup_json",
           "save_model", "write_backup_json"]

# What a run writes into its output directory (cleared by ``prepare_output_dir(overwrite=True)``).
OUTPUT_FILES = ("results.json", "flags.json", "config.json", "model.keras", "logs", "backup",
                "workers", "export")
# Written last: a directory holding it holds a finished run (model included, if saved).
_FINISHED_FILES = ("results.json",)
# The configuration a backup belongs to, kept inside the backup directory.
_BACKUP_CONFIG = "config.json"


class OutputDirError(ValueError):
    """The output directory cannot be used (not writable, or holds an earlier run)."""


class BackupError(ValueError):
    """A training backup cannot be resumed (another run's, or unreadable)."""


def prepare_output_dir(path, *, overwrite=False, unique=False, config=None):
    """Creates ``path`` for a run and returns it.

    A directory that holds a finished run (``results.json``) is refused, so a
    new run never leaves an old result or model beside its own files.
    ``overwrite=True`` removes every run file (``OUTPUT_FILES``) of such a
    directory first; ``unique=True`` picks the first free ``path_1``,
    ``path_2``, ... instead (for default paths). A directory holding an
    unfinished run of the same ``config`` (``Config.identity()``, kept in
    ``config.json``), e.g. killed during training or evaluation, is reused
    (even with ``overwrite``) so that the same command resumes it.

    ``overwrite`` never deletes the input of the run about to start: if the
    ``init_from`` or ``transfer_from`` model of ``config`` is one of the files
    it would remove (e.g. re-evaluating ``runs/X`` into ``runs/X`` itself), the
    run is refused before anything is deleted. Re-evaluate into another
    directory instead; the original run and its record stay intact.

    Raises:
      OutputDirError: the directory holds a finished run, or an unfinished run
        of another configuration (and neither option is given), overwriting it
        would delete this run's input model, or it cannot be created or written.
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
            doomed = [os.path.join(path, name) for name in files(path)]
            _refuse_deleting_inputs(path, doomed, config)
            for target in doomed:
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


def _refuse_deleting_inputs(path, doomed, config):
    """OutputDirError if an input model of ``config`` lies in one of the ``doomed`` paths."""
    doomed = [os.path.realpath(d) for d in doomed]
    for key in ("init_from", "transfer_from"):
        source = (config or {}).get(key)
        if not source:
            continue
        if os.path.isdir(source):
            source = os.path.join(source, "model.keras")
        real = os.path.realpath(source)
        if any(real == d or real.startswith(d + os.sep) for d in doomed):
            raise OutputDirError(
                f"--{key}={config[key]} is a file of the output directory {path!r}, which "
                "--overwrite would delete before the run reads it. Nothing was deleted. Write "
                "this run to another --output_dir (the run in "
                f"{path!r} and its results stay as they are).")


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


def check_saved_model(saved, what, *, model, precision, bits, edges=None):
    """Raises ValueError if a loaded model was not made for ``model``, ``precision``, ``bits``.

    The input quantizer's bits are configuration, not weights, so copying a
    2-bit model's weights into an 8-bit model would silently evaluate other
    bits than it was trained for. The bits are read from the saved model's
    ``BitDepthQuantization`` layers; model and precision from its zoo name
    (``fcn2_binary_2b``, see ``tfdisc.models.build``) when it has one. The
    quantizer's ``gradient`` may differ (re-evaluation under another gradient).
    """
    saved_bits = sorted({layer.bits for layer in saved.layers
                         if isinstance(layer, layers.BitDepthQuantization)})
    if saved_bits and saved_bits != [bits]:
        raise ValueError(
            f"{what} quantizes its input to {'/'.join(map(str, saved_bits))} bits, but this run "
            f"has bits={bits}: it would evaluate weights trained for other bits. Pass --bits="
            f"{saved_bits[0]}, or train a model with bits={bits}.")
    saved_edges = {layer.edges for layer in saved.layers
                   if isinstance(layer, layers.BitDepthQuantization)}
    edges = quantize.custom_edges(edges, bits)
    if saved_edges and saved_edges != {edges}:
        theirs = next(iter(saved_edges)) if len(saved_edges) == 1 else sorted(saved_edges, key=str)
        raise ValueError(
            f"{what} quantizes its input with bin edges {_edges_text(theirs)}, but this run "
            f"has {_edges_text(edges)}: it would evaluate weights trained for another "
            "quantizer. Pass the same --input_edges.")
    name = saved.name.rsplit("_", 2)
    if (len(name) == 3 and name[0] in models.available() and name[1] in models.PRECISIONS
            and (name[0], name[1]) != (model, precision)):
        raise ValueError(
            f"{what} is a {name[0]} model of precision {name[1]}, but this run has "
            f"model={model}, precision={precision}. Pass --model={name[0]} "
            f"--precision={name[1]}, or another model.")


def _edges_text(edges):
    return "eq. 2's" if edges is None else str(list(edges))


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


def _checkpoint_dir(backup_dir):
    # Keras's BackupAndRestore keeps the chief's state (what every worker restores) here.
    return os.path.join(backup_dir, "chief")


def prepare_backup(backup_dir, config, *, write=True, recorded_elsewhere=False):
    """Checks the training backup in ``backup_dir`` before a run resumes from it.

    A backup records the ``config`` (``Config.identity()``) of the run that
    made it, in ``backup_dir/config.json``. If ``backup_dir`` holds a
    checkpoint, it must record this same configuration and be readable in
    full; otherwise (no checkpoint yet) ``config`` is recorded there (if
    ``write``; only the chief writes). ``recorded_elsewhere=True`` accepts a
    checkpoint without a recorded configuration when the enclosing run
    directory's ``config.json`` already vouches for it (the default backup
    location inside the output directory).

    Returns:
      True if there is a checkpoint to resume from.

    Raises:
      BackupError: the checkpoint belongs to another configuration (the
        message names both and what differs), records none, or is unreadable
        (truncated or corrupt); the message says how to discard it.
    """
    discard = f"Delete it (rm -r {backup_dir}) to start training over."
    config = json.loads(json.dumps(config))
    ckpt = tf.train.latest_checkpoint(_checkpoint_dir(backup_dir))
    if ckpt is None:
        if write:
            os.makedirs(backup_dir, exist_ok=True)
            results.write_json(os.path.join(backup_dir, _BACKUP_CONFIG), config)
        return False
    saved = read_backup_json(backup_dir, _BACKUP_CONFIG)
    if saved is None and not recorded_elsewhere:
        raise BackupError(f"The training backup {backup_dir!r} records no configuration (no "
                          f"readable {_BACKUP_CONFIG}), so it cannot be checked against this "
                          f"run. {discard}")
    if saved is not None and saved != config:
        diff = ", ".join(f"{k}={saved.get(k)!r} in the backup vs {config.get(k)!r} here"
                         for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k))
        raise BackupError(
            f"The training backup {backup_dir!r} belongs to another run "
            f"({saved.get('model')} {saved.get('precision')} {saved.get('bits')}b on "
            f"{saved.get('dataset')}) than this one ({config.get('model')} "
            f"{config.get('precision')} {config.get('bits')}b on {config.get('dataset')}): "
            f"{diff}. Resuming it would record that run's weights under this run's "
            f"configuration. Pass this run its own --backup_dir, or, if that run is "
            f"abandoned, delete the backup (rm -r {backup_dir}).")
    try:
        reader = tf.train.load_checkpoint(ckpt)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except  (TF raises many types for a bad file)
        raise BackupError(f"The training backup {backup_dir!r} is unreadable ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'truncated or corrupt'}), "
                          f"e.g. a kill while it was written or a full disk. {discard}") \
            from None
    return True


def read_backup_json(backup_dir, name):
    """The JSON file ``name`` kept in ``backup_dir``, or None if absent or unreadable."""
    try:
        with open(os.path.join(backup_dir, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_backup_json(backup_dir, name, obj):
    """Keeps ``obj`` as ``backup_dir/name`` (atomically), discarded with the backup."""
    os.makedirs(backup_dir, exist_ok=True)
    results.write_json(os.path.join(backup_dir, name), obj)


def discard_backup(backup_dir):
    """Deletes the training backup: call only once the run's results are written."""
    shutil.rmtree(backup_dir, ignore_errors=True)
