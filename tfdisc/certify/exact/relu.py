"""MILP encoding of a ReLU network over one example's reachable quantized inputs (HiGHS).

The complete method of MIPVerify (Tjeng, Xiao & Tedrake, ICLR 2019) on the
discrete input set of ``BitDepthQuantization``: a full-precision network of
``Dense``/``Conv2D``/``BatchNormalization``/``Flatten``/``ReLU`` layers
(everything ``tfdisc.certify.linear`` describes as affine steps and ReLUs):

* one binary per (free pixel, reachable level above its lowest), at most one per
  pixel: the input is ``table[lo_bin] + Σ Δ·choice``, exactly the reachable set;
* the affine steps between two ReLUs are composed in float64 into one map of the
  previous layer's columns; every unit that is not dead gets its pre-activation
  as a column ``z ∈ [l, u]`` (the tightened bounds of ``linear.bounded_steps``,
  CROWN back-substitution, sound in float32) with the row
  ``z − C·cols ∈ [const − err, const + err]``: ``err`` covers the model's float32
  rounding of those steps (their ``error``, the quantizer's jitter) and the
  float64 rounding of the composition, so every float32 computation of the
  model is one of the encoded ones, and rounding enters each layer signed
  instead of compounding through ``|W|`` to the logits;
* a unit with ``l ≥ 0`` passes ``z`` on, one with ``u ≤ 0`` is 0, and an unstable
  one gets an output ``h ∈ [0, u]`` and a binary ``δ`` with the big-M rows
  ``h ≥ z``, ``h ≤ z − l·(1 − δ)``, ``h ≤ u·δ``;
* per wrong class ``k`` the objective is the margin ``z_y − z_k`` (the last
  layer's columns), minimised with a cutoff at its ``err`` plus an allowance for
  HiGHS's tolerances, carried to the margin by each column's gain: no solution
  below it means ``k`` cannot win anywhere in the box.

Boxes of more than ``MAX_CHOICES`` (pixel, level) choices stay ``unknown`` (8-bit inputs).
A solution below the cutoff is a candidate only: ``exact.verify`` realizes it as
an image in the ε-ball and re-checks it on the Keras model.
"""
import numpy as np

from tfdisc.certify import box as box_lib
from tfdisc.certify import linear
from tfdisc.certify.exact import milp
from tfdisc.certify.exact.network import ExactUnsupportedError
from tfdisc.certify.rules import base as rules_base

__all__ = ["MAX_CHOICES", "MUTATIONS", "ReluNetwork", "Encoder", "read", "solver_version"]

# Test hooks: ("drop_upper", step, j) drops the h ≤ z − l(1 − δ) row of the j-th unstable unit of
# the ReLU at chain step ``step``; ("shift_error",) encodes without the rounding allowance;
# ("loose_margin",) lowers the margin cutoff by 1.
MUTATIONS = (None, "drop_upper", "shift_error", "loose_margin")
# Boxes with more (pixel, level) choices are left unknown without an encoding: their MILP is
# far past any time limit (8-bit input at ε = 0.1: ~40000 choices), and building it costs memory.
MAX_CHOICES = 4096


