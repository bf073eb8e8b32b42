"""Exact (complete) verification over the reachable quantized inputs.

``verify`` decides examples of a network of one of the ``ENCODINGS``:

* ``bnn``: a BNN (``network.read``), with one of two encodings of the same sound
  over-approximation: ``milp`` (HiGHS, the default: real-valued first layer and
  margin, LP-relaxation pruning) or ``sat`` (python-sat Minicard, weights rounded
  outward to integers);
* ``relu``: a full-precision chain of affine layers and ReLUs (``relu.read``), as a
  MILP with big-M rows from CROWN bounds (HiGHS).

For every wrong
class the solver either proves that no reachable input lets it win (with an
allowance covering float32 rounding and the solver's tolerances), or returns
one: it is decoded to a real image in the ε-ball and [clip] (``box.realize``)
and run on the Keras model; it is a ``counterexample`` only if the model
misclassifies it; otherwise (allowed by a unit left free for float rounding)
it is blocked and the search goes on, if every float32 computation on that quantized input is
classified correctly (else ``unknown``). Past ``time_limit`` seconds or
``max_spurious`` blocked solutions: ``unknown``. Examples run on ``workers``
threads (the solvers release the GIL). Needs ``pip install tfdisc[verify]``.
"""
import concurrent.futures
import os
import threading
import time
import weakref

import numpy as np
import tensorflow as tf
from absl import logging

from tfdisc.certify import bounds as bounds_lib
from tfdisc.certify import box as box_lib
from tfdisc.certify import search as search_lib
from tfdisc.certify.exact import milp, network, points, relu, sat
from tfdisc.certify.exact.network import ExactUnsupportedError

__all__ = ["ENCODINGS", "ExactUnsupportedError", "SOLVERS", "available", "describe",
           "encoder_module", "point_checker", "read", "supports", "verify"]

SOLVERS = {"milp": milp, "sat": sat}
DEFAULT_SOLVER = "milp"
# Kind of network -> (reader, {solver name: module with ``Encoder`` and ``solver_version``}).
# The first reader that accepts a model decides its kind; a new kind is one entry here.
ENCODINGS = {"bnn": (network.read, {"milp": milp, "sat": sat}),
             "relu": (relu.read, {"milp": relu})}
_MODEL_LOCK = threading.Lock()
_READ = weakref.WeakKeyDictionary()


def read(model):
    """``(kind, network)`` of the first of ``ENCODINGS`` that encodes ``model``.

    Raises:
      ExactUnsupportedError: none does (the message gives each one's reason).
    """
    if model in _READ:
        return _READ[model]
    reasons = []
    for kind, (reader, _) in ENCODINGS.items():
        try:
            _READ[model] = (kind, reader(model))
            return _READ[model]
        except ExactUnsupportedError as e:
            reasons.append(f"{kind}: {e}")
    raise ExactUnsupportedError("The exact verifier encodes no network of this form. "
                                + " | ".join(reasons))


def supports(model, solver=None):
    """True if ``verify`` encodes this model (one of ``ENCODINGS`` reads it), with ``solver``
    if given (SAT encodes BNNs only)."""
    try:
        if solver is None:
            read(model)
        else:
            encoder_module(model, solver)
    except ExactUnsupportedError:
        return False
    return True


def encoder_module(model, solver):
    """The module whose ``Encoder`` encodes ``model`` for ``solver``.

    Raises:
      ExactUnsupportedError: the model is of no supported kind, or ``solver`` does not
        encode its kind; ValueError: an unknown solver.
    """
    _module(solver)
    kind, _ = read(model)
    solvers = ENCODINGS[kind][1]
    if solver not in solvers:
        raise ExactUnsupportedError(
            f"Solver {solver!r} does not encode {kind} networks; use one of {sorted(solvers)}.")
    return solvers[solver]


def point_checker(model, box):
    """``check(bins, label)``: True if the quantized input ``bins`` (flat) of ``box`` is
    classified ``label`` by every float32 computation the model may make on it
    (``points.certifies_point``); None for a network other than a BNN."""
    kind, net = read(model)
    if kind != "bnn":
        return None
    ends = [points.intervals(network.sign_sets(layer)) for layer in net.binary[:-1]]
    jitter = box_lib.jitter(box.layer, box.integer)
    margins = {}

    def check(bins, label):
        if label not in margins:
            margins[label] = points.margin_table(net, label)
        return points.certifies_point(net, box.table, np.asarray(bins).reshape(-1), label, jitter,
                                      ends=ends, margins=margins)

    return check


def _module(solver):
    if solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {sorted(SOLVERS)}, got {solver!r}.")
    return SOLVERS[solver]


def describe(time_limit, max_spurious, solver=DEFAULT_SOLVER, model=None):
    """The exact verifier's settings for ``results.json`` (with ``model``: its encoding)."""
    out = {"name": f"exact-{solver}", "solver": _module(solver).solver_version(),
           "time_limit_s": time_limit, "max_spurious": max_spurious}
    if model is not None:
        out["encoding"] = read(model)[0]
    return out


