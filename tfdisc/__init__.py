"""tfdisc: discretization defences against adversarial examples.

Importing tfdisc selects legacy Keras (``TF_USE_LEGACY_KERAS=1``) so that larq
works; import it before TensorFlow (see ``tfdisc._keras_guard``).
"""
from tfdisc._keras_guard import Keras3Error, ensure_legacy_keras

ensure_legacy_keras()

# pylint: disable=wrong-import-position
from tfdisc import attacks, data, evaluate, layers, models, quantize  # noqa: E402
from tfdisc._version import __version__  # noqa: E402

__all__ = [
    "Keras3Error",
    "__version__",
    "attacks",
    "data",
    "evaluate",
    "layers",
    "models",
    "quantize",
]
