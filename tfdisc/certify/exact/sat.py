"""SAT encoding of a BNN over one example's reachable quantized inputs (python-sat, Minicard).

Variables: one choice per (free pixel, reachable level), exactly one per pixel;
one Boolean per first-layer and hidden binary unit whose sign is not fixed over
the box (true = +1). Constraints, all sound over-approximations of what the
model computes in float32:

* first-layer unit: its real output is ``f0 + Σ c·choice``; it is +1 where
  ``f ≥ E`` and −1 where ``f < −E`` (``E`` bounds float32 rounding and the input
  quantizer's jitter). The two implications are pseudo-Boolean constraints with
  weights rounded to integers and thresholds moved outward by the total
  rounding; in the band between, the unit stays free.
* hidden binary unit: ``d = 2·agree − n`` is an exact integer; the units of
  ``a·d + s`` whose sign float32 rounding cannot flip give integer thresholds
  on ``agree`` (cardinality constraints); a ``d`` inside the band constrains nothing.
* the last binary layer and the logits are linear in that layer's ±1 inputs:
  for each wrong class k, "z_k ≥ z_y is possible" is one pseudo-Boolean
  constraint on ``margin_real ≤ E_margin``, guarded by a selector literal.

Weighted sums become native cardinality constraints (Minicard's ``atmost``)
over equivalent copies of the literals.
"""
import math
import threading

import numpy as np

from tfdisc.certify.exact import network

__all__ = ["Encoder", "MUTATIONS", "SOLVER", "solver_version"]

SOLVER = "minicard"
WEIGHT_MAX = 64  # largest integer weight after scaling a real linear form
MUTATIONS = (None, "drop_hidden", "shift_hidden")


def _pysat():
    try:
        from pysat import solvers  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise ImportError(
            "The exact BNN verifier needs python-sat: `pip install tfdisc[verify]` "
            "(or `pip install python-sat`).") from e
    return solvers


def solver_version():
    _pysat()
    import pysat  # pylint: disable=import-outside-toplevel

    return f"{SOLVER} (python-sat {pysat.__version__})"


