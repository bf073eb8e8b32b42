"""Reading exported artifacts: one loader for every kind, sizes and TFLite op lists.

See ``tfdisc.export`` for the table of artifacts and their loaders. The
artifacts of the registered formats (``tfdisc.export.formats``) load through
their entry's loader; this module holds the loaders, runners and recognisers
of the built-in kinds (SavedModel directories and TFLite flatbuffers), which
``tfdisc.export`` names in its entries, and the Keras-file loader.
"""
import json
import os
import zipfile

import numpy as np
import tensorflow as tf

from tfdisc import convert, run_dir
from tfdisc.export import formats

__all__ = ["METADATA", "UNSAFE_GRAPH_OPS", "UnsafeModelError", "artifact_bytes", "check_images",
           "compare", "flatbuffer_runner", "is_flatbuffer", "is_saved_model", "lce_module",
           "lite_ops", "load", "load_flatbuffer", "load_saved_model", "owns_flatbuffer",
           "owns_saved_model", "predictor", "saved_model_ops", "saved_model_runner"]

#: The metadata file tfdisc.export writes into every SavedModel it exports (relative path).
METADATA = os.path.join("assets.extra", "tfdisc_export.json")

_OP_PREFIX = "Tfdisc>"
_LCE_EXTRA = ("the 'lce' format needs larq-compute-engine: pip install 'tfdisc[lce]' "
              "(larq-compute-engine>=0.16,<0.17)")


def lce_module():
    """``larq_compute_engine``, or an ImportError naming the ``tfdisc[lce]`` extra."""
    try:
        import larq_compute_engine  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(_LCE_EXTRA) from e
    return larq_compute_engine


def artifact_bytes(path):
    """Size on disk of an artifact (a file, or every file under a directory)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def lite_ops(path):
    """``{op name: count}`` of a TFLite flatbuffer (a path or its bytes): builtin
    names (upper case), or the custom code such as ``LceBconv2d`` for LCE's ops."""
    # pylint: disable=import-outside-toplevel
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    try:
        if isinstance(path, (bytes, bytearray)):
            lite_model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path))
        else:
            lite_model = flatbuffer_utils.read_model(path)
        codes = [c.customCode.decode() if c.customCode
                 else builtin[max(c.builtinCode, c.deprecatedBuiltinCode)]
                 for c in lite_model.operatorCodes]
        counts = {}
        for subgraph in lite_model.subgraphs:
            for op in subgraph.operators:
                name = codes[op.opcodeIndex]
                counts[name] = counts.get(name, 0) + 1
    except Exception as e:  # pylint: disable=broad-except  (flatbuffers raise many types)
        what = "the given bytes" if isinstance(path, (bytes, bytearray)) else repr(path)
        raise ValueError(f"{what}: not a readable TFLite flatbuffer ({type(e).__name__}: "
                         f"{e}); the file is corrupt or truncated.") from None
    return counts


# --------------------------------------------------------------------------
# Loading.

# Ops a SavedModel graph should not need to serve: they read, write or print files, or call
# back into Python. ``saved_model_cli scan`` flags the first three by default.
UNSAFE_GRAPH_OPS = frozenset({"WriteFile", "ReadFile", "PrintV2", "MatchingFiles", "DeleteFile",
                              "PyFunc", "PyFuncStateless", "EagerPyFunc"})


class UnsafeModelError(ValueError):
    """A model file in a format that can run code when loaded, refused without ``allow_unsafe``."""


def _graph_ops(path):
    """Names of every op in a SavedModel's graphs and functions."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel

    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"{path!r} is not a SavedModel (no saved_model.pb).")
    proto = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
    except Exception as e:  # pylint: disable=broad-except  (protobuf raises DecodeError)
        raise ValueError(f"tfdisc.export.load: {path!r} holds a saved_model.pb that is not a "
                         f"readable SavedModel ({type(e).__name__}: {e}).") from None
    ops = set()
    for meta in proto.meta_graphs:
        ops.update(n.op for n in meta.graph_def.node)
        for function in meta.graph_def.library.function:
            ops.update(n.op for n in function.node_def)
    return ops


def saved_model_ops(path):
    """Names of the tfdisc ops a SavedModel's graph uses."""
    return {op for op in _graph_ops(path) if op.startswith(_OP_PREFIX)}