class ReluNetwork:
    """A model ``read`` accepts: its input quantizer, and per example the bounds of its steps.

    ``prepare(box, rows)`` computes the bounds of many examples in batches (the
    back-substitution is far cheaper per example that way); ``Encoder`` takes an example's
    from here, or computes them alone.
    """

    BATCH = 32  # at most; fewer where the back-substitution's arrays would be large

    def __init__(self, model, quantizer, max_rows):
        self.model, self.quantizer, self.max_rows = model, quantizer, max_rows
        self._matrices = {}  # step index -> float64 matrix (the same for every example)
        self._ready = {}  # (lo_bin, hi_bin) bytes -> that example's steps

    def matrix(self, index, step, n_in):
        """The affine step's matrix [out, in] (float64), from its ``back``."""
        if index not in self._matrices:
            out_shape = tuple(int(d) for d in step.interval.lower.shape[1:])
            n_out = int(np.prod(out_shape))
            eye = np.eye(n_out).reshape((1, n_out) + out_shape)  # ``back`` takes [1, rows, *out]
            self._matrices[index] = np.asarray(step.back(eye), np.float64).reshape(n_out, n_in)
        return self._matrices[index]

    def _bounds(self, lower, upper):
        """Per example of the batch: [(kind, step, lower in, upper in, lower out, upper out,
        error)] as float64 numpy arrays of one example."""
        steps = linear.bounded_steps(self.model, lower, upper, max_rows=self.max_rows)
        out = []
        for b in range(len(lower)):
            rows = []
            for step, iv_in, iv_out in steps:
                err = (None if step.kind != "affine" or step.error is None
                       else np.asarray(step.error, np.float64)[b].reshape(-1))
                rows.append((step.kind, step,
                             iv_in.lower.numpy()[b].reshape(-1).astype(np.float64),
                             iv_in.upper.numpy()[b].reshape(-1).astype(np.float64),
                             iv_out.lower.numpy()[b].reshape(-1).astype(np.float64),
                             iv_out.upper.numpy()[b].reshape(-1).astype(np.float64), err))
            out.append(rows)
        return out

    def prepare(self, box, rows):
        """Computes the bounds of examples ``rows`` of ``box`` in batches."""
        rows = [int(r) for r in rows
                if int(np.sum(box.hi_bin[r] - box.lo_bin[r])) <= MAX_CHOICES]
        # A CIFAR10 conv net's first layer has 4096 units over 3072 inputs: 32 examples at once
        # took 19 GB; linear.chunk_size keeps each coefficient array near 512 MB (fcn2 on MNIST:
        # still 32 examples).
        batch = max(1, min(self.BATCH, linear.chunk_size(self.model, self.max_rows, 512)))
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            for r, bounds in zip(chunk, self._bounds(box.lower[chunk], box.upper[chunk])):
                key = (box.lo_bin[r].tobytes(), box.hi_bin[r].tobytes())
                self._ready[key] = bounds

    def bounds(self, table, lo_bin, hi_bin, jitter):
        """The steps' bounds over one example's box (prepared, or computed now)."""
        key = (lo_bin.tobytes(), hi_bin.tobytes())
        if key in self._ready:
            return self._ready.pop(key)
        shape = (1,) + tuple(int(d) for d in self.model.input_shape[1:])
        lower, upper = box_lib.level_interval(table, lo_bin, hi_bin, jitter)
        return self._bounds(lower.reshape(shape), upper.reshape(shape))[0]


def read(model, max_rows=linear.DEFAULT_MAX_ROWS):
    """``ReluNetwork`` of a model the encoding supports.

    Raises:
      ExactUnsupportedError: no input quantizer, or a layer without a linear rule
        (sign activations, max pooling, a non-chain graph).
    """
    quantizer = box_lib.input_quantizer(model)
    if quantizer is None:
        raise ExactUnsupportedError(
            f"Model {model.name!r} has no BitDepthQuantization input layer: the ReLU MILP "
            f"encodes the finite set of quantized inputs.")
    try:
        ok = linear.supports(model)
    except Exception as e:  # pylint: disable=broad-except
        raise ExactUnsupportedError(f"Model {model.name!r}: {e}") from e
    if not ok:
        raise ExactUnsupportedError(
            f"Model {model.name!r}: a layer has no linear rule (tfdisc.certify.linear), so the "
            f"ReLU MILP cannot encode it (sign activations, max pooling, branches).")
    return ReluNetwork(model, quantizer, max_rows)


def solver_version():
    return milp.solver_version()


