"""The paper's claims checked on our runs, over the bracket (proven, refuted or open)."""
from tfdisc.experiments.report_bracket import (
    bracket,
    fmt_best,
    fmt_bracket,
    is_exact)
from tfdisc.experiments.report_common import (
    DATASET_NAMES,
    NEAR_CLEAN_POINTS,
    PRECISION_NAMES,
    acc,
    cell_name,
    eps_label,
    eps_value,
    finite,
    fmt,
    paper_row,
    quality,
    select)

class Term:
    """One side of a claim: accuracy of ``rec`` at ε ``e`` (minus its clean accuracy if
    ``relative``), measured by FGSM, PGD, the best attack, or as the bracket interval."""

    def __init__(self, rec, e, relative=False):
        self.rec, self.e, self.relative = rec, e, relative

    def point(self, metric):
        if self.rec is None:
            return 0.0  # the constant side of a "within N points of clean" claim
        if metric == "best":
            b = bracket(self.rec, self.e)
            if b["best"] is None or (self.relative and b["clean"] is None):
                return None
            return b["best"] - (b["clean"] if self.relative else 0.0)
        a = finite(acc(self.rec, metric, self.e))
        if a is None:
            return None
        if not self.relative:
            return a
        clean = finite(acc(self.rec, metric, "0"))
        return None if clean is None else a - clean

    def text(self, metric):
        """The accuracy as shown in the claims table ("robust vs clean" if relative)."""
        v = self.point(metric)
        if v is None or not self.relative:
            return fmt(v)
        if metric == "best":
            clean = bracket(self.rec, self.e)["clean"]
        else:
            clean = acc(self.rec, metric, "0")
        return f"{v + clean:.1f} (clean {clean:.1f})"

    def interval(self):
        """(lower, upper): certified and best attack; lower None without certification."""
        if self.rec is None:
            return 0.0, 0.0
        b = bracket(self.rec, self.e)
        if b["best"] is None or (self.relative and b["clean"] is None):
            return None, None
        off = b["clean"] if self.relative else 0.0
        lo = None if b["certified"] is None else b["certified"] - off
        return lo, b["best"] - off


def _holds(kind, x, y, t):
    if kind == ">=":
        return x - y >= t
    if kind == ">":
        return x - y > t
    return abs(x - y) <= t  # "abs"


def bracket_verdict(kind, x, y, t):
    """'proven', 'refuted' or 'open' for the claim ``x − y (kind) t`` over the brackets;
    'no data' (and None) when a side has no finite best attack (not run, or NaN recorded)."""
    (xl, xh), (yl, yh) = x.interval(), y.interval()
    if xh is None or yh is None:
        return "no data", None
    neg = float("-inf")
    xl, yl = neg if xl is None else xl, neg if yl is None else yl
    if kind in (">=", ">"):
        if xl > neg and _holds(kind, xl, yh, t):
            return "proven", (xl, xh, yl, yh)
        if yl > neg and not _holds(kind, xh, yl, t):
            return "refuted", (xl, xh, yl, yh)
        return "open", (xl, xh, yl, yh)
    if xl > neg and yl > neg and max(xh - yl, yh - xl) <= t:
        return "proven", (xl, xh, yl, yh)
    if max(xl - yh, yl - xh) > t:
        return "refuted", (xl, xh, yl, yh)
    return "open", (xl, xh, yl, yh)


