"""Exact (complete) verification of BNNs over the reachable quantized inputs.

``verify`` decides examples of a supported BNN (``network.read``) with one of
two encodings of the same sound over-approximation: ``milp`` (HiGHS, the
default: real-valued first layer and margin, LP-relaxation pruning) or ``sat``
(python-sat Minicard, weights rounded outward to integers). For every wrong
class the solver either proves that no reachable input lets it win (with an
allowance covering float32 rounding and the solver's tolerances), or returns
one: it is decoded to a real image in the ε-ball and [clip] (``box.realize``)
and run on the Keras model; it is a ``counterexample`` only if the model
misclassifies it; otherwise (allowed by a unit left free for float rounding)
it is blocked and the search goes on. Past ``time_limit`` seconds or
``max_spurious`` blocked solutions: ``unknown``. Examples run on ``workers``
threads (the solvers release the GIL). Needs ``pip install tfdisc[verify]``.
"""
import concurrent.futures
import os
import threading
import time

import numpy as np
from absl import logging

from tfdisc.certify import box as box_lib
from tfdisc.certify import search as search_lib
from tfdisc.certify.exact import milp, network, points, sat
from tfdisc.certify.exact.network import ExactUnsupportedError

__all__ = ["ExactUnsupportedError", "SOLVERS", "available", "describe", "point_checker",
           "supports", "verify"]

SOLVERS = {"milp": milp, "sat": sat}
DEFAULT_SOLVER = "milp"
_MODEL_LOCK = threading.Lock()


def supports(model):
    """True if ``verify`` encodes this model (a BNN of the form ``network.read`` accepts)."""
    try:
        network.read(model)
    except ExactUnsupportedError:
        return False
    return True


def point_checker(model, box):
    """``check(bins, label)``: True if the quantized input ``bins`` (flat) of ``box`` is
    classified ``label`` by every float32 computation the model may make on it
    (``points.certifies_point``)."""
    net = network.read(model)
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


def describe(time_limit, max_spurious, solver=DEFAULT_SOLVER):
    return {"name": f"exact-{solver}", "solver": _module(solver).solver_version(),
            "time_limit_s": time_limit, "max_spurious": max_spurious}


def _one(model, net, box, y, r, *, time_limit, max_spurious, mutation, solver):
    """(status, image or None) of example ``r``."""
    deadline = time.monotonic() + time_limit
    shape = box.x.shape[1:]
    encoder = _module(solver).Encoder(net, box.table, box.lo_bin[r].reshape(-1),
                                      box.hi_bin[r].reshape(-1),
                                      box_lib.jitter(box.layer, box.integer), mutation=mutation)
    try:
        spurious = 0
        label = int(y[r])
        for k in range(net.w_out.shape[1]):
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
                if real:
                    return "counterexample", image
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
      solver: ``milp`` (HiGHS) or ``sat`` (python-sat).
      workers: threads deciding examples at once (default: the CPUs this process may use).

    Raises:
      ExactUnsupportedError: the model is not a supported BNN.
      ImportError: the solver is missing (``pip install tfdisc[verify]``).
      ValueError: an unknown solver.
    """
    module = _module(solver)
    net = network.read(model)
    module.solver_version()  # the clear ImportError before any work
    rows = [int(r) for r in rows]
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    started = time.monotonic()

    def run(r):
        start = time.monotonic()
        status, image = _one(model, net, box, y, r, time_limit=time_limit,
                             max_spurious=max_spurious, mutation=mutation, solver=solver)
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
        milp.stop_processes()


def available(solver=DEFAULT_SOLVER):
    """True if the solver's package is installed."""
    try:
        _module(solver).solver_version()
    except ImportError:
        return False
    return True
