"""Candidate counterexamples from elsewhere (an attack's adversarial images) for ``certify``.

An attack that breaks an example has found a counterexample, but the certifier
counts it only as its own proof rule demands: the image is moved into the
example's ε-ball and clip range by at most float rounding (``box.into_ball``) and
the model must misclassify it (``search.recheck``). Examples decided this way
skip the search and the exact verifier, and record ``attack:<name>``.
"""
import numpy as np

from tfdisc import checks as checks_lib
from tfdisc.certify import box as box_lib
from tfdisc.certify import search as search_lib

__all__ = ["apply", "check", "check_sweep", "for_batch"]


def check(candidates, x):
    """``{name: images}`` checked against the batch ``x`` (one image per example, its shape
    and dtype); ``{}`` for None. Raises ValueError naming the offending entry."""
    if candidates is None:
        return {}
    if not isinstance(candidates, dict):
        raise ValueError(f"`candidates` must be a dict {{name: images}} or None, got "
                         f"{type(candidates).__name__}.")
    out = {}
    for name, images in candidates.items():
        images = np.asarray(images)
        if images.shape != x.shape:
            raise ValueError(f"`candidates[{name!r}]` must hold one image per example, shaped "
                             f"like the images {x.shape}; got {images.shape}.")
        if images.dtype != x.dtype:
            raise ValueError(f"`candidates[{name!r}]` must have the images' dtype {x.dtype}, "
                             f"got {images.dtype}.")
        out[str(name)] = images
    return out


def apply(model, box, y, cert, candidates):
    """Marks the open (``unknown``) examples of ``cert`` whose candidate is a real
    counterexample, in the order of ``candidates`` (checked by ``check``)."""
    for name, images in candidates.items():
        rows = np.nonzero(cert.status == "unknown")[0]
        if not len(rows):
            return
        moved = {int(r): box_lib.into_ball(box, int(r), images[r]) for r in rows}
        rows = [r for r, image in moved.items() if image is not None]
        if not rows:
            continue
        # One batched forward pass screens the candidates; each hit is re-checked alone.
        _, pred = search_lib.model_margin(model, np.stack([moved[r] for r in rows]), y[rows])
        for r, p in zip(rows, pred):
            if p != y[r] and search_lib.recheck(model, box, y, r, moved[r]):
                cert.status[r], cert.decided_by[r] = "counterexample", f"attack:{name}"
                cert.counterexamples[r] = moved[r]


def check_sweep(candidates, eps_list):
    """``{name: {eps: images}}`` for ``sweep``: ε values checked and matched to ``eps_list``
    (an ε not in it is dropped); ``{}`` for None."""
    if candidates is None:
        return {}
    if not isinstance(candidates, dict) or not all(isinstance(v, dict)
                                                   for v in candidates.values()):
        raise ValueError("`candidates` must be a dict {name: {eps: images}} or None.")
    out = {}
    for name, per_eps in candidates.items():
        images = {}
        for e, array in per_eps.items():
            e = checks_lib.check_eps(e, f"candidates[{name!r}]'s ε")
            if e in eps_list:
                images[e] = np.asarray(array)
        out[str(name)] = images
    return out


def for_batch(candidates, eps, start, x):
    """The candidates at ``eps`` for the batch ``x`` holding examples ``start, start + 1, …``.

    Candidates may cover only a prefix of the dataset: past its end an example's own
    image stands in (a candidate only if the clean image is misclassified, which
    ``certify`` has decided before).
    """
    out = {}
    for name, per_eps in candidates.items():
        images = per_eps.get(eps)
        if images is None or len(images) <= start:
            continue
        part = images[start:start + len(x)]
        if len(part) < len(x):
            part = np.concatenate([part, np.asarray(x)[len(part):].astype(part.dtype)])
        out[name] = part
    return out
