"""Reading exported artifacts: one loader for every kind, sizes and TFLite op lists.

See ``tfdisc.export`` for the table of artifacts and their loaders.
"""
import json
import os
import zipfile

import numpy as np
import tensorflow as tf

from tfdisc import convert

__all__ = ["artifact_bytes", "lce_module", "lite_ops", "load", "predictor", "saved_model_ops"]

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

    if isinstance(path, (bytes, bytearray)):
        lite_model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path))
    else:
        lite_model = flatbuffer_utils.read_model(path)
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [c.customCode.decode() if c.customCode
             else builtin[max(c.builtinCode, c.deprecatedBuiltinCode)]
             for c in lite_model.operatorCodes]
    counts = {}
    for subgraph in lite_model.subgraphs:
        for op in subgraph.operators:
            name = codes[op.opcodeIndex]
            counts[name] = counts.get(name, 0) + 1
    return counts


# --------------------------------------------------------------------------
# Loading.


def saved_model_ops(path):
    """Names of the tfdisc ops a SavedModel's graph uses."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta in proto.meta_graphs:
        nodes = list(meta.graph_def.node)
        for function in meta.graph_def.library.function:
            nodes.extend(function.node_def)
        ops.update(n.op for n in nodes if n.op.startswith(_OP_PREFIX))
    return ops


def _keras_file_classes(path):
    """Class names in a ``.keras`` archive's config."""
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
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


def load(path, *, compile=False):  # pylint: disable=redefined-builtin
    """Loads a tfdisc artifact, registering what it needs first.

    Args:
      path: A ``.keras``/``.h5`` model (larq or packed), a SavedModel
        directory (plain or packed) or a ``.tflite`` file (stock or LCE).
      compile: Restore the training configuration of a Keras model.

    Returns:
      A ``tf.keras.Model`` for Keras files, the ``tf.saved_model.load`` object
      for SavedModels (call ``.signatures["serving_default"](image=x)``), a
      ``tf.lite.Interpreter`` for stock TFLite files and an LCE
      ``Interpreter`` for LCE files.

    Raises:
      FileNotFoundError: `path` does not exist.
      ImportError: the artifact needs the tfdisc op library or LCE and it is
        unavailable (the message says what to import or install).
      ValueError: unknown artifact kind, or a Keras file naming classes no
        imported package registers.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"tfdisc.export.load: {path!r} does not exist.")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"tfdisc.export.load: directory {path!r} is not a SavedModel "
                             "(no saved_model.pb).")
        needed = saved_model_ops(path)
        if needed:
            _require_ops(f"packed SavedModel {path!r}", needed)
        return tf.saved_model.load(path)
    if path.endswith(".tflite"):
        return _load_tflite(path)
    if not path.endswith((".keras", ".h5")):
        raise ValueError(f"tfdisc.export.load: unknown artifact {path!r}; expected a .keras "
                         "or .h5 file, a SavedModel directory or a .tflite file.")
    if path.endswith(".keras"):
        classes = _keras_file_classes(path)
        needed = {c for c in classes if c.split(">")[-1] in
                  {cls.__name__ for cls in convert.PACKED_LAYERS}}
        if needed:
            _require_ops(f"packed model {path!r}", needed)
    try:
        return tf.keras.models.load_model(path, compile=compile)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"tfdisc.export.load: {path!r} could not be deserialized ({e}). A model "
            "with custom layers needs the package defining them imported first "
            "(tfdisc layers and larq are registered by `import tfdisc`).") from e


def _load_tflite(path):
    with open(path, "rb") as f:
        data = f.read()
    if any(op.startswith("Lce") for op in lite_ops(path)):
        return lce_module().testing.Interpreter(data, num_threads=1)
    interpreter = tf.lite.Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def predictor(path):
    """A ``numpy images -> numpy logits`` function running the artifact at `path`.

    Loads with :func:`load`. TFLite models run one image at a time (their
    batch size is 1 after conversion); the others in one batch.
    """
    artifact = load(path)
    if isinstance(artifact, tf.keras.Model):
        return lambda x: artifact(x, training=False).numpy()
    if isinstance(artifact, tf.lite.Interpreter):
        return _tflite_runner(artifact)
    if hasattr(artifact, "signatures"):
        serve = artifact.signatures["serving_default"]
        return lambda x: serve(image=tf.convert_to_tensor(x))["logits"].numpy()
    return lambda x: np.asarray(artifact.predict(np.asarray(x)))  # LCE Interpreter


def _tflite_runner(interpreter):
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]

    def run(x):
        x = np.asarray(x, inp["dtype"])
        results = []
        for row in x:
            interpreter.set_tensor(inp["index"], row[None])
            interpreter.invoke()
            results.append(interpreter.get_tensor(out["index"])[0].copy())
        return np.stack(results)

    return run
