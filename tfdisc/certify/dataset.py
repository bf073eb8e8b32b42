"""Certification over a dataset and an ε grid (``sweep``, ``robustness``), example by example
with ``complete.certify``, as the JSON-able ``certified`` block of a run."""
import numbers

import numpy as np
import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc.certify import candidates as candidates_lib
from tfdisc.certify import exact as exact_lib
from tfdisc.certify import search as search_lib
from tfdisc.certify.complete import (DEFAULT_COMPLETE_MAX_FREE, DEFAULT_MAX_NODES,
                                     DEFAULT_MAX_SPURIOUS, DEFAULT_TIME_LIMIT, STATUSES, certify)

__all__ = ["robustness", "sweep"]


def _batches(dataset):
    for element in dataset:
        if not isinstance(element, (tuple, list)) or len(element) != 2:
            raise ValueError(
                f"`dataset` must yield (images, labels) batches, e.g. tfdisc.data.load or "
                f"tf.data.Dataset.from_tensor_slices((x, y)).batch(n); got an element of type "
                f"{type(element).__name__}"
                + (f" with {len(element)} parts." if isinstance(element, (tuple, list)) else "."))
        x, y = element
        yield (x.numpy() if tf.is_tensor(x) else np.asarray(x),
               y.numpy() if tf.is_tensor(y) else np.asarray(y))


def sweep(model, dataset, epsilons, *, clip=(0.0, 1.0), complete_max_free=DEFAULT_COMPLETE_MAX_FREE,
          max_nodes=DEFAULT_MAX_NODES, enumerate_max=None, search=True, search_params=None,
          batch_size=1000, method="auto", time_limit=DEFAULT_TIME_LIMIT,
          max_spurious=DEFAULT_MAX_SPURIOUS, solver=exact_lib.DEFAULT_SOLVER, workers=None,
          return_examples=False, candidates=None):
    """Certification over a dataset and an ε grid, as a JSON-able record.

    ``candidates``: optional ``{name: {eps: images}}``, candidate counterexamples for the
    dataset's examples in order (e.g. an attack's adversarial images, ``tfdisc.evaluate.sweep``
    with ``keep_adversarial``); it may cover a prefix of the examples, and an ε it lacks
    has none. See ``certify``.

    Returns:
      dict with ``certified``, ``counterexample`` and ``unknown`` (each
      ``{eps: fraction}``), ``mean_free_pixels`` ``{eps: mean}``, ``examples``
      ``status_counts`` ``{eps: {status: count}}``, ``decided_by`` ``{eps: {how: count}}``
      (see ``Certificate.decided_by``), ``seconds`` ``{eps: {median,
      p95, total}}`` of the exact verifier, and ``method`` (the settings, the complete
      method used and, for ``exact``, the solver and its version); with ``return_examples`` also
      ``"certificates"``: ``{eps: [Certificate per batch]}`` (not JSON-able).
    """
    if isinstance(epsilons, numbers.Real):
        epsilons = [epsilons]
    eps_list = sorted({checks_lib.check_eps(e, "epsilons") for e in epsilons})
    if not eps_list:
        raise ValueError("`epsilons` must hold at least one ε.")
    counts = {e: np.zeros(3, np.int64) for e in eps_list}
    free = {e: 0 for e in eps_list}
    certs = {e: [] for e in eps_list}
    seconds = {e: [] for e in eps_list}
    decided = {e: {} for e in eps_list}
    candidates = candidates_lib.check_sweep(candidates, eps_list)
    used = set()
    total = 0
    for x, y in _batches(dataset):
        for e in eps_list:
            cert = certify(model, x, y, e, clip=clip, complete_max_free=complete_max_free,
                           max_nodes=max_nodes, enumerate_max=enumerate_max, search=search,
                           search_params=search_params, batch_size=batch_size, method=method,
                           time_limit=time_limit, max_spurious=max_spurious, solver=solver,
                           workers=workers,
                           candidates=candidates_lib.for_batch(candidates, e, total, x))
            for how in cert.decided_by:
                decided[e][how] = decided[e].get(how, 0) + 1
            used.add(cert.method)
            seconds[e].append(cert.seconds[cert.decided_by != "clean"])
            counts[e] += np.array([cert.counts()[s] for s in STATUSES])
            free[e] += int(cert.num_free.sum())
            if return_examples:
                certs[e].append(cert)
        total += len(y)
    if total == 0:
        raise ValueError("`dataset` yielded no examples.")
    record = {s: {e: float(counts[e][i]) / total for e in eps_list}
              for i, s in enumerate(STATUSES)}
    record["mean_free_pixels"] = {e: free[e] / total for e in eps_list}
    record["examples"] = total
    record["status_counts"] = {e: {s: int(counts[e][i]) for i, s in enumerate(STATUSES)}
                               for e in eps_list}
    record["decided_by"] = {e: dict(sorted(decided[e].items())) for e in eps_list}
    record["seconds"] = {}
    for e in eps_list:
        s = np.concatenate(seconds[e]) if seconds[e] else np.zeros(0)
        record["seconds"][e] = ({"median": float(np.median(s)), "p95": float(np.percentile(s, 95)),
                                 "total": float(s.sum())} if len(s) else None)
    record["method"] = {"bounds": "interval (IBP), margin form, widened for float32 rounding",
                        "complete_max_free": complete_max_free, "max_nodes": max_nodes,
                        "enumerate_max": max_nodes if enumerate_max is None else enumerate_max,
                        "search": search_lib.describe(**(search_params or {})) if search else None,
                        "uses_gradient": False, "requested": method,
                        "complete": sorted(used)}
    if candidates:
        record["method"]["candidates"] = sorted(candidates)
    if "exact" in used:
        record["method"]["exact"] = exact_lib.describe(float(time_limit), max_spurious,
                                                       solver, model=model)
    if return_examples:
        record["certificates"] = certs
    return record


def robustness(model, dataset, epsilons, *, clip=(0.0, 1.0), return_examples=False, **kwargs):
    """Certified accuracy ``{eps: fraction certified}``, mirroring ``tfdisc.evaluate.robustness``.

    Args:
      model, dataset, epsilons, clip: as ``tfdisc.evaluate.robustness``.
      return_examples: also return ``{eps: [Certificate per batch]}``.
      kwargs: ``certify`` options (complete_max_free, max_nodes, search, ...).

    Example:
      >>> tfdisc.certify.robustness(model, ds_test, [0.1, 0.2])
      {0.1: 0.93, 0.2: 0.41}
    """
    record = sweep(model, dataset, epsilons, clip=clip, return_examples=return_examples, **kwargs)
    if return_examples:
        return record["certified"], record["certificates"]
    return record["certified"]
