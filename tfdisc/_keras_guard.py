"""Makes larq usable: selects legacy Keras (tf-keras) before TensorFlow loads.

larq is written against Keras 2. Since TensorFlow 2.16, ``tf.keras`` is Keras 3
unless ``TF_USE_LEGACY_KERAS=1`` is set *before* TensorFlow is first imported.
"""
import os
import sys

_ENV = "TF_USE_LEGACY_KERAS"
_TRUE = ("1", "true", "yes")


class Keras3Error(ImportError):
    """TensorFlow was imported with Keras 3, which larq cannot use."""


def _uses_keras3(tf):
    """True if ``tf.keras`` or the ``tensorflow.keras`` import path is Keras 3.

    larq imports from ``tensorflow.keras...``, a path TensorFlow binds at its
    own import time, so an environment variable set afterwards does not help.
    """
    import importlib  # pylint: disable=import-outside-toplevel

    try:
        modules = (tf.keras.layers.Layer.__module__,
                   importlib.import_module("tensorflow.keras").layers.Layer.__module__)
    except Exception:  # pragma: no cover - unexpected TF layouts
        return False
    return not all(m.startswith("tf_keras") for m in modules)


def ensure_legacy_keras():
    """Sets ``TF_USE_LEGACY_KERAS=1`` or explains why it is too late.

    Raises:
      Keras3Error: TensorFlow was already imported and ``tf.keras`` is Keras 3.
    """
    value = os.environ.get(_ENV)
    if value is not None and value.strip().lower() not in _TRUE:
        print(
            f"tfdisc: overriding {_ENV}={value!r} with 1: larq needs legacy Keras.",
            file=sys.stderr,
        )
    os.environ[_ENV] = "1"
    if "tensorflow" not in sys.modules:
        return
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if _uses_keras3(tf):
        raise Keras3Error(
            "tfdisc needs legacy Keras (tf-keras) because larq does not support "
            "Keras 3, but TensorFlow was already imported with Keras 3 as "
            "tf.keras (TF_USE_LEGACY_KERAS was not set when TensorFlow was "
            "imported). Import tfdisc before tensorflow, or set the environment "
            f"variable {_ENV}=1 before starting Python, and make sure the "
            "'tf-keras' package is installed."
        )
