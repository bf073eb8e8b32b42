"""MILP encoding of a BNN over one example's reachable quantized inputs (HiGHS, highspy).

The same sound over-approximation as ``sat`` (see its module doc), written as a
mixed-integer program instead of clauses, so that the real-valued first layer
and the logit margin keep their float64 coefficients (no rounding of weights to
integers) and the solver's LP relaxation prunes:

* one binary per (free pixel, reachable level above the lowest), at most one per pixel;
* a binary per first-layer unit whose sign is not fixed over the box (1 = +1):
  "+1 ⇒ f ≥ −E" and "−1 ⇒ f ≤ E" as big-M rows over the box's exact range of ``f``
  (``network.first_layer_form``);
* a binary per hidden binary unit not fixed: "+1 ⇒ d in its +1 set", "−1 ⇒ d in
  its −1 set" on the exact integer pre-activation ``d`` (``network.sign_sets``);
* per wrong class ``k``, the objective is the real margin ``z_y − z_k`` (linear in
  the last binary layer's inputs), minimised with a cutoff at
  ``E_margin + margin_tolerance``: no solution below the cutoff means ``k``
  cannot win anywhere in the box.
"""
import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from tfdisc.certify.exact import network

__all__ = ["Encoder", "HighsProcess", "MUTATIONS", "SOLVER", "margin_tolerance", "solve",
           "solver_version", "stop_processes"]

SOLVER = "highs"
# Test hooks: ("drop_hidden", layer, unit), ("shift_hidden", layer, unit), ("loose_margin",).
MUTATIONS = (None, "drop_hidden", "shift_hidden", "loose_margin")
FEASIBILITY_TOL = 1e-9  # HiGHS primal_feasibility_tolerance we set
# HiGHS's default mip_feasibility_tolerance (integrality). Below 1e-7 HiGHS 1.16 can spin in its
# root node, past time_limit and cancelSolve (seen on an MNIST BNN query), so we keep the default.
INTEGRALITY_TOL = 1e-6
DUAL_TOL = 1e-7  # HiGHS's default dual_feasibility_tolerance (the LP bounds that prune)


def _highspy():
    try:
        import highspy  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(
            "The exact BNN verifier needs HiGHS: `pip install tfdisc[verify]` "
            "(or `pip install highspy`).") from e
    return highspy


def solver_version():
    return f"{SOLVER} {_highspy().Highs().version()} (highspy)"


def margin_tolerance(encoder, coef, const):
    """Allowance on a solved margin ``Σ coef·b + const`` for HiGHS's tolerances.

    Every true input satisfies every row exactly, so tolerances only add
    solutions; what can go wrong is pruning: a node's LP bound is computed with
    binaries ``INTEGRALITY_TOL`` off 0/1 and reduced costs ``DUAL_TOL`` off
    feasibility, which moves the margin by at most Σ|coef|·INTEGRALITY_TOL +
    columns·DUAL_TOL. The allowance covers that ten times over.
    """
    return 10.0 * (float(np.sum(np.abs(coef))) * INTEGRALITY_TOL
                   + len(encoder.lb) * DUAL_TOL) + 1e-9 * abs(const)


