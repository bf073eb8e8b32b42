"""Export trained tfdisc models: SavedModel, packed SavedModel, TFLite, LCE.

Every artifact keeps the defence inside: the ``BitDepthQuantization`` input
layer is part of the exported graph, so a deployed model discretizes its
input exactly as the Keras model does.

Formats (one function each):

* :func:`saved_model`: the Keras model as a TensorFlow SavedModel with a
  ``serving_default`` signature ``image -> logits``. It uses TensorFlow ops
  only: ``tf.saved_model.load(path)`` works in a process that never imports
  tfdisc or larq.
* :func:`packed_saved_model`: ``tfdisc.convert.to_packed(model)`` saved as a
  SavedModel; it runs the tfdisc C++ ops, so load it with :func:`load`,
  which registers them first (and says what to import when it cannot).
* :func:`tflite`: ``tf.lite.TFLiteConverter`` with TFLite builtin ops only
  (no Select TF ops, no custom ops); weights stay float32 (or int8 with
  ``float_weights="int8"``: TFLite's dynamic-range quantization). The
  portable fallback, run with ``tf.lite.Interpreter``.
* :func:`lce`: a larq-compute-engine flatbuffer (optional extra
  ``pip install tfdisc[lce]``) whose binary convolutions, and binary dense
  layers rewritten as 1x1 binary convolutions
  (:func:`tfdisc.export.rewrite.binary_dense_as_conv`), run on LCE's
  bit-packed kernels. Run it with ``larq_compute_engine.testing.Interpreter``
  (``import larq_compute_engine as lce`` then ``lce.testing.Interpreter``:
  ``testing`` is an attribute of the package, not an importable submodule).
  ``float_weights="int8"`` also stores the kernels of the full-precision
  layers (first and last) as int8 (:func:`tfdisc.export.weights.int8_weights`).

Each format is one :class:`tfdisc.export.formats.Format` entry (writer,
file name, loader, runner, how to recognise its own artifacts, input dtypes,
options, needed extras) in the registry of :mod:`tfdisc.export.formats`;
the four above are registered at the end of this module, and a new format is
one more ``formats.register(...)`` call.

Every function takes ``input_dtype="uint8"`` to export a signature taking
raw camera pixels 0-255 (see :func:`tfdisc.export.rewrite.with_uint8_input`).

Loading (one documented loader per artifact kind):

=====================  ==================================================
``model.keras``        ``tfdisc.export.load(path)`` (or ``import tfdisc``
                       then ``tf.keras.models.load_model``); a run
                       directory holding it works too
packed ``.keras``      ``tfdisc.export.load(path)`` (loads the op library)
SavedModel             ``tf.saved_model.load(path)`` -- no tfdisc needed
packed SavedModel      ``tfdisc.export.load(path)`` (registers the ops)
``.tflite`` (stock)    ``tf.lite.Interpreter(model_path=path)``
LCE ``.tflite``        ``lce.testing.Interpreter(bytes)`` after
                       ``import larq_compute_engine as lce``
=====================  ==================================================

:func:`predictor` wraps any of them in a ``numpy -> numpy`` function that
checks its input against the export's input dtype (:func:`check_images`).

Safety: Keras models load only from ``.keras`` files, in Keras's safe mode.
Legacy ``.h5`` files run the Python code they carry (a ``Lambda`` layer) when
loaded, i.e. arbitrary code execution: :func:`load` refuses them (and
SavedModels whose graph reads, writes or prints files or calls Python)
unless ``allow_unsafe=True``.

:func:`export` refuses a directory that already holds an export unless
``overwrite=True``, which removes that export's artifacts (and nothing else)
first. TensorFlow's INFO log lines (``Assets written to ...``) are silenced
while exporting; warnings and errors still show.

Example:

    >>> import tfdisc
    >>> from tfdisc import export
    >>> model = tfdisc.export.load("out/model.keras")  # doctest: +SKIP
    >>> paths = export.export(model, "out/export", ["saved_model", "tflite"])  # doctest: +SKIP
    >>> logits = export.predictor(paths["tflite"])(images)  # doctest: +SKIP

The command line: ``python -m tfdisc.export --model=OUT/model.keras
--formats=saved_model,packed_saved_model,tflite,lce --output_dir=DIR``
(``--model=OUT`` takes a run directory too).
"""
import contextlib
import functools
import json
import logging
import os
import shutil

import tensorflow as tf
from absl import logging as absl_logging

from tfdisc import convert
from tfdisc.export import artifacts, formats, rewrite, weights
from tfdisc.export.artifacts import (
    UNSAFE_GRAPH_OPS,
    UnsafeModelError,
    artifact_bytes,
    check_images,
    compare,
    lite_ops,
    load,
    predictor,
    saved_model_ops,
)
from tfdisc.export.formats import ExportDirError

