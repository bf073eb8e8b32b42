"""A gradient-free attack in quantized space: random block coordinate search over reachable levels.

After ``BitDepthQuantization`` an L∞ attacker can only choose, for every free
pixel, one of the levels in its reachable range (``tfdisc.certify.box``). This
attack searches that finite set with model outputs only (no gradient, so it
cannot be masked): from the clean levels, the all-lowest and all-highest
corners and random restarts, each iteration proposes ``candidates`` moves per
example (a random block of free pixels set to other reachable levels, the
block shrinking from a fraction of the free pixels to one pixel), evaluates
them in one batched forward pass and keeps the best one if it raises the logit
margin ``max_{j≠y} z_j − z_y``. Every counterexample is turned into a real image
``x'`` (``‖x' − x‖∞ ≤ ε``, inside ``clip``) and re-checked on the model before it
is returned.
"""
import numpy as np
import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc.certify import box as box_lib

__all__ = ["DEFAULTS", "check_params", "describe", "model_margin", "quantized_search",
           "representative"]

DEFAULTS = dict(restarts=1, iterations=40, candidates=16, seed=0)


def describe(**params):
    """JSON-able record of the attack and its parameters."""
    record = {"name": "quantized_search", "norm": "linf", "gradient": "none",
              "uses_gradient": False, "method": "random block coordinate search on the logit "
                                                "margin over reachable quantization levels"}
    record.update({k: params.get(k, v) for k, v in DEFAULTS.items()})
    return record


def check_params(**params):
    """All search parameters (``DEFAULTS`` filled in), checked; ValueError naming a bad one."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown quantized_search parameter(s) {unknown}; its parameters: "
                         f"{sorted(DEFAULTS)}.")
    merged = {**DEFAULTS, **params}
    for name, least in (("restarts", 0), ("iterations", 1), ("candidates", 1), ("seed", 0)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"`{name}` must be an integer ≥ {least}, got {value!r}.")
    return merged


def representative(box, bins, rows=None):
    """Model inputs whose quantization is ``table[bins]`` (bins: [n, *image_shape]).

    Float images: the levels themselves (the quantizer maps a level to itself);
    integer images: the bins' lowest intensities.
    """
    if box.integer:
        return box_lib.lowest_intensity(box.layer.bin_bounds[bins]).astype(box.x.dtype)
    return box.table[bins]


def model_margin(model, inputs, y):
    """``max_{j≠y} z_j − z_y`` of the model's logits (numpy), and the predicted classes."""
    logits = _logits(model, tf.convert_to_tensor(inputs)).numpy().astype(np.float64)
    y = np.asarray(y)
    true = logits[np.arange(len(y)), y]
    other = logits.copy()
    other[np.arange(len(y)), y] = -np.inf
    return other.max(axis=1) - true, logits.argmax(axis=1)


@tf.function(reduce_retracing=True)
def _logits(model, x):
    return model(x, training=False)


def _check_idempotent(box):
    if box.integer:
        return
    again = box.layer.quantize(tf.constant(box.table), gradient="straight_through").numpy()
    if not np.array_equal(again, box.table):  # pragma: no cover - holds for eq. 2
        raise AssertionError("quantizer levels are not fixed points")