class Encoder:
    """Rows and columns of one example.

    Args, like ``sat.Encoder``: net, table, lo_bin, hi_bin (flat), jitter, mutation.
    """

    def __init__(self, net, table, lo_bin, hi_bin, jitter, mutation=None):
        self.net = net
        self.mutation = mutation
        self.lo_bin = lo_bin
        self.lb, self.ub, self.integer = [], [], []
        self.rows = []  # (indices, values, lower, upper)
        self.form = form = network.first_layer_form(net, table, lo_bin, hi_bin, jitter)
        self.choice_vars = self._vars(len(form.choices))
        for p in form.free:
            idx = self.choice_vars[form.choices[:, 0] == p]
            if len(idx) > 1:
                self._row(idx, np.ones(len(idx)), -np.inf, 1.0)
        bits = self._first_layer(form)
        self.layer_bits = [bits]  # per sign layer: True/False (fixed) or a column per unit
        for li, layer in enumerate(net.binary[:-1]):
            bits = self._hidden(li, layer, bits)
            self.layer_bits.append(bits)
        self.bits = bits

    # -- building ---------------------------------------------------------------------------
    def _vars(self, n, lower=0.0, upper=1.0, integer=True):
        """``n`` new columns in [lower, upper] (scalars or arrays), integer or continuous."""
        start = len(self.lb)
        self.lb.extend(np.broadcast_to(np.asarray(lower, np.float64), (n,)).tolist())
        self.ub.extend(np.broadcast_to(np.asarray(upper, np.float64), (n,)).tolist())
        self.integer.extend([integer] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def _row(self, idx, val, lower, upper):
        self.rows.append((np.asarray(idx, np.int64), np.asarray(val, np.float64), lower, upper))

    def widen(self, lmin, lmax):
        """Allowance for a big-M row over a form with range [lmin, lmax]: a relaxed binary
        ``INTEGRALITY_TOL`` off 0/1 moves the row by up to its big-M times that (ten times
        over)."""
        return 10.0 * (FEASIBILITY_TOL + INTEGRALITY_TOL * (lmax - lmin + 1.0))

    def _implies(self, var, value, idx, val, lmin, lmax, half):
        """``var = value ⇒ Σ val·x ∈ half`` where ``half`` is ("ge", t) or ("le", t) and the
        form ranges over [lmin, lmax]."""
        kind, t = half
        if kind == "ge" and t > lmin:
            m = t - lmin
            if value:  # L − m·var ≥ lmin
                self._row(np.append(idx, var), np.append(val, -m), lmin, np.inf)
            else:  # L + m·var ≥ t
                self._row(np.append(idx, var), np.append(val, m), t, np.inf)
        elif kind == "le" and t < lmax:
            m = lmax - t
            if value:  # L + m·var ≤ lmax
                self._row(np.append(idx, var), np.append(val, m), -np.inf, lmax)
            else:  # L − m·var ≤ t
                self._row(np.append(idx, var), np.append(val, -m), -np.inf, t)

    def _first_layer(self, form):
        bits = []
        for j, fixed in enumerate(form.fixed):
            if fixed is not None:
                bits.append(fixed)
                continue
            var = int(self._vars(1)[0])
            bits.append(var)
            col = form.coef[:, j]
            nz = np.nonzero(col)[0]
            lmin, lmax = form.lo[j] - form.f0[j], form.hi[j] - form.f0[j]
            pad = form.slack[j] + self.widen(lmin, lmax)
            lmin, lmax = lmin - pad, lmax + pad
            # +1 possible only where f ≥ −E, −1 only where f < E (relaxed to ≤), f = f0 + L.
            self._implies(var, True, self.choice_vars[nz], col[nz], lmin, lmax,
                          ("ge", -form.err[j] - form.f0[j] - pad))
            self._implies(var, False, self.choice_vars[nz], col[nz], lmin, lmax,
                          ("le", form.err[j] - form.f0[j] + pad))
        return bits

    def _hidden(self, li, layer, bits):
        sets = network.sign_sets(layer)
        fixed = np.array([isinstance(b, (bool, np.bool_)) for b in bits])
        signs = np.array([(1 if b else -1) if f else 0 for f, b in zip(fixed, bits)], np.int64)
        free = np.nonzero(~fixed)[0]
        cols = np.array([bits[i] for i in free], np.int64)
        new_bits = []
        # The first binary layer's sums get bounds from the pixels its inputs share.
        tight = network.first_binary_bounds(self.form, layer) if li == 0 else None
        for j, (plus, minus) in enumerate(sets):
            w = layer.w[:, j]
            # d = Σ w_i s_i = const + Σ_free 2 w_i b_i   (s_i = 2 b_i − 1 for free inputs)
            const = int(w @ signs) - int(w[free].sum())
            coef = 2.0 * w[free].astype(np.float64)
            dmin = const + float(np.minimum(coef, 0).sum())
            dmax = const + float(np.maximum(coef, 0).sum())
            if tight is not None and self.mutation != ("no_tightening",):
                dmin, dmax = max(dmin, float(tight[0][j])), min(dmax, float(tight[1][j]))
                if dmin > dmax:
                    raise AssertionError(f"empty bounds on unit {j} of {layer.name}")
            can = [_meets(s, dmin, dmax) for s in (plus, minus)]
            if not can[1]:
                new_bits.append(True)
                continue
            if not can[0]:
                new_bits.append(False)
                continue
            var = int(self._vars(1)[0])
            new_bits.append(var)
            if self.mutation == ("drop_hidden", li, j):
                continue
            for value, half in ((True, plus), (False, minus)):
                if half == "all":
                    continue
                kind, t = half
                if self.mutation == ("shift_hidden", li, j):
                    t += 2 if kind == "ge" else -2  # one step of d: excludes a reachable value
                self._implies(var, value, cols, coef, dmin - const, dmax - const,
                              (kind, t - const))
        return new_bits

    # -- solving ----------------------------------------------------------------------------
    def _message(self):
        """The "model" message of ``_highs_worker``."""
        lengths = np.array([len(r[0]) for r in self.rows], np.int64)
        start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        index = (np.concatenate([r[0] for r in self.rows]).astype(np.int32) if self.rows
                 else np.zeros(0, np.int32))
        value = np.concatenate([r[1] for r in self.rows]) if self.rows else np.zeros(0)
        options = {"threads": 1, "primal_feasibility_tolerance": FEASIBILITY_TOL}
        return ("model", len(self.lb), np.asarray(self.lb, np.float64),
                np.asarray(self.ub, np.float64),
                np.array([r[2] for r in self.rows], np.float64),
                np.array([r[3] for r in self.rows], np.float64), start, index, value, options,
                np.asarray(self.integer, bool))

    def margin_form(self, y, k):
        """(columns, coefficients, constant, allowance) of the real margin z_y − z_k."""
        net, last = self.net, self.net.binary[-1]
        v = (net.w_out[:, y] - net.w_out[:, k]) * last.a
        g = last.w.astype(np.float64) @ v  # per input sign of the last binary layer
        c = float((net.w_out[:, y] - net.w_out[:, k]) @ last.s + net.b_out[y] - net.b_out[k])
        cols, coef = [], []
        for i, b in enumerate(self.bits):
            if isinstance(b, (bool, np.bool_)):
                c += g[i] if b else -g[i]
            else:
                c -= g[i]
                cols.append(b)
                coef.append(2.0 * g[i])
        coef = np.asarray(coef, np.float64)
        allowance = (float(net.margin_error(y, k)) + 1e-9 * (np.sum(np.abs(g)) + abs(c))
                     + margin_tolerance(self, coef, c))
        if self.mutation == ("loose_margin",):
            allowance -= 1.0
        return np.asarray(cols, np.int64), coef, c, allowance

    def solve_class(self, y, k, seconds):
        """Searches the box for inputs where z_k may reach z_y.

        Returns ("none", None): no such input (class k cannot win); ("found", bins): a
        candidate (flat bins) whose real margin is within the allowance; ("limit", None):
        out of time (``seconds``).
        """
        cols, coef, c, allowance = self.margin_form(y, k)
        cutoff = allowance - c  # Σ coef·x ≤ cutoff ⇔ margin ≤ allowance
        lb, ub = np.asarray(self.lb)[cols], np.asarray(self.ub)[cols]
        if cutoff < float(np.minimum(coef * lb, coef * ub).sum()):  # below any column choice
            return "none", None
        if seconds <= 0:
            return "limit", None
        cost = np.zeros(len(self.lb))
        cost[cols] = coef
        reply = solve(self, cost, cutoff, seconds)
        if reply is None:
            return "limit", None
        _, status, has, objective, values = reply
        if has and objective <= cutoff:
            return "found", self.decode(values)
        if status in ("kInfeasible", "kObjectiveBound", "kOptimal"):
            return "none", None
        return "limit", None

    def decode(self, values):
        """Bins of every pixel (flat) from a solution."""
        bins = self.lo_bin.copy()
        on = values[self.choice_vars] > 0.5
        for (p, b), chosen in zip(self.form.choices, on):
            if chosen:
                bins[p] = b
        return bins

    def block(self, bins):
        """Excludes this choice of free-pixel bins from further solutions (a no-good row)."""
        chosen = bins[self.form.choices[:, 0]] == self.form.choices[:, 1]
        # Σ_{chosen} (1 − u) + Σ_{not chosen} u ≥ 1
        val = np.where(chosen, -1.0, 1.0)
        lower = 1.0 - float(chosen.sum())
        self._row(self.choice_vars, val, lower, np.inf)
        _process().add_row(self, lower, np.inf, self.choice_vars.astype(np.int32), val)

    def close(self):
        _process().release(self)


class HighsProcess:
    """A ``_highs_worker`` child process holding one encoder's model at a time.

    A solve that overruns its time limit by ``GRACE`` seconds (HiGHS can spin past
    its own limit) kills the process; the next call starts a new one.
    """

    GRACE = 2.0

    def __init__(self):
        self.proc = None
        self.owner = None

    def _start(self):
        _highspy()  # the clear ImportError in the parent
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_highs_worker.py")
        self.proc = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.owner = None
        if self not in _ALL:
            _ALL.append(self)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc, self.owner = None, None

    def _send(self, obj):
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
        self.proc.stdin.flush()

    def _recv(self, timeout):
        """The reply, or None past ``timeout`` seconds (the process is then killed)."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        chunks, need, size = [], 8, None
        while need:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.kill()
                return None
            chunk = os.read(fd, need)
            if not chunk:
                raise RuntimeError("the HiGHS worker process died (see its stderr above)")
            chunks.append(chunk)
            need -= len(chunk)
            if not need and size is None:
                (size,) = struct.unpack("<Q", b"".join(chunks))
                chunks, need = [], size
        return pickle.loads(b"".join(chunks))

    def _load(self, encoder):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        if self.owner is not encoder:
            self._send(encoder._message())  # pylint: disable=protected-access
            if self._recv(60.0) is None:
                return False
            self.owner = encoder
        return True

    def solve(self, encoder, cost, cutoff, seconds):
        if not self._load(encoder):
            return None
        self._send(("solve", cost, cutoff, seconds))
        return self._recv(seconds + self.GRACE)

    def add_row(self, encoder, lower, upper, index, value):
        if self.owner is encoder and self.proc is not None:
            self._send(("row", lower, upper, index, value))
            if self._recv(60.0) is None:
                self.owner = None

    def release(self, encoder):
        if self.owner is encoder:
            self.owner = None


_LOCAL = threading.local()
_ALL = []


def _process():
    """This thread's ``HighsProcess``."""
    proc = getattr(_LOCAL, "process", None)
    if proc is None:
        proc = _LOCAL.process = HighsProcess()
    return proc


def solve(encoder, cost, cutoff, seconds):
    """Minimises ``cost`` over ``encoder``'s model in this thread's HiGHS process, stopping at the
    first solution below ``cutoff``; the worker's reply, or None past ``seconds`` (+ grace)."""
    return _process().solve(encoder, cost, cutoff, seconds)


@atexit.register
def stop_processes():
    """Stops every solver process (``verify`` calls it when it is done)."""
    while _ALL:
        _ALL.pop().kill()


def _meets(half, lo, hi):
    """True if the set ``half`` meets the integer range [lo, hi]."""
    if half == "all":
        return True
    if half == "none":
        return False
    kind, t = half
    return hi >= t if kind == "ge" else lo <= t