class Encoder(milp.Encoder):
    """Rows and columns of one example (``milp.Encoder``'s solving, decoding and blocking).

    Args: net (``ReluNetwork``), table, lo_bin, hi_bin (flat), jitter, mutation.
    """

    def __init__(self, net, table, lo_bin, hi_bin, jitter, mutation=None):  # pylint: disable=super-init-not-called
        self.net, self.mutation, self.lo_bin = net, mutation, lo_bin
        self.lb, self.ub, self.integer, self.rows = [], [], [], []
        table64 = table.astype(np.float64)
        free = np.nonzero(hi_bin > lo_bin)[0]
        self.too_large = int(np.sum(hi_bin - lo_bin)) > MAX_CHOICES
        if self.too_large:  # e.g. 8-bit input: every pixel free over dozens of levels
            free = free[:0]
        choices = np.array([(p, b) for p in free for b in range(lo_bin[p] + 1, hi_bin[p] + 1)],
                           np.int64).reshape(-1, 2)
        self.form = _Form(free, choices)
        if self.too_large:
            self.choice_vars = self._vars(0)
            return
        bounds = net.bounds(table, lo_bin, hi_bin, jitter)
        self.choice_vars = self._vars(len(choices), 0.0, 1.0, True)
        for p in free:
            idx = self.choice_vars[choices[:, 0] == p]
            if len(idx) > 1:
                self._row(idx, np.ones(len(idx)), -np.inf, 1.0)
        n = len(lo_bin)
        # The current vector as  C·cols + const ± err: C [units, len(cols)] over the columns of
        # the last layer (or the choices), err the rounding of the steps since then.
        cols = self.choice_vars
        c_mat = np.zeros((n, len(cols)))
        c_mat[choices[:, 0], np.arange(len(choices))] = (table64[choices[:, 1]]
                                                       - table64[lo_bin[choices[:, 0]]])
        const = table64[lo_bin]
        err = np.full(n, float(jitter))
        mag = np.maximum(np.abs(table64[lo_bin]), np.abs(table64[hi_bin])) + float(jitter)
        self.layers = []  # per ReLU: a dict of its columns, see ``_relu``
        for i, (kind, step, low_in, up_in, low_out, up_out, step_err) in enumerate(bounds):
            if kind == "affine":
                m = net.matrix(i, step, c_mat.shape[0])
                out_shape = tuple(int(d) for d in step.interval.lower.shape[1:])
                bias = (np.zeros(m.shape[0]) if step.bias is None
                        else np.broadcast_to(np.asarray(step.bias, np.float64),
                                             out_shape).reshape(-1))
                step_err = np.zeros(m.shape[0]) if step_err is None else step_err
                out_mag = np.abs(m) @ mag + np.abs(bias)
                # float64 rounding of the composition: sums of n_in + 1 terms, twice over.
                f64 = 2.0 * rules_base.gamma64(m.shape[1] + 2)
                err = np.abs(m) @ err + step_err + f64 * (out_mag + np.abs(m) @ err)
                if self.mutation == ("shift_error",):
                    err = np.zeros_like(err)
                c_mat, const = m @ c_mat, m @ const + bias
                mag = np.maximum(np.abs(low_out), np.abs(up_out))
                continue
            cols, c_mat, const, err = self._relu(i, cols, c_mat, const, err, low_in, up_in)
        self.cols, self.c_mat, self.const, self.err = cols, c_mat, const, err

    # -- building ---------------------------------------------------------------------------
    def _relu(self, index, cols, c_mat, const, err, low, up):
        """Columns of one ReLU layer; returns its output as (cols, C, const, err).

        Every unit that is not dead gets its pre-activation as a column ``z ∈ [l, u]`` with
        the row ``z − C·cols ∈ [const − err, const + err]`` (the float32 value, its rounding
        left to the solver: signed, not compounded through later layers); an unstable one also
        gets ``h ∈ [0, u]`` and ``δ`` with ``h ≥ z``, ``h ≤ z − l·(1 − δ)``, ``h ≤ u·δ``.
        """
        dead = up <= 0.0
        live = np.nonzero(~dead)[0]
        unstable = np.nonzero((low < 0.0) & ~dead)[0]
        z = self._vars(len(live), low[live], up[live], False)
        for unit, zc in zip(live, z):
            nz = np.nonzero(c_mat[unit])[0]
            self._row(np.append(cols[nz], zc), np.append(-c_mat[unit, nz], 1.0),
                      const[unit] - err[unit], const[unit] + err[unit])
        z_of = dict(zip(live.tolist(), z.tolist()))
        h = self._vars(len(unstable), 0.0, up[unstable], False)
        d = self._vars(len(unstable), 0.0, 1.0, True)
        for j, (unit, hc, dc) in enumerate(zip(unstable, h, d)):
            zc, l_u, u_u = z_of[int(unit)], low[unit], up[unit]
            self._row([hc, zc], [1.0, -1.0], 0.0, np.inf)  # h ≥ z
            if self.mutation != ("drop_upper", index, j):  # h − z − l·δ ≤ −l
                self._row([hc, zc, dc], [1.0, -1.0, -l_u], -np.inf, -l_u)
            self._row([hc, dc], [1.0, -u_u], -np.inf, 0.0)  # h ≤ u·δ
        self.layers.append({"live": live, "z": z, "c_rows": c_mat[live], "in_cols": cols,
                            "unstable": unstable, "h": h, "d": d, "low": low[unstable],
                            "up": up[unstable]})
        out_cols = np.array([z_of[int(u)] for u in live], np.int64)
        is_unstable = np.isin(live, unstable)
        out_cols[is_unstable] = h
        c_out = np.zeros((len(const), len(out_cols)))
        c_out[live, np.arange(len(live))] = 1.0
        return out_cols, c_out, np.zeros(len(const)), np.zeros(len(const))

    # -- solving ----------------------------------------------------------------------------
    def gains(self, cols, coef):
        """How far the margin ``coef·cols`` moves per unit change of each column (back through
        the rows), over all columns."""
        gain = np.zeros(len(self.lb))
        gain[cols] = np.abs(coef)
        for layer in reversed(self.layers):
            gain[layer["z"][np.isin(layer["live"], layer["unstable"])]] += gain[layer["h"]]
            gain[layer["in_cols"]] += np.abs(layer["c_rows"]).T @ gain[layer["z"]]
        return gain

    def margin_form(self, y, k):
        """(columns, coefficients, constant, allowance) of the margin z_y − z_k."""
        coef = self.c_mat[y] - self.c_mat[k]
        c = float(self.const[y] - self.const[k])
        gain = self.gains(self.cols, coef)
        rng = np.asarray(self.ub) - np.asarray(self.lb)
        z = np.concatenate([layer["z"] for layer in self.layers] or [np.zeros(0, np.int64)])
        h = np.concatenate([layer["h"] for layer in self.layers] or [np.zeros(0, np.int64)])
        widths = np.concatenate([layer["up"] - layer["low"] for layer in self.layers]
                                or [np.zeros(0)])
        # A relaxed binary moves its h by ≤ (u − l)·INTEGRALITY_TOL (a choice: its pixel by
        # ≤ INTEGRALITY_TOL); a row violated by FEASIBILITY_TOL moves its unit by that much;
        # reduced costs off by DUAL_TOL move an LP bound by ≤ DUAL_TOL·Σ ranges. Ten times over.
        tolerance = 10.0 * (milp.INTEGRALITY_TOL * (float(gain[self.choice_vars].sum())
                                                    + float(widths @ gain[h]))
                            + milp.FEASIBILITY_TOL * (float(gain[z].sum())
                                                      + 3.0 * float(gain[h].sum()))
                            + milp.DUAL_TOL * float(rng.sum()))
        allowance = (float(self.err[y] + self.err[k])
                     + 2.0 * rules_base.gamma64(len(self.cols) + 2)
                     * (float(np.abs(coef) @ np.abs(np.asarray(self.ub)[self.cols])) + abs(c))
                     + tolerance)
        if self.mutation == ("loose_margin",):
            allowance -= 1.0
        keep = coef != 0.0
        return self.cols[keep].astype(np.int64), coef[keep], c, allowance

    def solve_class(self, y, k, seconds):
        """As ``milp.Encoder.solve_class``; a box past ``MAX_CHOICES`` is out of time at once."""
        if self.too_large:
            return "limit", None
        return super().solve_class(y, k, seconds)


class _Form:
    """The choice columns' (pixel, bin) pairs, as ``milp.Encoder.decode`` and ``block`` read."""

    def __init__(self, free, choices):
        self.free, self.choices = free, choices
