"""Exact (complete) verification of BNNs over the reachable quantized inputs, by SAT.

``verify`` decides examples of a supported BNN (``network.read``) with the
encoding of ``sat``: UNSAT of every wrong class's query, with only sound
over-approximations, is ``certified``; a solution is decoded to a real image in
the ε-ball and [clip] (``box.realize``) and run on the Keras model: it is a
``counterexample`` only if the model misclassifies it; otherwise (a solution
allowed by a unit left free for float rounding) it is blocked and the search goes
on. Past ``time_limit`` seconds or ``max_spurious`` blocked solutions: ``unknown``.
Needs python-sat (``pip install tfdisc[verify]``).
"""
import threading
import time

import numpy as np

from tfdisc.certify import box as box_lib
from tfdisc.certify import search as search_lib
from tfdisc.certify.exact import network, sat
from tfdisc.certify.exact.network import ExactUnsupportedError

__all__ = ["ExactUnsupportedError", "available", "describe", "supports", "verify"]


def supports(model):
    """True if ``verify`` encodes this model (a BNN of the form ``network.read`` accepts)."""
    try:
        network.read(model)
    except ExactUnsupportedError:
        return False
    return True


def describe(time_limit, max_spurious):
    return {"name": "exact-sat", "solver": sat.solver_version(), "time_limit_s": time_limit,
            "max_spurious": max_spurious}


def _solve(encoder, assumptions, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    timer = threading.Timer(remaining, encoder.solver.interrupt)
    timer.start()
    try:
        return encoder.solver.solve_limited(assumptions=assumptions, expect_interrupt=True)
    finally:
        timer.cancel()
        encoder.solver.clear_interrupt()


def _one(model, net, box, y, r, *, time_limit, max_spurious, mutation):
    """(status, image or None) of example ``r``."""
    deadline = time.monotonic() + time_limit
    shape = box.x.shape[1:]
    encoder = sat.Encoder(net, box.table, box.lo_bin[r].reshape(-1), box.hi_bin[r].reshape(-1),
                          box_lib.jitter(box.layer, box.integer), mutation=mutation)
    try:
        spurious = 0
        label = int(y[r])
        for k in range(net.w_out.shape[1]):
            if k == label:
                continue
            q = encoder.margin_selector(label, k)
            while True:
                found = _solve(encoder, [q], deadline)
                if found is None:
                    return "unknown", None
                if not found:
                    break
                bins = encoder.decode(encoder.solver.get_model())
                image = box_lib.realize(box, r, bins.reshape(shape))
                if image is None:  # a bin a real image cannot reach: cannot block it soundly
                    return "unknown", None
                _, pred = search_lib.model_margin(model, image[None], np.array([label]))
                if pred[0] != label and search_lib.recheck(model, box, y, r, image):
                    return "counterexample", image
                spurious += 1
                if spurious > max_spurious:
                    return "unknown", None
                encoder.block(bins)
        return "certified", None
    finally:
        encoder.solver.delete()


def verify(model, box, y, rows, cert, *, time_limit=10.0, max_spurious=100, mutation=None):
    """Decides the examples ``rows`` of ``box`` exactly; fills ``cert`` (status, decided_by
    ``exact``, counterexamples, seconds).

    Raises:
      ExactUnsupportedError: the model is not a supported BNN.
      ImportError: python-sat is missing (``pip install tfdisc[verify]``).
    """
    net = network.read(model)
    sat.solver_version()  # the clear ImportError before any work
    for r in rows:
        r = int(r)
        start = time.monotonic()
        status, image = _one(model, net, box, y, r, time_limit=time_limit,
                             max_spurious=max_spurious, mutation=mutation)
        cert.seconds[r] += time.monotonic() - start
        cert.status[r] = status
        if status != "unknown":
            cert.decided_by[r] = "exact"
        if image is not None:
            cert.counterexamples[r] = image


def available():
    """True if python-sat is installed."""
    try:
        sat.solver_version()
    except ImportError:
        return False
    return True