__all__ = [
    "ExportDirError",
    "UNSAFE_GRAPH_OPS",
    "UnsafeModelError",
    "check_images",
    "check_options",
    "compare",
    "quiet_tf_logs",
    "FILE_NAMES",
    "FLOAT_WEIGHTS",
    "FORMATS",
    "INPUT_DTYPES",
    "artifact_bytes",
    "export",
    "formats",
    "lce",
    "lite_ops",
    "load",
    "packed_saved_model",
    "parse_formats",
    "predictor",
    "artifacts",
    "rewrite",
    "saved_model",
    "saved_model_ops",
    "tflite",
    "weights",
]

#: The built-in formats (registered below), which :func:`export` writes by default.
FORMATS = ("saved_model", "packed_saved_model", "tflite", "lce")
#: ``{format: artifact name in an export directory}`` of every registered format (live).
FILE_NAMES = formats.FILE_NAMES
INPUT_DTYPES = formats.INPUT_DTYPES
FLOAT_WEIGHTS = weights.FLOAT_WEIGHTS
parse_formats = formats.parse
# export() has an argument named `formats`.
_format, _clear_export_dir = formats.get, formats.clear_export_dir


# --------------------------------------------------------------------------
# Checks and shared steps.


@contextlib.contextmanager
def quiet_tf_logs():
    """Silences TensorFlow's Python INFO lines (``Assets written to ...``) inside the block.

    Raises the ``tensorflow`` and ``absl`` loggers to WARNING for the block
    and restores their levels after: warnings and errors still show. (TensorFlow's C++ log lines
    are set once per process by ``TF_CPP_MIN_LOG_LEVEL``.)
    """
    # TensorFlow logs through its own logger and, in newer modules, through absl's (whose
    # level is its verbosity: TensorFlow itself sets and restores it while saving).
    logger = tf.get_logger()
    level, verbosity = logger.level, absl_logging.get_verbosity()
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    if verbosity > absl_logging.WARNING:
        absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
        absl_logging.set_verbosity(verbosity)


def _quiet(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with quiet_tf_logs():
            return fn(*args, **kwargs)

    return wrapper


def _check_input_dtype(input_dtype):
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"`input_dtype` must be one of {INPUT_DTYPES}, got {input_dtype!r}.")
    return input_dtype


def _check_float_weights(float_weights, caller):
    if float_weights not in FLOAT_WEIGHTS:
        raise ValueError(f"{caller}: `float_weights` must be one of {FLOAT_WEIGHTS}, "
                         f"got {float_weights!r}.")
    return float_weights


def _packed_layers(model):
    return [layer.name for layer in model.layers if isinstance(layer, convert.PACKED_LAYERS)]


def _prepare(model, caller, input_dtype, *, allow_packed=False):
    """Checks `model` and applies the uint8 input option."""
    convert.check_model(model, caller)
    _check_input_dtype(input_dtype)
    packed = _packed_layers(model)
    if packed and not allow_packed:
        raise ValueError(
            f"{caller}: layer(s) {', '.join(packed)} are tfdisc packed layers (custom C++ "
            "ops) and cannot be exported to this format; export the larq model that "
            "tfdisc.convert.to_packed was given.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"{caller}: exporters take a model with one input and one output, "
                         f"got {len(model.inputs)} inputs and {len(model.outputs)} outputs.")
    if input_dtype == "uint8":
        model = rewrite.with_uint8_input(model)
    return model


