"""APGD-CE and APGD-T (Croce & Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020), L∞.

One run (``run``): a random start in the ε-ball, then ``n_iter`` steps of
projected sign-gradient ascent with momentum α = 0.75 (the first step without)
and step size 2ε at first. At checkpoints after ``⌈0.22 n⌉`` iterations, then
spaced by ``max(previous − ⌈0.03 n⌉, ⌈0.06 n⌉)`` (the paper's
``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``), an example's step size is
halved and it restarts from its best point when the loss rose in at most
``ρ · k`` of the last ``k`` steps (ρ = 0.75; ``≤`` as the reference code), or when
its step size was not halved at the previous checkpoint and its best loss has
not improved since. Everything is per example and batched; every iterate is
projected exactly (``tfdisc.projection``), so ``‖x_adv − x‖∞ ≤ ε`` inside ``clip``.

The result of an attack is, per example, a misclassified point if one was
found (the first), else the point of highest loss seen (so its loss is never
below the loss at the start). Restarts and target classes run only on the
examples not yet misclassified.

``apgd_t`` needs ≥ 4 classes (its targeted DLR loss uses the 4th largest
logit) and raises ValueError on fewer; ``autoattack`` skips it there with a
logged note.
"""
import tensorflow as tf

from tfdisc import projection
from tfdisc.attacks import losses
from tfdisc.attacks import surrogate
from tfdisc.attacks.registry import check_count, check_fraction, check_seed, register

__all__ = ["DEFAULTS", "checkpoints", "run"]

DEFAULTS = dict(n_iter=100, n_restarts=1, rho=0.75, seed=0, sign_gradient="ste")
MOMENTUM = 0.75


def checkpoints(n_iter):
    """The iterations (1-based counts) after which the step-size condition is checked."""
    k = max(int(0.22 * n_iter), 1)
    decrease, least = max(int(0.03 * n_iter), 1), max(int(0.06 * n_iter), 1)
    points, at = [], k
    while at <= n_iter:
        points.append(at)
        k = max(k - decrease, least)
        at += k
    return points


def _loss_and_grad(model, x, y, loss_fn):
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        loss = loss_fn(logits, y)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, x,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return loss, grad, logits


def _per_example(v, x):
    return tf.reshape(v, tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], 0))


def _random_start(x, eps, low, high, seed):
    t = tf.random.stateless_uniform(tf.shape(x), seed, -1.0, 1.0, dtype=x.dtype)
    scale = tf.reduce_max(tf.abs(tf.reshape(t, [tf.shape(x)[0], -1])), axis=1)
    t = t / _per_example(tf.maximum(scale, 1e-12), x)
    return projection.clip_between(x + eps * t, low, high)


