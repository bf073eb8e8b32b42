"""Exact decision of one quantized input of a BNN, by enumerating the signs rounding leaves open.

Every real image that quantizes to the same levels gives the first layer the
same real input up to the quantizer's float jitter; a first-layer unit whose
output lies within its float32 rounding band (``network.first_layer_form``)
may come out either way, every other unit is fixed. The binary layers after it
are exact integer sums, so each assignment of the open signs is propagated
exactly; a hidden unit inside its own band (``network.sign_sets``) splits the
assignment again. The input is certified if the logit margin exceeds its
float32 allowance for every assignment and every wrong class. Interval bounds
cannot do this: they widen each open sign to [−1, 1] and the widening
cascades through the binary layers.
"""
import numpy as np

from tfdisc.certify.exact import network

__all__ = ["MAX_ASSIGNMENTS", "certifies_point", "intervals", "margin_table"]

MAX_ASSIGNMENTS = 4096


def intervals(layer_sets):
    """The sets of ``network.sign_sets`` as interval ends per sign, arrays over units:
    ``((plus_lo, plus_hi), (minus_lo, minus_hi))``; ``lo ≤ d ≤ hi``: the sign is possible."""
    out = []
    for which in (0, 1):
        lo = np.full(len(layer_sets), -np.inf)
        hi = np.full(len(layer_sets), np.inf)
        for j, sets in enumerate(layer_sets):
            half = sets[which]
            if half == "none":
                lo[j], hi[j] = np.inf, -np.inf
            elif half != "all":
                kind, t = half
                if kind == "ge":
                    lo[j] = t
                else:
                    hi[j] = t
        out.append((lo, hi))
    return tuple(out)


def _expand(signs, open_mask, limit):
    """Every row of ``signs`` (±1) with its open entries set both ways, or None past ``limit``."""
    rows = []
    for row, mask in zip(signs, open_mask):
        idx = np.nonzero(mask)[0]
        if not len(idx):
            rows.append(row[None])
            continue
        if len(idx) > 20 or sum(len(r) for r in rows) + 2 ** len(idx) > limit:
            return None
        grid = ((np.arange(2 ** len(idx))[:, None] >> np.arange(len(idx))) & 1) * 2 - 1
        block = np.repeat(row[None], len(grid), axis=0)
        block[:, idx] = grid
        rows.append(block)
    out = np.concatenate(rows)
    return out if len(out) <= limit else None


def certifies_point(net, table, bins, label, jitter, *, limit=MAX_ASSIGNMENTS, ends=None,
                    margins=None):
    """True if every float32 computation the model may make on an image quantizing to ``bins``
    (flat bin indices) classifies ``label``; False if not proven (an assignment with a small
    margin, or more than ``limit`` assignments).

    Args:
      net: ``network.Network``; table: the quantizer's float32 levels; jitter: its float jitter.
      ends: ``[intervals(network.sign_sets(layer)) for layer in net.binary[:-1]]`` (computed if
        None); margins: ``{label: margin_table(net, label)}`` (a cache; computed if missing).
    """
    form = network.first_layer_form(net, table, bins, bins, jitter)
    fixed = np.array([0 if f is None else (1 if f else -1) for f in form.fixed], np.int64)
    signs = _expand(fixed[None], (fixed == 0)[None], limit)
    if signs is None:
        return False
    if ends is None:
        ends = [intervals(network.sign_sets(layer)) for layer in net.binary[:-1]]
    for layer, ((p_lo, p_hi), (m_lo, m_hi)) in zip(net.binary[:-1], ends):
        d = signs.astype(np.float64) @ layer.w64  # exact integers
        plus = (d >= p_lo) & (d <= p_hi)
        minus = (d >= m_lo) & (d <= m_hi)
        nxt = np.where(plus, 1, -1).astype(np.int64)
        signs = _expand(nxt, plus & minus, limit)
        if signs is None:
            return False
    g, c, allowance = (margins or {}).get(label) or margin_table(net, label)
    return not np.any(signs @ g + c <= allowance)


def margin_table(net, label):
    """``(g, c, allowance)``: the real margins ``z_label − z_k = s·g[:, k] + c[k]`` over the last
    binary layer's input signs ``s``, for every class (``+inf`` for ``label`` itself), and
    their float32 allowances."""
    last = net.binary[-1]
    w = last.w64
    classes = net.w_out.shape[1]
    g = np.zeros((w.shape[0], classes))
    c = np.full(classes, np.inf)
    allowance = np.full(classes, -np.inf)
    for k in range(classes):
        if k == label:
            continue
        diff = net.w_out[:, label] - net.w_out[:, k]
        g[:, k] = w @ (diff * last.a)
        c[k] = float(diff @ last.s + net.b_out[label] - net.b_out[k])
        allowance[k] = (float(net.margin_error(label, k))
                        + 1e-9 * (np.sum(np.abs(g[:, k])) + abs(c[k])))
    return g, c, allowance
