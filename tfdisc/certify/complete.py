"""Certification of examples: interval bounds, then branch and bound on the free pixels.

For each example at ε the status is one of:

* ``certified``: no image in the ε-ball (inside ``clip``) changes the class;
* ``counterexample``: a concrete image ``x'`` (returned, re-checked on the
  model) with ``‖x' − x‖∞ ≤ ε`` that the model misclassifies (the clean image
  itself if it is already misclassified);
* ``unknown``: neither could be shown within the limits.

Pipeline: clean check (a box holding a single input, e.g. ε = 0, is decided by
the model on that input) → interval bounds over the reachable box (margin form) →
the given candidate counterexamples, e.g. the attacks' images (``candidates``) →
the gradient-free quantized-space search (optional) → for examples with at most
``complete_max_free`` free pixels: if the box holds at most ``max_nodes``
quantized inputs, all of them are checked (bounds on each point, the model on
the ones the bounds miss); otherwise branch and bound: a node is a sub-box of
bin ranges; it is closed if its interval bound certifies it; a single
quantized input the bound does not certify is a counterexample if the model
misclassifies a real image that quantizes to it (otherwise a near tie within
float rounding: unknown); other nodes are split on the free pixel with the
largest bound sensitivity. With enough nodes every such example is decided exactly.

``method``: ``"auto"`` (default) decides every example the bounds leave open
with the exact verifier (``tfdisc.certify.exact``, any number of free pixels)
when it encodes the model (a BNN: ``solver`` ``milp`` (HiGHS, default) or
``sat``; a full-precision chain of affine layers and ReLUs: ``milp``) and the
solver is installed, else with branch and bound; ``"exact"``
requires the exact verifier; ``"branch"`` is branch and bound only. With the
exact verifier, boxes of at most ``enumerate_max`` points are first enumerated
as above; the solver decides the rest and any point the enumeration leaves open.
"""
import numbers
import time
import weakref

import numpy as np
import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc.certify import bounds as bounds_lib
from tfdisc.certify import box as box_lib
from tfdisc.certify import candidates as candidates_lib
from tfdisc.certify import exact as exact_lib
from tfdisc.certify import search as search_lib

__all__ = ["DEFAULT_COMPLETE_MAX_FREE", "DEFAULT_MAX_NODES", "DEFAULT_MAX_SPURIOUS",
           "DEFAULT_TIME_LIMIT", "STATUSES", "Certificate", "certify", "check_exact", "exhaustive"]

STATUSES = ("certified", "counterexample", "unknown")
METHODS = ("auto", "exact", "branch")
DEFAULT_TIME_LIMIT = 10.0
DEFAULT_MAX_SPURIOUS = 100
DEFAULT_COMPLETE_MAX_FREE = 16
DEFAULT_MAX_NODES = 4096


class Certificate:
    """Per-example result of ``certify`` at one ε.

    Attributes:
      eps: ε.
      status: numpy array of strings from ``STATUSES``.
      counterexamples: {example index: image} for every ``counterexample``.
      num_free: free pixels per example.
      decided_by: numpy array of strings: ``clean``, ``point`` (a single
        reachable input, run on the model), ``ibp``, ``attack:<name>`` (a
        given candidate image, see ``certify``'s ``candidates``), ``search``,
        ``enumeration``, ``branch``, ``exact`` or ``none``.
      nodes: branch-and-bound nodes evaluated per example.
      seconds: time spent by the exact verifier per example.
      method: the complete method used (``exact`` or ``branch``).
    """

    def __init__(self, eps, n):
        self.eps = eps
        self.status = np.full(n, "unknown", dtype=object)
        self.decided_by = np.full(n, "none", dtype=object)
        self.counterexamples = {}
        self.num_free = np.zeros(n, np.int64)
        self.nodes = np.zeros(n, np.int64)
        self.seconds = np.zeros(n, np.float64)
        self.method = "branch"

    def fraction(self, status):
        return float(np.mean(self.status == status)) if len(self.status) else 0.0

    def counts(self):
        return {s: int(np.sum(self.status == s)) for s in STATUSES}


def _check_int(value, name, least):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"`{name}` must be an integer ≥ {least}, got {value!r}.")
    return int(value)


_COMPILED = weakref.WeakKeyDictionary()
_CHECKED = weakref.WeakKeyDictionary()  # model -> input shapes that passed check_model