def run(model, x, y, eps, clip, loss_fn, *, n_iter, rho, seed):
    """One APGD run from a random start; graph-safe, on checked inputs.

    Args:
      loss_fn: ``loss_fn(logits, y) -> per-example loss`` to maximize.
      seed: int pair (or [2] int tensor) of the stateless random start.

    Returns:
      ``(x_adv, fooled, x_best, loss_best, loss_start)``: per example the first
      misclassified iterate (else the best-loss one), whether one was found, the
      iterate of highest loss, that loss, and the loss at the random start. The
      iterations stop early once every example is misclassified.
    """
    low, high = projection.ball(x, eps, clip)
    x_adv = _random_start(x, eps, low, high, seed)
    loss, grad, logits = _loss_and_grad(model, x_adv, y, loss_fn)
    fooled = tf.not_equal(tf.argmax(logits, axis=-1, output_type=y.dtype), y)
    first_adv = x_adv
    step = _per_example(tf.fill(tf.shape(x)[:1], 2.0 * eps), x)
    marks = tf.constant(checkpoints(n_iter), tf.int32)
    zeros = tf.zeros(tf.shape(x)[:1], tf.int32)
    state = dict(i=tf.constant(0, tf.int32), x_adv=x_adv, x_old=x_adv, grad=grad, loss=loss,
                 step=step, x_best=x_adv, grad_best=grad, loss_best=loss, first_adv=first_adv,
                 fooled=fooled, rises=zeros, window=tf.constant(0, tf.int32),
                 best_at_check=loss, reduced=tf.ones_like(fooled))

    def body(s):
        momentum = tf.cast(tf.where(s["i"] > 0, MOMENTUM, 1.0), x.dtype)
        z = projection.clip_between(s["x_adv"] + s["step"] * tf.sign(s["grad"]), low, high)
        x_new = projection.clip_between(
            s["x_adv"] + momentum * (z - s["x_adv"]) + (1.0 - momentum) * (s["x_adv"] - s["x_old"]),
            low, high)
        loss_new, grad_new, logits_new = _loss_and_grad(model, x_new, y, loss_fn)
        now_fooled = tf.not_equal(tf.argmax(logits_new, axis=-1, output_type=y.dtype), y)
        keep_first = _per_example(s["fooled"], x)
        first_adv = tf.where(keep_first, s["first_adv"], x_new)
        fooled = s["fooled"] | now_fooled
        better = loss_new > s["loss_best"]
        better_x = _per_example(better, x)
        x_best = tf.where(better_x, x_new, s["x_best"])
        grad_best = tf.where(better_x, grad_new, s["grad_best"])
        loss_best = tf.where(better, loss_new, s["loss_best"])
        rises = s["rises"] + tf.cast(loss_new > s["loss"], tf.int32)
        window = s["window"] + 1
        i = s["i"] + 1
        at_check = tf.reduce_any(tf.equal(marks, i))
        oscillating = tf.cast(rises, x.dtype) <= rho * tf.cast(window, x.dtype)
        stalled = tf.logical_not(s["reduced"]) & (s["best_at_check"] >= loss_best)
        halve = at_check & (oscillating | stalled)
        halve_x = _per_example(halve, x)
        return dict(
            i=i, x_old=s["x_adv"],
            x_adv=tf.where(halve_x, x_best, x_new), grad=tf.where(halve_x, grad_best, grad_new),
            loss=loss_new, step=tf.where(halve_x, s["step"] / 2.0, s["step"]),
            x_best=x_best, grad_best=grad_best, loss_best=loss_best, first_adv=first_adv,
            fooled=fooled, rises=tf.where(at_check, tf.zeros_like(rises), rises),
            window=tf.where(at_check, 0, window),
            best_at_check=tf.where(at_check, loss_best, s["best_at_check"]),
            reduced=tf.where(at_check, halve, s["reduced"]))

    # Once every example is misclassified the result (their first adversarial points) is fixed.
    state = tf.while_loop(
        lambda s: (s["i"] < n_iter) & tf.logical_not(tf.reduce_all(s["fooled"])),
        lambda s: (body(s),), (state,))[0]
    x_out = tf.where(_per_example(state["fooled"], x), state["first_adv"], state["x_best"])
    return x_out, state["fooled"], state["x_best"], state["loss_best"], loss


def _on_unbroken(fooled, x, y, attack):
    """Runs ``attack(x_sub, y_sub) -> (x_adv_sub, fooled_sub)`` on the unbroken examples only."""
    index = tf.where(tf.logical_not(fooled))
    x_sub, y_sub = tf.gather_nd(x, index), tf.gather_nd(y, index)
    x_new, fooled_new = tf.cond(
        tf.size(index) > 0, lambda: attack(x_sub, y_sub),
        lambda: (x_sub, tf.zeros_like(y_sub, tf.bool)))
    return index, x_new, fooled_new


def _restarts(model, x, y, eps, clip, loss_for, n_iter, n_restarts, rho, seed, stream):
    """Best of ``n_restarts`` runs, each on the examples no earlier run broke."""
    x_adv, fooled, _, _, _ = run(model, x, y, eps, clip, loss_for(x, y), n_iter=n_iter, rho=rho,
                                 seed=tf.stack([tf.cast(seed, tf.int32), stream]))
    for r in range(1, n_restarts):
        def attack(xs, ys, r=r):
            adv, hit, _, _, _ = run(model, xs, ys, eps, clip, loss_for(xs, ys), n_iter=n_iter,
                                    rho=rho, seed=tf.stack([tf.cast(seed, tf.int32), stream + r]))
            return adv, hit
        index, adv, hit = _on_unbroken(fooled, x, y, attack)
        # x_adv's unbroken rows are still the originals' best-loss points: take a hit only.
        old = tf.gather_nd(x_adv, index)
        x_adv = tf.tensor_scatter_nd_update(x_adv, index,
                                            tf.where(_per_example(hit, adv), adv, old))
        fooled = tf.tensor_scatter_nd_update(fooled, index, hit)
    return x_adv, fooled