def _claims(records):
    """The paper's claims as (text, kind, x, y, threshold): ``x − y (kind) threshold``."""
    out = []

    def get(dataset, precision, bits, adv=False):
        best = select(records, dataset=dataset, adv_train=adv, precision=precision, bits=bits)
        return sorted(best.values(), key=quality)[-1] if best else None

    for dataset, small, large in (("mnist", ["0.1"], ["0.2", "0.3"]),
                                  ("cifar10", ["8/255", "16/255"], ["32/255"])):
        name = DATASET_NAMES[dataset]
        for prec in ("full", "binary"):
            r2, r8 = get(dataset, prec, 2), get(dataset, prec, 8)
            if r2 is None:
                continue
            label = f"{PRECISION_NAMES[prec]}-2b"
            for e in small:
                lab = eps_label(eps_value(e), dataset)
                out.append((f"{name}: {label} (no adv. training) keeps accuracy within "
                            f"{NEAR_CLEAN_POINTS:g} points of clean at ε={lab}", ">=",
                            Term(r2, e, relative=True), Term(None, e), -NEAR_CLEAN_POINTS))
                if r8 is not None:
                    out.append((f"{name}: {label} is more robust than {PRECISION_NAMES[prec]}-8b "
                                f"at ε={lab} (≥10 points)", ">=", Term(r2, e), Term(r8, e), 10.0))
        rb, rf = get(dataset, "binary", 8), get(dataset, "full", 8)
        if rb and rf and dataset == "cifar10":
            for e in ("1/255", "2/255"):
                out.append((f"{name}: BNN-8b stays closer to its clean accuracy than Full-8b at "
                            f"ε={e} (Fig. 5a; accuracy minus clean, in points)", ">",
                            Term(rb, e, relative=True), Term(rf, e, relative=True), 0.0))
        if rb and rf and dataset == "mnist":
            for e in large:
                out.append((f"{name}: Full-8b is more robust than BNN-8b at ε={e} (Fig. 5b, FCN2: "
                            "BNNs of small capacity are not more robust)", ">",
                            Term(rf, e), Term(rb, e), 0.0))
        a2, a8 = get(dataset, "full", 2, adv=True), get(dataset, "full", 8, adv=True)
        if a2 and a8:
            for e in small + large:
                lab = eps_label(eps_value(e), dataset)
                out.append((f"{name}: with R-FGSM adv. training, Full-2b beats Full-8b at "
                            f"ε={lab}", ">", Term(a2, e), Term(a8, e), 0.0))
        b2a, b2 = get(dataset, "binary", 2, adv=True), get(dataset, "binary", 2)
        if b2a and b2:
            for e in small:
                lab = eps_label(eps_value(e), dataset)
                out.append((f"{name}: BNN-2b without adv. training is within 5 points of BNN-2b "
                            f"with it at ε={lab} (Tables IV/V vs VI)", "abs", Term(b2, e),
                            Term(b2a, e), 5.0))
    return out


def _interval_text(lo, hi):
    if is_exact(lo, hi):
        return f"{hi:.1f} (exact)"
    return f"[{'–' if lo == float('-inf') else f'{lo:.1f}'}, {hi:.1f}]"


def section_claims(records, paper=None):
    rows = _claims(records)
    if not rows:
        return "## The paper's claims on this data\n\nNot enough runs to check any claim."
    lines = ["| Claim | FGSM (ours) | Under FGSM | PGD (ours) | Survives PGD | Best attack (ours) "
             "| Under best attack | Bracket [certified, best attack] | Verdict over the bracket "
             "|", "|---|---|---|---|---|---|---|---|---|"]
    for claim, kind, x, y, t in rows:
        cells = [claim]
        for metric, yes in (("fgsm", "holds"), ("pgd", "yes"), ("best", "holds")):
            xv, yv = x.point(metric), y.point(metric)
            ok = None if None in (xv, yv) else _holds(kind, xv, yv, t)
            cells += [f"{x.text(metric)} vs {y.text(metric)}" if y.rec is not None
                      else x.text(metric),
                      yes if ok else ("–" if ok is None else "**no**")]
        verdict, iv = bracket_verdict(kind, x, y, t)
        cells.append("–" if iv is None else (_interval_text(iv[0], iv[1]) + (
            f" vs {_interval_text(iv[2], iv[3])}" if y.rec is not None else "")))
        cells.append({"proven": "**proven** (certified)", "refuted": "**refuted** (attack vs "
                      "certified)" if y.rec is not None else "**refuted** (best attack)",
                      "open": "open",
                      "no data": "no data (not run, or NaN recorded)"}.get(verdict, verdict))
        lines.append("| " + " | ".join(cells) + " |")
    text = ("## The paper's claims on this data (automatic check)\n\n"
            "Accuracies in percent, ours only. FGSM and PGD: gradient straight-through the "
            "quantizer, on the test images of the tables' rows. Best attack: the lowest accuracy "
            "of any attack (FGSM, PGD, the gradient-free quantized search QS, black-box transfer, "
            "the certifier's counterexamples) on the certified test images (or, without "
            "certification, on the fewest images an attack used). A claim "
            "\"x − y ≥ t\" is **proven** when it holds between the certified accuracy of x and "
            "the best attack on y (certified ≤ true robust ≤ best attack), **refuted** when it "
            "fails between the best attack on x and the certified accuracy of y (or, against a "
            "constant such as clean accuracy, under the best attack alone), open otherwise. "
            "Claims \"within N points of clean\" use accuracy minus clean accuracy on the same "
            "images. Verdicts are about our models, not the paper's.\n\n" + "\n".join(lines))
    return text + "\n\n" + section_paper_bracket(records, paper)


