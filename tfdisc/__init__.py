"""tfdisc: discretization defences against adversarial examples.

Importing tfdisc selects legacy Keras (``TF_USE_LEGACY_KERAS=1``) so that larq
works; import it before TensorFlow (see ``tfdisc._keras_guard``).
"""
from tfdisc._keras_guard import Keras3Error, ensure_legacy_keras

ensure_legacy_keras()

# pylint: disable=wrong-import-position
from tfdisc import attacks, data, evaluate, layers, models, quantize  # noqa: E402
from tfdisc._version import __version__  # noqa: E402

# Loaded on first attribute access: tfdisc.ops builds/loads the C++ library,
# and nothing else in tfdisc needs it.
_LAZY_SUBMODULES = ("certify", "convert", "ops", "training")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib  # pylint: disable=import-outside-toplevel

        return importlib.import_module(f"tfdisc.{name}")
    raise AttributeError(f"module 'tfdisc' has no attribute {name!r}")


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