def apgd_ce_graph(model, x, y, eps, clip, n_iter, n_restarts, rho, seed, sign_gradient):
    """APGD-CE on checked inputs; returns ``(x_adv, fooled)`` (graph-safe)."""
    with surrogate.sign_gradient(model, sign_gradient):
        return _restarts(model, x, y, eps, clip, lambda xs, ys: losses.cross_entropy,
                         n_iter, n_restarts, rho, seed, stream=0)


def apgd_t_graph(model, x, y, eps, clip, n_iter, n_restarts, rho, seed, sign_gradient,
                 n_target_classes):
    """APGD-T (targeted DLR, the top ``n_target_classes`` other classes); ``(x_adv, fooled)``."""
    classes = model.output_shape[-1]
    losses.check_classes(classes, losses.DLR_TARGETED_CLASSES, "apgd_t")
    with surrogate.sign_gradient(model, sign_gradient):
        clean_logits = model(x, training=False)
        fooled = tf.not_equal(tf.argmax(clean_logits, axis=-1, output_type=y.dtype), y)
        x_adv = x
        first = True
        for rank in range(1, min(n_target_classes, classes - 1) + 1):
            target = losses.target_classes(clean_logits, y, rank)

            def attack(xs, ys, ts, rank=rank):
                def loss_for(_, __):
                    return lambda logits, labels: losses.dlr_targeted(logits, labels, ts)
                return _restarts(model, xs, ys, eps, clip, loss_for, n_iter, n_restarts, rho,
                                 seed, stream=1000 * rank)
            if first:  # every example: non-fooled ones keep this run's best-loss point
                x_adv, fooled_now = attack(x, y, target)
                fooled = fooled | fooled_now
                first = False
                continue
            index = tf.where(tf.logical_not(fooled))
            ts = tf.gather_nd(target, index)
            xs, ys = tf.gather_nd(x, index), tf.gather_nd(y, index)
            adv, hit = tf.cond(tf.size(index) > 0, lambda: attack(xs, ys, ts),
                               lambda: (xs, tf.zeros_like(ys, tf.bool)))
            old = tf.gather_nd(x_adv, index)
            x_adv = tf.tensor_scatter_nd_update(x_adv, index,
                                                tf.where(_per_example(hit, adv), adv, old))
            fooled = tf.tensor_scatter_nd_update(fooled, index, hit)
    return x_adv, fooled


CHECKS = {"n_iter": check_count("n_iter"), "n_restarts": check_count("n_restarts"),
          "rho": check_fraction("rho"), "seed": check_seed,
          "sign_gradient": surrogate.check_sign_gradient,
          "n_target_classes": check_count("n_target_classes")}


@register("apgd_ce", params=DEFAULTS, checks=CHECKS,
          describe=lambda p: {**p, "loss": losses.CE_LOSS, "momentum": MOMENTUM,
                              "initial_step": "2*eps"})
def _apgd_ce(model, x, y, eps, clip, n_iter, n_restarts, rho, seed, sign_gradient):
    """APGD-CE (Croce & Hein 2020): auto step-size PGD with momentum on the cross-entropy."""
    return apgd_ce_graph(model, x, y, eps, clip, n_iter, n_restarts, rho, seed, sign_gradient)[0]


@register("apgd_t", params={**DEFAULTS, "n_target_classes": 9}, checks=CHECKS,
          describe=lambda p: {**p, "loss": losses.DLR_TARGETED_LOSS, "momentum": MOMENTUM,
                              "initial_step": "2*eps"})
def _apgd_t(model, x, y, eps, clip, n_iter, n_restarts, rho, seed, sign_gradient,
            n_target_classes):
    """APGD-T (Croce & Hein 2020): APGD on the targeted DLR loss, top classes in turn."""
    return apgd_t_graph(model, x, y, eps, clip, n_iter, n_restarts, rho, seed, sign_gradient,
                        n_target_classes)[0]
