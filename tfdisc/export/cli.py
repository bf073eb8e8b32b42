"""Export flags shared by ``python -m tfdisc.export`` and the training binaries' ``--export``.

Importing this module defines ``--input_dtype`` and ``--float_weights`` once
(absl refuses a flag defined twice); :func:`options` reads them as keyword
arguments of ``tfdisc.export.export``. :func:`check_formats` validates a
list flag of format names (``--formats``, ``--export``) against the
registry of ``tfdisc.export.formats``.
"""
from absl import flags

from tfdisc import export

__all__ = ["check_formats", "options"]

FLAGS = flags.FLAGS

flags.DEFINE_enum("input_dtype", "float32", list(export.INPUT_DTYPES),
                  "Input of the exported signature: float32 images in the model's range, "
                  "or uint8 raw pixels 0-255.")
flags.DEFINE_enum("float_weights", "float32", list(export.FLOAT_WEIGHTS),
                  "Weights of the full-precision layers in the exported flatbuffers (tflite, "
                  "lce): float32, or int8 (per-channel, float activations: TFLite hybrid "
                  "kernels).")


def options():
    """``{"input_dtype": ..., "float_weights": ...}`` from the flags."""
    return {"input_dtype": FLAGS.input_dtype, "float_weights": FLAGS.float_weights}


def check_formats(names, *, allow_empty=False):
    """Validator of a list flag of export format names (registered ones only).

    Returns True, or raises ``flags.ValidationError`` whose message lists
    the registered formats (absl prints it as a usage error, no traceback).
    """
    if allow_empty and not names:
        return True
    try:
        export.parse_formats(names)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    return True