def _serving_function(model):
    spec = tf.TensorSpec((None, *model.input_shape[1:]), model.inputs[0].dtype, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        return {"logits": model(image, training=False)}

    return serve


def _write_saved_model(model, path, kind, input_dtype):
    if os.path.isdir(path) and os.listdir(path):
        if not artifacts.owns_saved_model(path):
            raise ExportDirError(
                f"Cannot write the SavedModel to {path!r}: the directory holds files not "
                "written by tfdisc.export. Choose an empty or new directory.")
        shutil.rmtree(path)  # an earlier export at the same path: no stale file is kept
    elif os.path.exists(path) and not os.path.isdir(path):
        raise ExportDirError(f"Cannot write the SavedModel to {path!r}: it is a file.")
    module = tf.Module()
    # The variables, not the Keras model: the SavedModel then holds TF
    # functions and variables only and loads without Keras, larq or tfdisc.
    module.weights = list(model.weights)
    module.serve = _serving_function(model)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    _write_metadata(path, kind, model, input_dtype)
    return path


def _write_metadata(path, kind, model, input_dtype):
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    meta = {"format": kind, "model": model.name, "input": "image", "output": "logits",
            "input_dtype": input_dtype, "input_shape": list(model.input_shape[1:]),
            "tfdisc_ops": sorted(artifacts.saved_model_ops(path))}
    with open(os.path.join(path, artifacts.METADATA), "w") as f:
        json.dump(meta, f, indent=1)


def _lite_converter_error(caller, model, error):
    custom = sorted({type(layer).__module__ + "." + type(layer).__name__
                     for layer in model.layers
                     if not type(layer).__module__.startswith(("tf_keras.", "larq.", "tfdisc."))})
    hint = f" Layers from outside tf-keras/larq/tfdisc: {', '.join(custom)}." if custom else ""
    return ValueError(f"{caller}: conversion of {model.name!r} failed.{hint} Converter "
                      f"message: {error}")


def _write_bytes(path, data):
    if os.path.isdir(path):
        raise ExportDirError(f"Cannot write the flatbuffer to {path!r}: it is a directory.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


# --------------------------------------------------------------------------
# Formats.


@_quiet
def saved_model(model, path, *, input_dtype="float32"):
    """Saves `model` as a SavedModel loadable without tfdisc or larq.

    Args:
      model: A built tf-keras Sequential/functional model (larq layers allowed).
      path: Directory to write.
      input_dtype: ``"float32"`` (images in the model's value range) or
        ``"uint8"`` (raw pixels 0-255).

    Returns:
      `path`. Its ``serving_default`` signature maps ``image`` to ``logits``.

    Raises:
      ValueError: Keras 3 or unbuilt model, packed layers, bad `input_dtype`.
    """
    model = _prepare(model, "tfdisc.export.saved_model", input_dtype)
    return _write_saved_model(model, path, "saved_model", input_dtype)


@_quiet
def packed_saved_model(model, path, *, input_dtype="float32", word_bits=32):
    """Converts `model` with ``tfdisc.convert.to_packed`` and saves a SavedModel.

    The SavedModel runs the tfdisc C++ ops: load it with :func:`load`.

    Args:
      model: A larq model (or a model already returned by ``to_packed``).
      path: Directory to write.
      input_dtype: ``"float32"`` or ``"uint8"``.
      word_bits: 32 or 64, see ``to_packed``.

    Returns:
      `path`.
    """
    caller = "tfdisc.export.packed_saved_model"
    convert.check_model(model, caller)
    if not _packed_layers(model):
        model = convert.to_packed(model, word_bits=word_bits)
    model = _prepare(model, caller, input_dtype, allow_packed=True)
    return _write_saved_model(model, path, "packed_saved_model", input_dtype)


def _tflite_bytes(model, caller, float_weights="float32"):
    serve = _serving_function(model)
    concrete = serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if float_weights == "int8":
        # Dynamic-range quantization: int8 weights, float32 activations.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        data = converter.convert()
    except Exception as e:  # pylint: disable=broad-except
        raise _lite_converter_error(caller, model, e) from e
    custom = sorted(op for op in artifacts.lite_ops(data) if not op.isupper())
    if custom:
        raise _lite_converter_error(
            caller, model, f"ops outside the TFLite builtins: {', '.join(custom)}")
    return data


@_quiet
def tflite(model, path, *, input_dtype="float32", float_weights="float32"):
    """Converts `model` to a TFLite flatbuffer with builtin ops only (float32 weights).

    Args:
      model: A built tf-keras model (larq layers allowed; packed layers not).
      path: File to write (``.tflite``).
      input_dtype: ``"float32"`` or ``"uint8"``.
      float_weights: ``"float32"``, or ``"int8"`` for TFLite's dynamic-range
        quantization (int8 weights, float32 activations).

    Returns:
      `path`.

    Raises:
      ValueError: the model needs an op outside the TFLite builtins (the
        message names the layers from outside tf-keras/larq/tfdisc).
    """
    caller = "tfdisc.export.tflite"
    _check_float_weights(float_weights, caller)
    model = _prepare(model, caller, input_dtype)
    return _write_bytes(path, _tflite_bytes(model, caller, float_weights))


@_quiet
def lce(model, path, *, input_dtype="float32", float_weights="float32"):
    """Converts `model` to a larq-compute-engine flatbuffer with binary layers bit-packed.

    Binary dense layers are first rewritten as 1x1 binary convolutions
    (:func:`tfdisc.export.rewrite.binary_dense_as_conv`), since LCE binarizes
    convolutions only.

    Args:
      model: A built tf-keras larq model.
      path: File to write (``.tflite``).
      input_dtype: ``"float32"`` or ``"uint8"``.
      float_weights: ``"float32"``, or ``"int8"`` to store the kernels of
        the full-precision ``FULLY_CONNECTED``/``CONV_2D`` layers as int8
        with per-channel scales (TFLite hybrid kernels;
        :func:`tfdisc.export.weights.int8_weights`). The binary layers are
        bit-packed either way.

    Returns:
      `path`.

    Raises:
      ImportError: larq-compute-engine is not installed (names the extra).
      ValueError: Keras 3 model, packed layers, or the converter failed.
    """
    caller = "tfdisc.export.lce"
    _check_float_weights(float_weights, caller)
    lce_module = artifacts.lce_module()
    model = _prepare(model, caller, input_dtype)
    model, _ = rewrite.binary_dense_as_conv(model)
    try:
        data = lce_module.convert_keras_model(model)
    except Exception as e:  # pylint: disable=broad-except
        raise _lite_converter_error(caller, model, e) from e
    if float_weights == "int8":
        data, _ = weights.int8_weights(data)
    return _write_bytes(path, data)


def check_options(formats, input_dtype="float32", float_weights="float32",
                  caller="tfdisc.export.export"):
    """The registered :class:`~tfdisc.export.formats.Format` entries of `formats`, once every
    option is checked: what :func:`export` checks before it writes anything (a run checks it
    before training).

    Raises:
      ValueError: an unknown format, a bad `input_dtype` or `float_weights`, or an
        `input_dtype` a format does not take.
      ImportError: a format needs an extra that is not installed (named).
    """
    entries = [_format(name) for name in parse_formats(formats)]
    _check_float_weights(float_weights, caller)
    _check_input_dtype(input_dtype)
    for fmt in entries:
        if input_dtype not in fmt.input_dtypes:
            raise ValueError(f"{caller}: format {fmt.name!r} takes input_dtype "
                             f"{' or '.join(fmt.input_dtypes)}, got {input_dtype!r}.")
        if fmt.requires is not None:
            fmt.requires()
    return entries


@_quiet
def export(model, output_dir, formats=FORMATS, *, input_dtype="float32",
           float_weights="float32", overwrite=False):
    """Exports `model` to each format under `output_dir` (names in :data:`FILE_NAMES`).

    `formats` are names of registered formats (:mod:`tfdisc.export.formats`;
    by default the built-in :data:`FORMATS`). `float_weights` (``"float32"``
    or ``"int8"``) applies to the formats taking it (``tflite``, ``lce``);
    the SavedModels keep float32 weights. Every format's `input_dtype`
    support and needed extras are checked before anything is written.

    A directory already holding an export (any artifact of
    :data:`FILE_NAMES`) is refused, so no old artifact is left beside the
    new ones; ``overwrite=True`` first removes the old export's artifacts,
    and only files this module wrote (other files in `output_dir` are kept;
    a file of the same name that is not an export artifact is refused).

    Returns:
      ``{format: path}``.

    Raises:
      ExportDirError: (a ValueError) `output_dir` holds an export and
        `overwrite` is False, or is not a directory.
      ValueError: bad model, format, `input_dtype` or `float_weights`.
      ImportError: a format needs an extra that is not installed (named).
    """
    entries = check_options(formats, input_dtype, float_weights)
    convert.check_model(model, "tfdisc.export.export")
    _clear_export_dir(output_dir, overwrite)
    os.makedirs(output_dir, exist_ok=True)
    options = {"float_weights": float_weights}
    return {fmt.name: fmt.write(model, os.path.join(output_dir, fmt.file_name),
                                input_dtype=input_dtype,
                                **{k: options[k] for k in fmt.options})
            for fmt in entries}


# --------------------------------------------------------------------------
# The built-in formats: one registry entry each.

formats.register(formats.Format(
    name="saved_model", file_name="saved_model", write=saved_model,
    load=artifacts.load_saved_model, runner=artifacts.saved_model_runner,
    matches=artifacts.is_saved_model, owns=artifacts.owns_saved_model,
    description="SavedModel, TensorFlow ops only: tf.saved_model.load, no tfdisc needed"))
formats.register(formats.Format(
    name="packed_saved_model", file_name="packed_saved_model", write=packed_saved_model,
    load=artifacts.load_saved_model, runner=artifacts.saved_model_runner,
    matches=artifacts.is_saved_model, owns=artifacts.owns_saved_model,
    description="tfdisc.convert.to_packed as a SavedModel running the tfdisc C++ ops"))
formats.register(formats.Format(
    name="tflite", file_name="model.tflite", write=tflite, options=("float_weights",),
    load=artifacts.load_flatbuffer, runner=artifacts.flatbuffer_runner,
    matches=artifacts.is_flatbuffer, owns=artifacts.owns_flatbuffer,
    description="TFLite flatbuffer, builtin ops only: tf.lite.Interpreter"))
formats.register(formats.Format(
    name="lce", file_name="model_lce.tflite", write=lce, options=("float_weights",),
    requires=artifacts.lce_module,
    load=artifacts.load_flatbuffer, runner=artifacts.flatbuffer_runner,
    matches=artifacts.is_flatbuffer, owns=artifacts.owns_flatbuffer,
    description="larq-compute-engine flatbuffer, bit-packed binary layers (tfdisc[lce])"))