def _point_safe(model, box):
    """``safe(bins, label)``: True if the quantized input ``bins`` (flat) is classified ``label``
    by every float32 computation of the model on it (a BNN: ``point_checker``; else the interval
    bounds of that single point, widened for the quantizer's jitter)."""
    check = point_checker(model, box)
    if check is not None:
        return check
    jitter = box_lib.jitter(box.layer, box.integer)
    shape = (1,) + tuple(box.x.shape[1:])

    def safe(bins, label):
        bins = np.asarray(bins).reshape(-1)
        lower, upper = box_lib.level_interval(box.table, bins, bins, jitter)
        m = bounds_lib.margin_upper(model, tf.constant(lower.reshape(shape)),
                                    tf.constant(upper.reshape(shape)),
                                    tf.constant([label], tf.int32), exact=True).numpy()[0]
        m[label] = -1.0
        return bool(np.all(m < 0.0))

    return safe


def _one(model, net, box, y, r, *, time_limit, max_spurious, mutation, module, point_safe):
    """(status, image or None) of example ``r``."""
    deadline = time.monotonic() + time_limit
    shape = box.x.shape[1:]
    with _MODEL_LOCK:  # the ReLU encoding runs the layers' bound rules (TensorFlow)
        encoder = module.Encoder(net, box.table, box.lo_bin[r].reshape(-1),
                                 box.hi_bin[r].reshape(-1),
                                 box_lib.jitter(box.layer, box.integer), mutation=mutation)
    try:
        spurious = 0
        label = int(y[r])
        for k in range(int(model.output_shape[-1])):
            if k == label:
                continue
            while True:
                found, bins = encoder.solve_class(label, k, deadline - time.monotonic())
                if found == "limit":
                    return "unknown", None
                if found == "none":
                    break
                image = box_lib.realize(box, r, bins.reshape(shape))
                if image is None:  # a bin a real image cannot reach: cannot block it soundly
                    return "unknown", None
                with _MODEL_LOCK:
                    _, pred = search_lib.model_margin(model, image[None], np.array([label]))
                    real = pred[0] != label and search_lib.recheck(model, box, y, r, image)
                    # Blocking this quantized input is sound only if every float32 computation
                    # on it gives the label (one image classified right, e.g. at a tie, is not).
                    safe = not real and point_safe(bins, label)
                if real:
                    return "counterexample", image
                if not safe:
                    return "unknown", None
                spurious += 1
                if spurious > max_spurious:
                    return "unknown", None
                encoder.block(bins)
        return "certified", None
    finally:
        encoder.close()


def verify(model, box, y, rows, cert, *, time_limit=10.0, max_spurious=100, mutation=None,
           solver=DEFAULT_SOLVER, workers=None):
    """Decides the examples ``rows`` of ``box`` exactly; fills ``cert`` (status, decided_by
    ``exact``, counterexamples, seconds).

    Args:
      solver: ``milp`` (HiGHS) or ``sat`` (python-sat; BNNs only).
      workers: threads deciding examples at once (default: the CPUs this process may use).

    Raises:
      ExactUnsupportedError: the model is of no kind of ``ENCODINGS``, or the solver does not
        encode its kind.
      ImportError: the solver is missing (``pip install tfdisc[verify]``).
      ValueError: an unknown solver.
    """
    module = encoder_module(model, solver)
    _, net = read(model)
    module.solver_version()  # the clear ImportError before any work
    rows = [int(r) for r in rows]
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    started = time.monotonic()
    point_safe = _point_safe(model, box)
    prepare = getattr(net, "prepare", None)  # bounds of many examples at once (ReLU networks)
    if prepare is not None and rows:
        with _MODEL_LOCK:
            prepare(box, rows)
        share = (time.monotonic() - started) / len(rows)
        for r in rows:
            cert.seconds[r] += share

    def run(r):
        start = time.monotonic()
        status, image = _one(model, net, box, y, r, time_limit=time_limit,
                             max_spurious=max_spurious, mutation=mutation, module=module,
                             point_safe=point_safe)
        return r, status, image, time.monotonic() - start

    done = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, min(int(workers), len(rows) or 1))) as pool:
        results = pool.map(run, rows)
        for r, status, image, seconds in results:
            cert.seconds[r] += seconds
            cert.status[r] = status
            if status != "unknown":
                cert.decided_by[r] = "exact"
            if image is not None:
                cert.counterexamples[r] = image
            done += 1
            if done % 25 == 0 or done == len(rows):
                logging.info("exact %s, eps %g: %d/%d examples, %.0f s", solver, cert.eps, done,
                             len(rows), time.monotonic() - started)
    if solver == "milp":
        milp.stop_processes()  # the HiGHS worker processes, of either encoding


def available(solver=DEFAULT_SOLVER):
    """True if the solver's package is installed."""
    try:
        _module(solver).solver_version()
    except ImportError:
        return False
    return True
