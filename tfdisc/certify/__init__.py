"""Certified robustness of discretized models, a gradient-free attack, and certified training.

Under an L∞ perturbation of radius ε each pixel can reach only the
quantization levels whose bins its interval meets: the reachable quantized
inputs form a box of per-pixel level ranges (``box``). Interval bounds through
the network over that box (``bounds``) give a lower bound on robust accuracy;
branching on the few free pixels (``complete``) decides examples exactly (``dataset``: over a
dataset and an ε grid); the attacks' images are candidate counterexamples (``candidates``); a
search over the same box (``search``) is an attack that uses no gradient and
cannot be masked. ``training.CertifiedTraining`` trains for the bounds.
Each layer type is bounded by one rule (``rules``); ``register_rule`` adds one
for a layer of your own.

Together: certified ≤ true robust accuracy ≤ best attack.
"""
from tfdisc.certify.bounds import (UnsupportedLayerError, check_model, logit_bounds, margin_upper,
                                   register_rule)
from tfdisc.certify.box import Box, input_box, input_quantizer, realize
from tfdisc.certify.complete import STATUSES, Certificate, certify, check_exact, exhaustive
from tfdisc.certify.dataset import robustness, sweep
from tfdisc.certify.rules import BoundRule
from tfdisc.certify.search import quantized_search
from tfdisc.certify.training import CertifiedTraining

__all__ = ["BoundRule", "Box", "Certificate", "CertifiedTraining", "STATUSES",
           "UnsupportedLayerError", "certify", "check_exact", "check_model", "exhaustive",
           "input_box", "input_quantizer", "logit_bounds", "margin_upper", "quantized_search", "realize",
           "register_rule", "robustness", "sweep"]