def _keras_file_classes(path):
    """Class names in a ``.keras`` archive's config.

    Raises:
      ValueError: not a zip archive, or one without a readable ``config.json``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
        raise ValueError(
            f"tfdisc.export.load: {path!r} is not a readable .keras model ({type(e).__name__}: "
            f"{e}); the file is corrupt or truncated, or not a Keras model. Save the model "
            "again with model.save(path).") from None
    names = set()

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node:
                names.add(node.get("registered_name") or node["class_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return names


def _require_ops(what, needed):
    try:
        import tfdisc.ops  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError as e:
        raise ImportError(
            f"{what} runs tfdisc C++ ops ({', '.join(sorted(needed))}), which are registered "
            f"by `import tfdisc.ops`; that import failed: {e}. Install tfdisc with its op "
            "library, or export the plain 'saved_model'/'tflite' formats, which need no "
            "tfdisc.") from e


_UNSAFE_HINT = ("Only pass allow_unsafe=True (--allow_unsafe) for a file you trust as you would "
                "trust a program: loading it can execute arbitrary code.")


def load_saved_model(path, *, allow_unsafe=False):
    """Loads a SavedModel directory with ``tf.saved_model.load`` (registering the tfdisc ops
    a packed one needs); refuses graph ops of :data:`UNSAFE_GRAPH_OPS` without `allow_unsafe`."""
    unsafe = sorted(_graph_ops(path) & UNSAFE_GRAPH_OPS)
    if unsafe and not allow_unsafe:
        raise UnsafeModelError(
            f"tfdisc.export.load: SavedModel {path!r} uses op(s) {', '.join(unsafe)}, which "
            "read or write files or call Python; no tfdisc export needs them. "
            + _UNSAFE_HINT)
    needed = saved_model_ops(path)
    if needed:
        _require_ops(f"packed SavedModel {path!r}", needed)
    return tf.saved_model.load(path)


def _is_hdf5(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def load(path, *, compile=False, allow_unsafe=False):  # pylint: disable=redefined-builtin
    """Loads a tfdisc artifact, registering what it needs first.

    Keras models load only from the ``.keras`` format, in Keras's safe mode
    (a ``Lambda`` layer's Python code is refused, not run). Legacy ``.h5``
    files run the Python code they carry when loaded (arbitrary code
    execution), so they are refused unless ``allow_unsafe=True``, whatever
    their name; so are SavedModels whose graph reads, writes or prints files
    or calls Python (:data:`UNSAFE_GRAPH_OPS`). SavedModels load with
    ``tf.saved_model.load`` (TensorFlow graphs, never Keras's Python
    deserialization). An artifact of a registered format
    (``tfdisc.export.formats``) loads with its format's loader.

    Args:
      path: A ``.keras`` model (larq or packed), a run directory holding
        ``model.keras`` (``tfdisc.run_dir.model_path``), a SavedModel
        directory (plain or packed), a ``.tflite`` file (stock or LCE) or
        the artifact of another registered format.
      compile: Restore the training configuration of a Keras model.
      allow_unsafe: Also load ``.h5`` files and SavedModels with the ops
        above, and ``.keras`` files outside safe mode. Only for files you
        trust as you would trust a program.

    Returns:
      A ``tf.keras.Model`` for Keras files, the ``tf.saved_model.load`` object
      for SavedModels (call ``.signatures["serving_default"](image=x)``), a
      ``tf.lite.Interpreter`` for stock TFLite files and an LCE
      ``Interpreter`` for LCE files.

    Raises:
      FileNotFoundError: `path` does not exist.
      UnsafeModelError: (a ValueError) a format that can run code, without
        `allow_unsafe`.
      ImportError: the artifact needs the tfdisc op library or LCE and it is
        unavailable (the message says what to import or install).
      ValueError: unknown artifact kind, a corrupt file (named), or a Keras
        file naming classes no imported package registers.
    """
    return _load(path, compile, allow_unsafe)[0]


def _load(path, compile, allow_unsafe):  # pylint: disable=redefined-builtin
    """``(artifact, its registered Format or None for a Keras model)``; see :func:`load`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"tfdisc.export.load: {path!r} does not exist.")
    if os.path.isdir(path) and formats.for_path(path) is None:
        if not os.path.exists(os.path.join(path, "model.keras")):
            raise ValueError(f"tfdisc.export.load: directory {path!r} is neither a SavedModel "
                             "(no saved_model.pb) nor a run directory (no model.keras).")
        path = run_dir.model_path(path, "tfdisc.export.load")
    # Before any format's loader: an HDF5 file is refused whatever its name.
    if os.path.isfile(path) and (path.endswith((".h5", ".hdf5")) or _is_hdf5(path)) \
            and not allow_unsafe:
        raise UnsafeModelError(
            f"tfdisc.export.load: {path!r} is a legacy HDF5 (.h5) model. Loading one runs "
            "any Python code it carries (e.g. a Lambda layer): arbitrary code execution. "
            "Models load from .keras files only, in Keras's safe mode; re-save a model "
            "you trust with model.save('model.keras'). " + _UNSAFE_HINT)
    fmt = formats.for_path(path)
    if fmt is not None:
        return fmt.load(path, allow_unsafe=allow_unsafe), fmt
    return _load_keras(path, compile, allow_unsafe), None