class Encoder:
    """Builds the CNF + cardinality constraints of one example.

    Args:
      net: ``network.Network``.
      table: float32 levels of the quantizer; lo_bin, hi_bin: int per-pixel bin range
        (flat); jitter: the quantizer's float jitter.
      mutation: test hook (``MUTATIONS``) deliberately breaking one hidden-unit constraint
        ``(kind, unit)``; None in use.
    """

    def __init__(self, net, table, lo_bin, hi_bin, jitter, mutation=None):
        self.solver = _pysat().Solver(name=SOLVER)
        self.net = net
        self.nvars = 0
        self.copies = {}
        self.mutation = mutation
        self.margin_selectors = {}
        self.thresholds = []  # per hidden layer: [(unit, kind, agree threshold)]
        self.free = np.nonzero(hi_bin > lo_bin)[0]
        self.lo_bin, self.hi_bin = lo_bin, hi_bin
        self.choices = []  # per free pixel: [(bin, var)]
        for p in self.free:
            vs = [(b, self.new()) for b in range(lo_bin[p], hi_bin[p] + 1)]
            self.choices.append(vs)
            self.solver.add_clause([v for _, v in vs])
            self.solver.add_atmost([v for _, v in vs], 1)
        bits = self._first_layer(table, jitter)
        self.layer_bits = [bits]  # per sign layer: True/False (fixed) or a literal per unit
        for layer in net.binary[:-1]:
            bits = self._hidden(layer, bits)
            self.layer_bits.append(bits)
        self.bits = bits  # inputs of the last binary layer: bool or literal per unit

    def new(self):
        self.nvars += 1
        return self.nvars

    def _copies(self, lit, w):
        have = self.copies.setdefault(lit, [lit])
        while len(have) < w:
            c = self.new()
            self.solver.add_clause([-c, lit])
            self.solver.add_clause([c, -lit])
            have.append(c)
        return have[:w]

    def implies_ge(self, terms, t, target):
        """Adds ``Σ w·lit ≥ t ⇒ target`` (integer weights, any sign)."""
        lits, total = [], 0
        for lit, w in terms:
            if w < 0:
                lit, w, t = -lit, -w, t - w
            if w:
                lits.extend(self._copies(lit, int(w)))
                total += int(w)
        if t <= 0:
            self.solver.add_clause([target])
        elif t <= total:
            m = total - t + 1  # ¬target ⇒ Σ ≤ t − 1
            self.solver.add_atmost(lits + self._copies(-target, m), total)

    def _scaled(self, coef):
        """Integer weights for real coefficients, the scale, and the total rounding (real units)."""
        top = float(np.max(np.abs(coef))) if len(coef) else 0.0
        if top == 0.0:
            return np.zeros(len(coef), np.int64), 1.0, 0.0
        scale = WEIGHT_MAX / top
        ints = np.rint(coef * scale).astype(np.int64)
        slack = float(np.sum(np.abs(coef - ints / scale)))
        return ints, scale, slack * (1.0 + 1e-9) + 1e-12 * float(np.sum(np.abs(coef)))

    def _first_layer(self, table, jitter):
        form = network.first_layer_form(self.net, table, self.lo_bin, self.hi_bin, jitter)
        var = {(p, b): v for p, vs in zip(self.free, self.choices) for b, v in vs}
        lits = [var[(int(p), int(b))] for p, b in form.choices]
        bits = []
        for j, fixed in enumerate(form.fixed):
            if fixed is not None:
                bits.append(fixed)
                continue
            f0, err, slack64 = form.f0[j], form.err[j], form.slack[j]
            y = self.new()
            bits.append(y)
            ints, scale, slack = self._scaled(form.coef[:, j])
            slack += slack64
            terms = list(zip(lits, ints))
            # f ≥ F/scale − slack + f0: F ≥ ceil(scale·(E − f0 + slack)) ⇒ f ≥ E ⇒ +1.
            self.implies_ge(terms, math.ceil(scale * (err - f0 + slack)), y)
            # f ≤ F/scale + slack + f0 < −E ⇐ F ≤ ceil(scale·(−E − f0 − slack)) − 1 ⇒ −1.
            t_neg = math.ceil(scale * (-err - f0 - slack)) - 1
            self.implies_ge([(lit, -w) for lit, w in terms], -t_neg, -y)
        return bits

    def _hidden(self, layer, bits):
        n, m = layer.w.shape
        d = np.arange(-n, n + 1, 2)
        out = layer.a[None, :] * d[:, None] + layer.s[None, :]
        err = layer.out_error(d[:, None])  # [n + 1, m]
        pos = out - err >= 0.0  # certainly +1 (sign(0) = +1)
        neg = out + err < 0.0
        new_bits, record = [], []
        for j in range(m):
            # agree literal per input: s_i == w_ij
            const, lits = 0, []
            for i in range(n):
                b, w = bits[i], layer.w[i, j]
                if isinstance(b, bool):
                    const += int(b == (w > 0))
                else:
                    lits.append(b if w > 0 else -b)
            agree = (d + n) // 2
            reach = (agree >= const) & (agree <= const + len(lits))
            if np.all(pos[reach, j]):
                new_bits.append(True)
                continue
            if np.all(neg[reach, j]):
                new_bits.append(False)
                continue
            y = self.new()
            new_bits.append(y)
            for kind, mask, target in (("pos", pos[:, j], y), ("neg", neg[:, j], -y)):
                hits = agree[mask & reach]
                if not len(hits):
                    continue
                if layer.a[j] == 0:  # constant output: decided above or inside the band
                    continue
                up = (layer.a[j] > 0) == (kind == "pos")  # the set is agree ≥ t (else ≤ t)
                if up:  # agree ≥ t ⇒ target
                    t = int(hits.min())
                else:  # agree ≤ t ⇒ target: Σ ¬lit ≥ len(lits) + const − t
                    t = int(hits.max())
                if self.mutation == ("shift_hidden", len(self.thresholds), j, kind):
                    t += -1 if up else 1  # wrong by one: fires one count early
                if self.mutation == ("drop_hidden", len(self.thresholds), j, kind):
                    continue
                record.append((j, kind, up, t))
                if up:
                    self.implies_ge([(lit, 1) for lit in lits], t - const, target)
                else:
                    self.implies_ge([(-lit, 1) for lit in lits], len(lits) + const - t, target)
        self.thresholds.append(record)
        return new_bits

    def margin_selector(self, y, k):
        """A literal that, assumed true, asks for inputs with float32 z_k ≥ z_y (or False)."""
        net, last = self.net, self.net.binary[-1]
        v = (net.w_out[:, y] - net.w_out[:, k]) * last.a  # per last-layer unit
        g = last.w.astype(np.float64) @ v  # per input bit (±1)
        c = float((net.w_out[:, y] - net.w_out[:, k]) @ last.s + net.b_out[y] - net.b_out[k])
        e = float(net.margin_error(y, k))
        # margin = Σ g_i s_i + c, s_i = 2 b_i − 1; feasible if margin ≤ E.
        const, coef, lits = c, [], []
        for i, b in enumerate(self.bits):
            if isinstance(b, bool):
                const += g[i] if b else -g[i]
            else:
                const -= g[i]
                coef.append(2.0 * g[i])
                lits.append(b)
        coef = np.array(coef)
        const_slack = 1e-9 * (np.sum(np.abs(g)) + abs(c))
        ints, scale, slack = self._scaled(coef)
        # Σ coef·b ≤ E − const ⇒ Σ ints·b ≤ scale·(E − const + slack)
        t = math.floor(scale * (e - const + slack + const_slack))
        q = self.new()
        # q ⇒ Σ ints·b ≤ t  ⇔  (Σ ints·b ≥ t + 1) ⇒ ¬q
        self.implies_ge(list(zip(lits, ints)), t + 1, -q)
        return q

    def solve_class(self, y, k, seconds):
        """("none", None) if no input lets class ``k`` reach ``y``; ("found", bins) a
        candidate (flat bins); ("limit", None) past ``seconds``."""
        if seconds <= 0:
            return "limit", None
        q = self.margin_selectors.setdefault((y, k), None) or self.margin_selector(y, k)
        self.margin_selectors[(y, k)] = q
        timer = threading.Timer(seconds, self.solver.interrupt)
        timer.start()
        try:
            found = self.solver.solve_limited(assumptions=[q], expect_interrupt=True)
        finally:
            timer.cancel()
            self.solver.clear_interrupt()
        if found is None:
            return "limit", None
        if not found:
            return "none", None
        return "found", self.decode(self.solver.get_model())

    def close(self):
        self.solver.delete()

    def decode(self, model):
        """Bins of every pixel (flat) from a solver model."""
        true = set(v for v in model if v > 0)
        bins = self.lo_bin.copy()
        for p, vs in zip(self.free, self.choices):
            bins[p] = next(b for b, v in vs if v in true)
        return bins

    def block(self, bins):
        """Excludes this choice of free-pixel bins from further solutions."""
        clause = [-v for p, vs in zip(self.free, self.choices) for b, v in vs if b == bins[p]]
        self.solver.add_clause(clause)