def _check_model(model, x):
    """``bounds.check_model`` once per model and input shape, eagerly, before any tracing."""
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a Keras model, got {type(model).__name__}.")
    x = np.asarray(x)
    shape = tuple(x.shape[1:]) if x.ndim >= 1 else ()
    if shape not in _CHECKED.get(model, ()):
        bounds_lib.check_model(model, input_shape=shape if x.ndim >= 1 else None)
        _CHECKED.setdefault(model, set()).add(shape)


def _functions(model):
    """Graph-compiled (margin bound, split sensitivity) of a model, cached per model."""
    if model not in _COMPILED:
        def margins(lower, upper, y):
            return bounds_lib.margin_upper(model, lower, upper, y, exact=True)

        def sensitivity(lower, upper, y):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch([lower, upper])
                total = tf.reduce_sum(tf.nn.relu(margins(lower, upper, y)))
            gl, gu = tape.gradient(total, [lower, upper],
                                   unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return (tf.abs(gu) + tf.abs(gl)) * (upper - lower)

        _COMPILED[model] = (tf.function(margins, reduce_retracing=True),
                            tf.function(sensitivity, reduce_retracing=True))
    return _COMPILED[model]


def _margins(model, lower, upper, y, batch):
    fn = _functions(model)[0]
    out = []
    for start in range(0, len(y), batch):
        m = fn(tf.constant(lower[start:start + batch]), tf.constant(upper[start:start + batch]),
               tf.constant(y[start:start + batch]))
        out.append(m.numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def _certified_rows(margins, y):
    m = margins.copy()
    m[np.arange(len(y)), y] = -1.0
    return np.all(m < 0.0, axis=1)


def _sensitivity(model, lower, upper, y):
    """|d Σ relu(margin bound) / d box| · width per pixel: where splitting helps most."""
    fn = _functions(model)[1]
    return fn(tf.constant(lower, tf.float32), tf.constant(upper, tf.float32),
              tf.constant(y)).numpy()


def _enumerate(model, box, y, r, cert, *, node_batch, point_check=None):
    """Decides example ``r`` on every quantized input of its box (bounded on each point;
    ``point_check(bins)``, if given, may certify a point the bounds do not)."""
    shape = box.x.shape[1:]
    lo = box.lo_bin[r].reshape(-1)
    hi = box.hi_bin[r].reshape(-1)
    free = np.nonzero(hi > lo)[0]
    sizes = hi[free] - lo[free] + 1
    # Every combination of the free pixels' levels; one point when no pixel is free
    # (np.indices of an empty shape has no element to reshape).
    grid = (np.indices(sizes).reshape(len(free), -1).T if len(free)
            else np.zeros((1, 0), np.int64))
    delta = box_lib.jitter(box.layer, box.integer)
    for start in range(0, len(grid), node_batch):
        bins = np.repeat(lo[None, :], len(grid[start:start + node_batch]), axis=0)
        bins[:, free] = lo[free][None, :] + grid[start:start + node_batch]
        cert.nodes[r] += len(bins)
        lower, upper = box_lib.level_interval(box.table, bins, bins, delta)
        labels = np.full(len(bins), y[r])
        ok = _certified_rows(_margins(model, lower.reshape((-1,) + shape),
                                      upper.reshape((-1,) + shape), labels, node_batch), labels)
        if point_check is not None:
            for i in np.nonzero(~ok)[0]:
                ok[i] = point_check(bins[i])
        if np.all(ok):
            continue
        bad = bins[~ok]
        _, pred = search_lib.model_margin(
            model, search_lib.representative(box, bad.reshape((-1,) + shape)), labels[~ok])
        for k in np.nonzero(pred != y[r])[0]:
            image = box_lib.realize(box, r, bad[k].reshape(shape))
            if search_lib.recheck(model, box, y, r, image):
                cert.status[r], cert.decided_by[r] = "counterexample", "enumeration"
                cert.counterexamples[r] = image
                return
        return  # a point neither bound-certified nor a realizable counterexample: unknown
    cert.status[r], cert.decided_by[r] = "certified", "enumeration"


def _points(box, r):
    free = box.hi_bin[r] > box.lo_bin[r]
    return float(np.prod((box.hi_bin[r] - box.lo_bin[r] + 1)[free], dtype=np.float64))


def _branch(model, box, y, rows, cert, *, max_nodes, enumerate_max, node_batch):
    """Enumeration (boxes of at most ``enumerate_max`` points) or branch and bound."""
    small = [r for r in rows if _points(box, r) <= enumerate_max]
    for r in small:
        _enumerate(model, box, y, int(r), cert, node_batch=node_batch)
    rows = [r for r in rows if _points(box, r) > enumerate_max]
    n_img = len(box.x)
    lo_all = box.lo_bin.reshape(n_img, -1)
    hi_all = box.hi_bin.reshape(n_img, -1)
    shape = box.x.shape[1:]
    queue = [(int(r), lo_all[r].copy(), hi_all[r].copy()) for r in rows]
    open_nodes = {int(r): 1 for r in rows}
    failed = set()  # decided as counterexample or given up
    while queue:
        batch, queue = queue[:node_batch], queue[node_batch:]
        batch = [node for node in batch if node[0] not in failed]
        if not batch:
            continue
        idx = np.array([node[0] for node in batch])
        lo = np.stack([node[1] for node in batch])
        hi = np.stack([node[2] for node in batch])
        labels = y[idx]
        lower, upper = box_lib.level_interval(box.table, lo, hi,
                                              box_lib.jitter(box.layer, box.integer))
        lower, upper = lower.reshape((-1,) + shape), upper.reshape((-1,) + shape)
        for r in idx:
            cert.nodes[r] += 1
        margins = _margins(model, lower, upper, labels, node_batch)
        done = _certified_rows(margins, labels)
        point = np.all(lo == hi, axis=1)
        # Single quantized inputs the bounds do not certify: a misclassified realization is a
        # counterexample; a correct one is a near tie within float jitter (unknown).
        check = np.nonzero(point & ~done)[0]
        if len(check):
            _, pred = search_lib.model_margin(
                model, search_lib.representative(box, lo[check].reshape((-1,) + shape)),
                labels[check])
            for k, p in zip(check, pred):
                r = int(idx[k])
                if r in failed:
                    continue
                image = None if p == labels[k] else box_lib.realize(box, r, lo[k].reshape(shape))
                if search_lib.recheck(model, box, y, r, image):
                    cert.status[r], cert.decided_by[r] = "counterexample", "branch"
                    cert.counterexamples[r] = image
                failed.add(r)  # otherwise unknown: near tie, or unrealizable widened edge
        split = np.nonzero(~done & ~point)[0]
        sens = None
        if len(split):
            sens = _sensitivity(model, lower[split], upper[split], labels[split]).reshape(
                len(split), -1)
        for k in np.nonzero(done)[0]:
            open_nodes[int(idx[k])] -= 1
        for j, k in enumerate(split):
            r = int(idx[k])
            if r in failed:
                continue
            if cert.nodes[r] + open_nodes[r] > max_nodes:
                failed.add(r)
                continue
            free = hi[k] > lo[k]
            score = np.where(free, sens[j] + 1e-12 * (hi[k] - lo[k]), -1.0)
            p = int(np.argmax(score))
            mid = (lo[k, p] + hi[k, p]) // 2
            left_hi, right_lo = hi[k].copy(), lo[k].copy()
            left_hi[p], right_lo[p] = mid, mid + 1
            queue.append((r, lo[k].copy(), left_hi))
            queue.append((r, right_lo, hi[k].copy()))
            open_nodes[r] += 1  # one node closed, two opened
    for r in rows:
        r = int(r)
        if r not in failed and open_nodes[r] == 0:
            cert.status[r], cert.decided_by[r] = "certified", "branch"


def certify(model, x, y, eps, *, clip=(0.0, 1.0), complete_max_free=DEFAULT_COMPLETE_MAX_FREE,
            max_nodes=DEFAULT_MAX_NODES, enumerate_max=None, search=True, search_params=None,
            batch_size=1000, method="auto", time_limit=DEFAULT_TIME_LIMIT,
            max_spurious=DEFAULT_MAX_SPURIOUS, solver=exact_lib.DEFAULT_SOLVER, workers=None,
            candidates=None):
    """Certifies a batch of examples at one ε.

    Args:
      model: Keras model returning logits; first layer ``BitDepthQuantization``
        (without it only interval bounds on the raw ball are available).
      x: images (float in ``clip``, or 8-bit integers), y: int labels.
      eps: L∞ radius ≥ 0.
      clip: valid range of float images.
      complete_max_free: examples with at most this many free pixels are
        decided by branch and bound (0 disables it).
      max_nodes: branch-and-bound nodes per example before giving up (unknown).
      enumerate_max: boxes with at most this many quantized inputs are checked
        point by point instead of branched on (default ``max_nodes``; 0 never).
      search: run the gradient-free quantized-space search on examples the
        bounds do not certify.
      search_params: dict of ``quantized_search`` parameters.
      batch_size: examples per interval-bound batch.
      method: complete method, one of ``METHODS`` (see the module doc).
      time_limit: seconds per example for the exact verifier (then unknown).
      max_spurious: solver solutions the model classifies correctly (allowed by
        units left free for float rounding) per example before giving up.
      solver: the exact verifier's solver, ``milp`` (HiGHS, default) or ``sat``
        (python-sat); see ``tfdisc.certify.exact``.
      workers: examples the exact verifier decides at once (threads; default: the CPUs).
      candidates: optional ``{name: images}`` of candidate counterexamples, one image per
        example (shape and dtype of ``x``), e.g. the adversarial images of attacks run at
        this ε. An example the bounds leave open is a ``counterexample`` (decided by
        ``attack:<name>``) if its candidate, moved into the ε-ball and clip by at most
        float rounding (``box.into_ball``), is misclassified by ``model``
        (``search.recheck``); otherwise the candidate is ignored. Checked before the
        search and the exact verifier, which then skip the examples it decides.

    Returns:
      ``Certificate``.

    Raises:
      ValueError: bad arguments (ε, clip, labels not as ``tfdisc.checks``
        accepts them or outside the model's classes, images of the wrong
        shape, not finite or outside ``clip``, an unknown ``method``);
        ``UnsupportedLayerError`` naming a layer the bounds do not support, a
        layer called with ``training=True`` or a layer not computing in
        float32; ``exact.ExactUnsupportedError`` (a ValueError) for
        ``method="exact"`` on a model the SAT verifier does not encode.
      ImportError: ``method="exact"`` without python-sat (``pip install tfdisc[verify]``).
      TypeError: non-numeric images.
    """
    eps = checks_lib.check_eps(eps)
    clip = checks_lib.check_clip(clip)
    if clip is not None and eps > clip[1] - clip[0]:
        raise ValueError(f"`eps` must lie in [0, {clip[1] - clip[0]:g}] (the width of clip "
                         f"{clip}), got {eps!r}.")
    complete_max_free = _check_int(complete_max_free, "complete_max_free", 0)
    max_nodes = _check_int(max_nodes, "max_nodes", 1)
    enumerate_max = max_nodes if enumerate_max is None else _check_int(enumerate_max,
                                                                       "enumerate_max", 0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    max_spurious = _check_int(max_spurious, "max_spurious", 0)
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    if solver not in exact_lib.SOLVERS:
        raise ValueError(f"`solver` must be one of {sorted(exact_lib.SOLVERS)}, got {solver!r}.")
    if workers is not None:
        workers = _check_int(workers, "workers", 1)
    if (isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real)
            or not np.isfinite(time_limit) or time_limit <= 0):
        raise ValueError(f"`time_limit` must be a positive number of seconds, got {time_limit!r}.")
    if search_params is not None and not isinstance(search_params, dict):
        raise ValueError(f"`search_params` must be a dict or None, got {search_params!r}.")
    params = search_lib.check_params(**(search_params or {}))
    box = box_lib.input_box(model, x, eps, clip=clip)
    _check_model(model, box.x)
    y = box_lib.check_labels(model, y, len(box.x))
    n = len(y)
    cert = Certificate(eps, n)
    cert.num_free = box.num_free()
    _, pred = search_lib.model_margin(model, box.x, y) if n else (None, np.zeros(0))
    wrong = pred != y
    for r in np.nonzero(wrong)[0]:
        cert.status[r], cert.decided_by[r] = "counterexample", "clean"
        cert.counterexamples[int(r)] = box.x[r].copy()
    margins = _margins(model, box.lower, box.upper, y, batch_size)
    ok = _certified_rows(margins, y) & ~wrong if n else np.zeros(0, bool)
    cert.status[ok], cert.decided_by[ok] = "certified", "ibp"
    candidates_lib.apply(model, box, y, cert, candidates_lib.check(candidates, box.x))
    if box.layer is None:
        if method == "exact":
            exact_lib.verify(model, box, y, [], cert, solver=solver)  # raises: no quantizer
        return cert
    # A box holding one input the model computes identically for every image of the ball
    # (ε = 0, or a quantizer without float jitter): the model's own output decides.
    if eps == 0 or box_lib.jitter(box.layer, box.integer) == 0.0:
        point = (cert.num_free == 0) & ~wrong & (cert.status == "unknown")
        cert.status[point], cert.decided_by[point] = "certified", "point"
    use_exact = method == "exact" or (method == "auto" and exact_lib.supports(model, solver)
                                      and exact_lib.available(solver))
    rows = np.nonzero(cert.status == "unknown")[0]
    if search and len(rows):
        seed = params.pop("seed")
        found = search_lib.search_bins(model, box, y, rows, rng=np.random.default_rng(seed),
                                       **params)
        for r, bins in found.items():
            image = box_lib.realize(box, r, bins)
            if search_lib.recheck(model, box, y, r, image):
                cert.status[r], cert.decided_by[r] = "counterexample", "search"
                cert.counterexamples[r] = image
    if use_exact:
        cert.method = "exact"
        # Boxes of few points are enumerated (run on the model); the rest, and any point the
        # enumeration leaves open, go to the solver.
        check = exact_lib.point_checker(model, box)
        for r in np.nonzero(cert.status == "unknown")[0]:
            if _points(box, r) <= enumerate_max:
                start = time.monotonic()
                _enumerate(model, box, y, int(r), cert, node_batch=max(batch_size, 64),
                           point_check=None if check is None
                           else lambda bins, r=r: check(bins, int(y[r])))
                cert.seconds[r] += time.monotonic() - start
        exact_lib.verify(model, box, y, np.nonzero(cert.status == "unknown")[0], cert,
                         time_limit=float(time_limit), max_spurious=max_spurious, solver=solver,
                         workers=workers)
        return cert
    rows = np.nonzero((cert.status == "unknown") & (cert.num_free <= complete_max_free))[0]
    if len(rows):
        _branch(model, box, y, rows, cert, max_nodes=max_nodes, enumerate_max=enumerate_max,
                node_batch=max(batch_size, 64))
    return cert


def check_exact(model, solver=exact_lib.DEFAULT_SOLVER):
    """Raises what ``certify(..., method="exact", solver=solver)`` would: ``ExactUnsupportedError``
    naming the first layer the exact verifier does not encode, ``ValueError`` for an unknown
    solver, ``ImportError`` if the solver is not installed."""
    if solver not in exact_lib.SOLVERS:
        raise ValueError(f"`solver` must be one of {sorted(exact_lib.SOLVERS)}, got {solver!r}.")
    exact_lib.encoder_module(model, solver).solver_version()


def exhaustive(model, x, y, eps, *, clip=(0.0, 1.0), max_points=1 << 16):
    """Decides every example by evaluating the model on its whole reachable box.

    A reference for tiny boxes (tests): enumerates every combination of
    reachable levels of the free pixels.

    Returns:
      numpy bool array: True where every reachable quantized input is
      classified correctly.

    Raises:
      ValueError: a box with more than ``max_points`` quantized inputs.
    """
    box = box_lib.input_box(model, x, eps, clip=clip)
    if box.layer is None:
        raise ValueError("Exhaustive enumeration needs a BitDepthQuantization input layer.")
    y = box_lib.check_labels(model, y, len(box.x))
    shape = box.x.shape[1:]
    result = np.zeros(len(y), bool)
    for r in range(len(y)):
        lo = box.lo_bin[r].reshape(-1)
        hi = box.hi_bin[r].reshape(-1)
        free = np.nonzero(hi > lo)[0]
        sizes = hi[free] - lo[free] + 1
        total = int(np.prod(sizes, dtype=np.float64)) if len(free) else 1
        if total > max_points:
            raise ValueError(f"Example {r} has {total} reachable quantized inputs at eps={eps}, "
                             f"more than max_points={max_points}.")
        grids = np.indices(sizes).reshape(len(free), -1).T if len(free) else np.zeros((1, 0), int)
        bins = np.repeat(lo[None, :], len(grids), axis=0)
        bins[:, free] = lo[free][None, :] + grids
        _, pred = search_lib.model_margin(
            model, search_lib.representative(box, bins.reshape((-1,) + shape)),
            np.full(len(bins), y[r]))
        result[r] = bool(np.all(pred == y[r]))
    return result
