"""Attacks as pure functions on a model that returns logits, and their registry.

White-box gradient attacks (FGSM, R-FGSM, L∞ PGD, APGD-CE, APGD-T), the
score-based Square attack, the gradient-free quantized search and the
AutoAttack ensemble. The gradient is taken through the whole model, including
its ``BitDepthQuantization`` layer: straight-through (BPDA) by default, or the
true zero gradient of ``floor`` if the layer was built with ``gradient="none"``
(which shows gradient masking, not robustness). For BNNs, the APGD attacks take
``sign_gradient`` (``tfdisc.attacks.surrogate``) to replace larq's clipped
straight-through gradient of sign by a surrogate over its whole range.

Every attack is also registered by name (``get("pgd")``, ``available()``), so
sweeps (``tfdisc.evaluate``), adversarial training (``tfdisc.training``) and
the activation analysis run any of them the same way, and ``results.json``
records its parameters as the registry describes them. A new attack is one
graph-safe function plus one ``register`` call in a module of this package that
imports ``tfdisc.attacks.registry`` (never this ``__init__``), listed below
(argument checks live in ``tfdisc.checks``)::

    @register("my_attack", params={"steps": 10}, checks={"steps": checks.check_steps},
              describe=lambda p: {"loss": losses.CE_LOSS, **p})
    def _my_attack(model, x, y, eps, clip, steps):
        ...  # returns x_adv with ‖x_adv − x‖∞ ≤ eps inside clip (use `project`)

``describe`` states in results.json the loss (or score) the attack optimizes,
with its parameters. An ensemble also passes ``stages`` and ``stage_names``
(see ``autoattack``), so sweeps record the accuracy after each component.

Modules: ``registry`` (Attack, register, get, available), ``gradient`` (FGSM,
R-FGSM, PGD and shared steps), ``search`` (quantized search), ``losses`` (CE,
DLR, margin), ``surrogate`` (sign-gradient surrogates), ``apgd`` (APGD-CE,
APGD-T), ``square`` (Square), ``autoattack`` (the ensemble).
"""
from tfdisc.attacks.registry import Attack, available, get, register
from tfdisc.attacks.gradient import (default_step_size, fgsm, input_gradient, loss_gradient,
                                     perturb, pgd, project, random_sign, rfgsm, sign_step)
# Imported for their registrations (and as submodules: attacks.apgd, attacks.square, ...).
from tfdisc.attacks import apgd, autoattack, losses, search, square, surrogate  # noqa: F401

__all__ = ["Attack", "available", "default_step_size", "fgsm", "get", "input_gradient",
           "loss_gradient", "perturb", "pgd", "project", "random_sign", "register", "rfgsm",
           "sign_step"]
