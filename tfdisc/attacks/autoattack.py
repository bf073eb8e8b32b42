"""AutoAttack (Croce & Hein 2020), the standard L∞ version, as one graph-safe attack.

The components run in sequence, each only on the examples no earlier one
broke (nor the clean model): APGD-CE (100 iterations, 1 restart), APGD-T
(targeted DLR, 9 target classes, 100 iterations each, 1 restart), Square
(5000 queries, p_init 0.8). The reference's third component, FAB-T, is not
implemented (its minimal-perturbation search rarely adds to the other three
at a fixed ε; Croce & Hein report 0–0.1 points). The result is the per-example
worst case: an adversarial image wherever any component found one, else
APGD-CE's point of highest loss.

APGD-T needs ≥ 4 classes; on a model with fewer it is skipped (logged), and
the ensemble is APGD-CE then Square. ``sign_gradient`` applies to the APGD
components (Square uses no gradient). ``stages`` gives the robust examples
after each component; it is the registered attack's ``stages_fn``, so a sweep
(``tfdisc.evaluate.sweep``) records the accuracy after each component next to
the ensemble's, on the same images.
"""
from absl import logging
import tensorflow as tf

from tfdisc.attacks import apgd
from tfdisc.attacks import losses
from tfdisc.attacks import square
from tfdisc.attacks import surrogate
from tfdisc.attacks.registry import check_count, check_seed, register

__all__ = ["COMPONENTS", "DEFAULTS", "FAMILY", "stages"]

COMPONENTS = ("apgd_ce", "apgd_t", "square")
FAMILY = ("autoattack",) + COMPONENTS  # the ensemble and its components (one test limit)
DEFAULTS = dict(n_iter=100, n_target_classes=9, n_queries=5000, seed=0, sign_gradient="ste")


def _predicted_wrong(model, x, y):
    logits = model(x, training=False)
    return tf.not_equal(tf.argmax(logits, axis=-1, output_type=y.dtype), y)


def components(model):
    """The components that run on ``model`` (APGD-T only with ≥ 4 classes)."""
    classes = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if classes is not None and classes < losses.DLR_TARGETED_CLASSES:
        logging.info("autoattack: %s has %d classes; APGD-T needs %d, so it is skipped.",
                     model.name, classes, losses.DLR_TARGETED_CLASSES)
        return ("apgd_ce", "square")
    return COMPONENTS


def stages(model, x, y, eps, clip, n_iter, n_target_classes, n_queries, seed, sign_gradient):
    """Runs the ensemble on checked inputs (graph-safe).

    Returns:
      ``(x_adv, robust)``: the adversarial images and a dict
      ``{"clean": mask, component: mask, ...}`` of the examples still correctly
      classified after each stage (cumulative, in the order run).
    """
    rho = apgd.DEFAULTS["rho"]
    run = {
        "apgd_ce": lambda xs, ys: apgd.apgd_ce_graph(model, xs, ys, eps, clip, n_iter, 1, rho,
                                                     seed, sign_gradient),
        "apgd_t": lambda xs, ys: apgd.apgd_t_graph(model, xs, ys, eps, clip, n_iter, 1, rho,
                                                   seed, sign_gradient, n_target_classes),
        "square": lambda xs, ys: square.square_graph(model, xs, ys, eps, clip, n_queries,
                                                     square.DEFAULTS["p_init"], seed),
    }
    fooled = _predicted_wrong(model, x, y)
    robust = {"clean": tf.logical_not(fooled)}
    x_adv = x
    for name in components(model):
        index = tf.where(tf.logical_not(fooled))
        xs, ys = tf.gather_nd(x, index), tf.gather_nd(y, index)
        adv, hit = tf.cond(tf.size(index) > 0, lambda name=name: run[name](xs, ys),
                           lambda: (xs, tf.zeros_like(ys, tf.bool)))
        # Keep a hit; elsewhere the first component's best-loss point.
        keep = tf.logical_not(hit) if name != "apgd_ce" else tf.zeros_like(hit)
        old = tf.gather_nd(x_adv, index)
        x_adv = tf.tensor_scatter_nd_update(
            x_adv, index, tf.where(tf.reshape(keep, [-1] + [1] * (x.shape.rank - 1)), old, adv))
        fooled = tf.tensor_scatter_nd_update(fooled, index, hit)
        robust[name] = tf.logical_not(fooled)
    return x_adv, robust


def _describe(params):
    return {**params, "loss": {"apgd_ce": losses.CE_LOSS, "apgd_t": losses.DLR_TARGETED_LOSS,
                               "square": losses.MARGIN_SCORE},
            "version": "standard", "sequence": list(COMPONENTS),
            "apgd_t": f"needs ≥ {losses.DLR_TARGETED_CLASSES} classes; skipped below",
            "fab_t": "not implemented", "n_restarts": 1, "rho": apgd.DEFAULTS["rho"],
            "p_init": square.DEFAULTS["p_init"]}


@register("autoattack", params=DEFAULTS,
          checks={"n_iter": check_count("n_iter"),
                  "n_target_classes": check_count("n_target_classes"),
                  "n_queries": check_count("n_queries"), "seed": check_seed,
                  "sign_gradient": surrogate.check_sign_gradient},
          describe=_describe, stages=stages, stage_names=components)
def _autoattack(model, x, y, eps, clip, n_iter, n_target_classes, n_queries, seed,
                sign_gradient):
    """AutoAttack (standard): APGD-CE, APGD-T, Square, each on the still-unbroken examples."""
    return stages(model, x, y, eps, clip, n_iter, n_target_classes, n_queries, seed,
                  sign_gradient)[0]
