"""tfdisc: discretization defences against adversarial examples.

Importing tfdisc selects legacy Keras (``TF_USE_LEGACY_KERAS=1``) so that larq
works; import it before TensorFlow (see ``tfdisc._keras_guard``).
"""
from tfdisc._keras_guard import Keras3Error, ensure_legacy_keras

ensure_legacy_keras()

from tfdisc import _startup  # noqa: E402  pylint: disable=wrong-import-position

_startup.import_tensorflow()  # quiet start-up lines under `python -m tfdisc.…` only

# pylint: disable=wrong-import-position
from tfdisc import attacks, data, evaluate, layers, models, quantize  # noqa: E402
from tfdisc._version import __version__  # noqa: E402

# Registers every tfdisc Keras layer, the packed ones included, so that saved
# models load after `import tfdisc`; tfdisc.convert loads the op library only
# when a packed layer first runs.
from tfdisc import convert  # noqa: E402

# Loaded on first attribute access: tfdisc.ops builds/loads the C++ library,
# and nothing else in tfdisc needs it.
_LAZY_SUBMODULES = ("certify", "export", "ops", "training", "tuning")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        import importlib  # pylint: disable=import-outside-toplevel

        return importlib.import_module(f"tfdisc.{name}")
    raise AttributeError(f"module 'tfdisc' has no attribute {name!r}")


__all__ = [
    "Keras3Error",
    "__version__",
    "attacks",
    "convert",
    "data",
    "evaluate",
    "layers",
    "models",
    "quantize",
]