def _load_keras(path, compile, allow_unsafe):  # pylint: disable=redefined-builtin
    if not (path.endswith((".keras", ".h5", ".hdf5")) or _is_hdf5(path)):
        raise ValueError(f"tfdisc.export.load: unknown artifact {path!r}; expected a .keras "
                         "file, a run directory, a SavedModel directory, a .tflite file or "
                         "the artifact of another registered format ("
                         f"{', '.join(formats.names())}).")
    if path.endswith(".keras") and not _is_hdf5(path):
        classes = _keras_file_classes(path)
        needed = {c for c in classes if c.split(">")[-1] in
                  {cls.__name__ for cls in convert.PACKED_LAYERS}}
        if needed:
            _require_ops(f"packed model {path!r}", needed)
    try:
        return tf.keras.models.load_model(path, compile=compile, safe_mode=not allow_unsafe)
    except Exception as e:  # pylint: disable=broad-except  (Keras raises many types)
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(
            f"tfdisc.export.load: {path!r} could not be loaded ({type(e).__name__}: "
            f"{message}). A corrupt or truncated file: save the model again. A model with "
            "custom layers needs the package defining them imported first (tfdisc layers "
            "and larq are registered by `import tfdisc`).") from e


# --------------------------------------------------------------------------
# The built-in kinds, named by tfdisc.export's format entries.