def section_paper_bracket(records, paper):
    """The paper's numbers against our bracket, for every table cell that has both."""
    if not paper:
        return "### The paper's numbers against our bracket\n\nNo paper tables.json found."
    cells = []  # (table, cell, dataset, rec, paper row)
    for table, part, dataset, adv, criteria in (
            ("table_II", "mnist", "mnist", True, {"precision": "full"}),
            ("table_III", "mnist_fcn1", "mnist", True, {"bits": 8}),
            ("table_V", None, "mnist", False, {}),
            ("table_VI", "mnist_fcn1", "mnist", True, {"bits": 2, "precision": "binary"}),
            ("table_II", "cifar10", "cifar10", True, {"precision": "full"}),
            ("table_III", "cifar10", "cifar10", True, {"bits": 8}),
            ("table_IV", None, "cifar10", False, {}),
            ("table_VI", "cifar10", "cifar10", True, {"bits": 2, "precision": "binary"})):
        for (m, p, b), rec in sorted(select(records, dataset=dataset, adv_train=adv,
                                            **criteria).items()):
            pname = PRECISION_NAMES.get(p, p)
            name = {"table_II": f"{b}b", "table_III": pname}.get(table, f"{pname}-{b}b")
            row = paper_row(paper, table, part, name)
            if row:
                cells.append((table, cell_name(rec) + (" adv" if adv else ""), dataset, rec, row))
    lines = []
    for table, cell, dataset, rec, row in cells:
        for k, pv in sorted(row.items(), key=lambda kv: eps_value(kv[0])):
            if k == "0" or pv is None or finite(pv) is None:
                continue
            b = bracket(rec, k)
            if b["best"] is None:
                continue
            span = fmt_bracket(b)
            where = f"exactly {b['best']:.1f}" if b["exact"] else f"in {span}"
            if round(pv - b["best"], 6) > 0:
                verdict = (f"**excluded** for our model: {pv - b['best']:.1f} points above our "
                           f"best attack (an upper bound); true robust accuracy {where}"
                           + ("" if b["certified"] is not None else " (not certified)"))
            elif b["exact"]:
                verdict = (f"{'equal to' if round(pv - b['best'], 6) == 0 else 'below'} our "
                           f"model's true robust accuracy, which is exactly {b['best']:.1f} "
                           f"(every example decided)")
            elif b["certified"] is not None and pv < b["certified"]:
                verdict = (f"below our certified bound: our model is provably more robust "
                           f"({span})")
            elif b["certified"] is not None:
                verdict = f"not excluded: inside our bracket {span}"
            else:
                verdict = "not excluded (at or below our best attack); no certified bound"
            lines.append(f"| {table.replace('table_', 'Table ')} | {cell} ({rec['model']}) | "
                         f"{eps_label(eps_value(k), dataset)} | {pv:.1f} | "
                         f"{fmt(b['certified'])} | {fmt_best(b)} | first {b['examples']} | "
                         f"{verdict} |")
    if not lines:
        return "### The paper's numbers against our bracket\n\nNo cell has both."
    return ("### The paper's numbers against our bracket\n\n"
            "The paper's numbers are FGSM on its own models (FCN1 for Tables III/V/VI MNIST, "
            "AlexNet for CIFAR10); ours bracket the true robust accuracy of our reproduction "
            "(certified ≤ true ≤ best attack). A paper number above our best attack is not a "
            "robust accuracy of our model, whatever the certificate says; where the paper's "
            "model is larger (FCN1 vs our FCN2) it may still differ.\n\n"
            "| Table | Cell | ε | Paper (FGSM) | Certified (ours) | Best attack (ours) | Test "
            "images | Verdict |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines))

