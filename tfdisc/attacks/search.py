"""The gradient-free quantized search as a registered attack (``tfdisc.certify.search``)."""
import tensorflow as tf

from tfdisc import projection
from tfdisc.attacks import losses
from tfdisc.attacks.registry import register

__all__ = []


# Defaults as tfdisc.certify.search.DEFAULTS (not imported here: certify loads lazily).
@register("quantized_search", params={"restarts": 1, "iterations": 40, "candidates": 16,
                                      "seed": 0},
          describe=lambda p: {**p, "loss": losses.MARGIN_SCORE,
                              "method": "random block coordinate search on the logit "
                                        "margin over reachable quantization levels"},
          uses_gradient=False, graph=False)
def _quantized_search(model, x, y, eps, clip, **params):
    """Gradient-free search over the reachable quantization levels (``tfdisc.certify``)."""
    from tfdisc.certify import quantized_search  # pylint: disable=import-outside-toplevel

    x_adv = quantized_search(model, x.numpy(), y.numpy(), float(eps), clip=clip, **params)
    # The search's candidates are levels it computed; project them like every attack's.
    return projection.project(tf.convert_to_tensor(x_adv, x.dtype), x, eps, clip)