def is_saved_model(path):
    """Whether `path` is a SavedModel directory (it holds ``saved_model.pb``)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def owns_saved_model(path):
    """Whether `path` is a SavedModel tfdisc.export wrote (it holds :data:`METADATA`)."""
    return os.path.isfile(os.path.join(path, METADATA))


def is_flatbuffer(path):
    """Whether `path` is a ``.tflite`` file."""
    return path.endswith(".tflite") and os.path.isfile(path)


def owns_flatbuffer(path):
    """Whether `path` is a file carrying the TFLite flatbuffer identifier (``TFL3``)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def load_flatbuffer(path, *, allow_unsafe=False):  # pylint: disable=unused-argument
    """A ``tf.lite.Interpreter`` for a stock TFLite file, LCE's ``Interpreter`` for an LCE one
    (told apart by their ops; `allow_unsafe` is unused: a flatbuffer runs no Python)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        lce_file = any(op.startswith("Lce") for op in lite_ops(data))
    except Exception as e:  # pylint: disable=broad-except  (flatbuffers raise many types)
        raise ValueError(f"tfdisc.export.load: {path!r} is not a readable TFLite flatbuffer "
                         f"({type(e).__name__}: {e}); the file is corrupt or truncated.") from None
    if lce_file:
        return lce_module().testing.Interpreter(data, num_threads=1)
    interpreter = tf.lite.Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def saved_model_runner(loaded):
    """``(run, input dtype, input shape)`` of a ``tf.saved_model.load`` object."""
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]["image"]
    return (lambda x: serve(image=tf.convert_to_tensor(x))["logits"].numpy(),
            np.dtype(spec.dtype.as_numpy_dtype), tuple(spec.shape[1:]))


def flatbuffer_runner(interpreter):
    """``(run, input dtype, input shape)`` of a TFLite or LCE interpreter. TFLite models run
    one image at a time (their batch size is 1 after conversion), LCE ones in one batch."""
    if not isinstance(interpreter, tf.lite.Interpreter):  # LCE's Interpreter
        return (lambda x: np.asarray(interpreter.predict(x)),
                np.dtype(interpreter.input_types[0]), tuple(interpreter.input_shapes[0][1:]))
    inp = interpreter.get_input_details()[0]
    return (_tflite_runner(interpreter), np.dtype(inp["dtype"]),
            tuple(int(d) for d in inp["shape"][1:]))


def _keras_runner(model):
    return (lambda x: model(x, training=False).numpy(),
            np.dtype(model.inputs[0].dtype.as_numpy_dtype), tuple(model.input_shape[1:]))


def check_images(x, dtype, shape, what="images"):
    """`x` as an array of `dtype`, or a clear error when that would change its values.

    An export's input is either float images in the model's value range
    (``input_dtype="float32"``) or raw uint8 pixels 0-255
    (``input_dtype="uint8"``). The two scales differ by 255, so no input of
    the other kind is converted silently:

    * a float32 artifact takes floating-point images (any float dtype,
      finite); integer or bool arrays are refused (divide uint8 pixels by
      255 first, or export with ``input_dtype="uint8"``);
    * a uint8 artifact takes integer arrays whose values are all in 0-255
      (converted exactly); float images are refused (even ones holding
      whole numbers: a float [0, 1] image of 0s and 1s is ambiguous).

    Raises:
      TypeError: the wrong kind of number for the artifact.
      ValueError: wrong image shape, values outside 0-255 for a uint8
        artifact, or NaN/infinite values.
    """
    x = np.asarray(x)
    if tuple(x.shape[1:]) != tuple(shape) and None not in shape:
        raise ValueError(f"{what}: expected a batch of images of shape (N, "
                         f"{', '.join(map(str, shape))}), got shape {x.shape}.")
    if dtype == np.uint8:
        if not np.issubdtype(x.dtype, np.integer):
            raise TypeError(
                f"{what}: this artifact was exported with input_dtype='uint8' and takes raw "
                f"pixels 0-255 as integers, got {x.dtype} values. Convert [0, 1] images with "
                "np.round(x * 255).astype(np.uint8), or export with input_dtype='float32'.")
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(f"{what}: uint8 pixels must lie in 0-255, got values in "
                             f"[{x.min()}, {x.max()}].")
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{what}: this artifact takes float images in the model's value range (usually "
            f"[0, 1]), got {x.dtype} values. Divide uint8 pixels by 255, or export with "
            "input_dtype='uint8' to take raw pixels.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: images hold NaN or infinite values.")
    return x.astype(dtype)


def predictor(path, *, allow_unsafe=False):
    """A ``numpy images -> numpy logits`` function running the artifact at `path`.

    Loads with :func:`load` (`allow_unsafe` as there). The function checks
    its input against the artifact's input dtype with :func:`check_images`:
    a uint8 export takes integer pixels 0-255, a float32 one float images;
    the other kind raises a TypeError rather than being cast (a float [0, 1]
    image cast to uint8 is 0). TFLite models run one image at a time (their
    batch size is 1 after conversion); the others in one batch.
    """
    artifact, fmt = _load(path, False, allow_unsafe)
    run, dtype, shape = (fmt.runner if fmt is not None else _keras_runner)(artifact)
    what = f"predictor({os.fspath(path)!r})"

    def checked(x):
        return run(check_images(x, dtype, shape, what))

    checked.input_dtype = dtype
    return checked


def compare(model, paths, pixels):
    """How closely each artifact reproduces `model` on uint8 `pixels`.

    `model` takes images in [0, 1] (tfdisc's default value range): it sees
    ``pixels / 255``, as does every float32 artifact, while uint8 artifacts
    take the pixels themselves.

    Args:
      model: The Keras model the artifacts were exported from.
      paths: ``{format: path}`` as returned by ``tfdisc.export.export``.
      pixels: uint8 images, shape ``(N, *model.input_shape[1:])``.

    Returns:
      ``{format: {"max_logit_diff": float, "argmax_agreement": float}}``.
    """
    pixels = check_images(pixels, np.dtype(np.uint8), tuple(model.input_shape[1:]), "pixels")
    images = pixels.astype(np.float32) / 255.0
    want = model(images, training=False).numpy()
    out = {}
    for fmt, path in paths.items():
        run = predictor(path)
        got = run(pixels if run.input_dtype == np.uint8 else images)
        out[fmt] = {"max_logit_diff": float(np.abs(got - want).max()),
                    "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).mean())}
    return out


def _tflite_runner(interpreter):
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    def run(x):
        results = []
        for row in x:
            interpreter.set_tensor(inp["index"], row[None])
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0].copy())
        return np.stack(results)

    return run
