"""Checks that a model's layers are what the interval bounds (``bounds``) are written for.

A certificate is a proof about the model as it runs at inference. These checks
refuse, with ``UnsupportedLayerError`` naming the layer and its class, what
would make a bound on the layers' inference behaviour no bound on the model:
layer code outside the libraries the rules were written for (custom layers,
overridden ``call``) unless a rule registered for it (``rules.register``)
vouches for it, calls fixed to ``training=True`` (dropout, noise, batch
statistics), and arithmetic other than float32 (mixed precision).
"""
import tensorflow as tf

__all__ = ["UnsupportedLayerError", "check_call_kwargs", "check_dtype", "check_library_code",
           "library"]


class UnsupportedLayerError(ValueError):
    """A layer the interval propagation cannot bound."""


# Modules whose layer code the rules below were written for. A subclass that overrides `call`
# (or the convolution it calls) in other code may compute anything: it is not bounded.
_LIBRARY_MODULES = ("tf_keras.", "keras.", "tensorflow.", "larq.", "tfdisc.layers")


def library(obj):
    """True if ``obj`` (a class, function or instance) comes from Keras, larq or tfdisc.layers."""
    module = getattr(obj, "__module__", None) or type(obj).__module__ or ""
    return any(module == m.rstrip(".") or module.startswith(m) for m in _LIBRARY_MODULES)


def check_library_code(layer, covered_by=None):
    """Refuses a layer whose computation is user code (a custom class or an overridden call).

    ``covered_by``: the class whose registered bound rule will bound ``layer``; user code that
    class itself has (or inherits) is what that rule was registered for, and is accepted. User
    code below it (a subclass overriding ``call``) is not.
    """
    covered = () if covered_by is None else covered_by.__mro__
    for method in ("call", "convolution_op"):
        owner = next((c for c in type(layer).__mro__ if method in c.__dict__), None)
        if owner is not None and not library(owner) and owner not in covered:
            raise UnsupportedLayerError(
                f"Interval propagation does not support layer {layer.name!r} of type "
                f"{type(layer).__name__}: its `{method}` is user code "
                f"({owner.__module__}.{owner.__name__}), which the bounds cannot see.")


def check_dtype(layer):
    """Refuses a layer that does not compute in float32 (e.g. a ``mixed_float16`` policy): the
    rounding-error widening of the bounds is derived for float32 arithmetic."""
    if isinstance(layer, tf.keras.layers.InputLayer):
        return
    compute = getattr(layer, "compute_dtype", None) or "float32"
    if tf.as_dtype(compute) != tf.float32:
        policy = getattr(getattr(layer, "dtype_policy", None), "name", compute)
        raise UnsupportedLayerError(
            f"Layer {layer.name!r} ({type(layer).__name__}) computes in {compute} (dtype policy "
            f"{policy!r}); certification bounds float32 arithmetic only. Rebuild the model "
            f"under the 'float32' policy (tf.keras.mixed_precision.set_global_policy('float32')) "
            f"and load its weights.")


def check_call_kwargs(layer, kwargs):
    """Refuses a layer whose call is fixed to training mode (``layer(x, training=True)``): it
    would be random (dropout, noise) or use batch statistics (batch norm) whatever the model is
    called with, so no bound on its inference behaviour is a bound on the model."""
    training = (kwargs or {}).get("training")
    if training is None or training is False:
        return
    raise UnsupportedLayerError(
        f"Layer {layer.name!r} ({type(layer).__name__}) is called with training={training!r} "
        f"in the model graph, so it runs in training mode (random, or with batch statistics) "
        f"even at inference; certification cannot bound it. Rebuild the model without "
        f"`training=True` on that call and load its weights.")