def search_bins(model, box, y, rows, *, restarts, iterations, candidates, rng, eval_batch=4096):
    """Searches bins for the examples ``rows`` of ``box``; returns {row: bins} of misclassified."""
    shape = box.x.shape[1:]
    lo = box.lo_bin.reshape(len(box.x), -1)[rows]
    hi = box.hi_bin.reshape(len(box.x), -1)[rows]
    yr = np.asarray(y)[rows]
    free = hi > lo
    nfree = np.maximum(free.sum(axis=1), 1)
    clean_bins = np.clip(box_lib.bin_of(
        box.layer.quantize(tf.constant(box.x[rows]),
                           gradient="straight_through").numpy().astype(np.float32),
        box.table).reshape(len(rows), -1), lo, hi)
    found = {}

    def evaluate(bins, labels):
        margins, preds = [], []
        for start in range(0, len(bins), eval_batch):
            chunk = bins[start:start + eval_batch]
            m, p = model_margin(model, representative(box, chunk.reshape((-1,) + shape)),
                                labels[start:start + eval_batch])
            margins.append(m)
            preds.append(p)
        return np.concatenate(margins), np.concatenate(preds)

    starts = [clean_bins, lo.copy(), hi.copy()]
    for _ in range(restarts):
        starts.append(lo + np.floor(rng.random(lo.shape) * (hi - lo + 1)).astype(lo.dtype))
    best = None
    for init in starts:
        margin, pred = evaluate(init, yr)
        if best is None:
            best_bins, best = init.copy(), margin
        better = margin > best
        best_bins[better], best[better] = init[better], margin[better]
    for restart in range(restarts + 1):
        cur = best_bins.copy() if restart == 0 else starts[3 + restart - 1].copy()
        cur_m = best.copy() if restart == 0 else evaluate(cur, yr)[0]
        for it in range(iterations):
            active = np.nonzero((best <= 0) & (free.any(axis=1)))[0]
            if len(active) == 0:
                break
            frac = 0.3 * (1.0 - it / max(iterations, 1)) ** 2
            size = np.maximum(1.0, frac * nfree[active])  # expected block size
            c = candidates
            la, ha, ca = lo[active], hi[active], cur[active]
            pick = (rng.random((len(active), c, la.shape[1]))
                    < (size / nfree[active])[:, None, None]) & free[active][:, None, :]
            none = ~pick.any(axis=2)  # ensure at least one pixel moves
            if none.any():
                score = rng.random(pick.shape) * free[active][:, None, :]
                forced = score.argmax(axis=2)
                ii, jj = np.nonzero(none)
                pick[ii, jj, forced[ii, jj]] = True
            n = (ha - la + 1)[:, None, :]
            shift = 1 + np.floor(rng.random(pick.shape) * np.maximum(n - 1, 1)).astype(np.int64)
            moved = la[:, None, :] + (ca[:, None, :] - la[:, None, :] + shift) % n
            prop = np.where(pick, moved, ca[:, None, :]).astype(lo.dtype)
            margins, _ = evaluate(prop.reshape(len(active) * c, -1), np.repeat(yr[active], c))
            margins = margins.reshape(len(active), c)
            j = margins.argmax(axis=1)
            m = margins[np.arange(len(active)), j]
            improve = m > cur_m[active]
            cur[active[improve]] = prop[improve, j[improve]]
            cur_m[active[improve]] = m[improve]
            better = cur_m > best
            best_bins[better], best[better] = cur[better], cur_m[better]
    _, pred = evaluate(best_bins, yr)
    for k in np.nonzero(pred != yr)[0]:
        found[int(rows[k])] = best_bins[k].reshape(shape)
    return found


def recheck(model, box, y, index, image):
    """True if ``image`` is a valid counterexample for example ``index`` of ``box``."""
    x = box.x[index]
    if image is None or image.shape != x.shape or image.dtype != x.dtype:
        return False
    if box.integer:
        scale = 255.0 / (box.layer.value_range[1] - box.layer.value_range[0])
        ok = np.all(np.abs(image.astype(np.float64) - x.astype(np.float64)) <= box.eps * scale
                    + 1e-9) and image.min() >= 0 and image.max() <= 255
    else:
        diff = np.abs(image.astype(np.float64) - x.astype(np.float64))
        ok = bool(np.all(diff <= box.eps))
        if box.clip is not None:
            ok = ok and image.min() >= box.clip[0] and image.max() <= box.clip[1]
    if not ok:
        return False
    _, pred = model_margin(model, image[None], np.asarray([y[index]]))
    return bool(pred[0] != y[index])


def quantized_search(model, x, y, eps, *, clip=(0.0, 1.0), restarts=DEFAULTS["restarts"],
                     iterations=DEFAULTS["iterations"], candidates=DEFAULTS["candidates"],
                     seed=DEFAULTS["seed"]):
    """Gradient-free L∞ attack in the quantized input space of a ``BitDepthQuantization`` model.

    Args:
      model: Keras model returning logits whose first layer is
        ``tfdisc.layers.BitDepthQuantization``.
      x: float images (or 8-bit integer images) [batch, ...].
      y: int labels [batch].
      eps: L∞ radius ≥ 0.
      clip: valid range of float images.
      restarts: random restarts (≥ 0) besides the clean start.
      iterations: search iterations per start (≥ 1).
      candidates: proposals per example and iteration (≥ 1).
      seed: random seed.

    Returns:
      numpy array like ``x``: a re-checked misclassified image inside the
      ε-ball and ``clip`` for every example the search broke, ``x`` elsewhere.
      Uses no gradient (``quantized_search.uses_gradient`` is False).

    Raises:
      ValueError: model without an input quantizer, bad ε, clip or parameters.
    """
    eps = checks_lib.check_eps(eps)
    check_params(restarts=restarts, iterations=iterations, candidates=candidates, seed=seed)
    box = box_lib.input_box(model, x, eps, clip=clip)
    if box.layer is None:
        raise ValueError(f"Model {model.name!r} has no BitDepthQuantization input layer; the "
                         f"quantized-space search needs one.")
    _check_idempotent(box)
    y = box_lib.check_labels(model, y, len(box.x))
    found = search_bins(model, box, y, np.arange(len(y)), restarts=restarts,
                        iterations=iterations, candidates=candidates,
                        rng=np.random.default_rng(seed))
    x_adv = box.x.copy()
    for index, bins in found.items():
        image = box_lib.realize(box, index, bins)
        if recheck(model, box, y, index, image):
            x_adv[index] = image
    return x_adv


quantized_search.uses_gradient = False
