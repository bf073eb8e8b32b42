r"""Gathers every results.json into the paper's Tables I–VI, draws the ε–accuracy figures.

  python -m tfdisc.experiments.report --results_dir=experiments/results \
      --out=experiments/REPORT.md

Each table sets tfdisc's numbers (FGSM and, where run, PGD; gradient through
the input quantizer as recorded) beside the paper's (``tables.json``, FGSM
white-box). Every row states model, precision, input bits, attack, ε (column
headers), gradient, training schedule and data. Runs made with the quantizer's
zero gradient (``gradient=none``) never enter the tables: they appear only in
the gradient-masking section, next to a straight-through attack on the same
weights. PNG figures (Figs. 4, 5, 7, 8 style, and Fig. 6 if an
``activations.json`` is found) are written to --plots_dir.
"""
import json
import os
import shutil

from absl import app, flags

from tfdisc import results
from tfdisc.experiments import report_capacity

FLAGS = flags.FLAGS

flags.DEFINE_string("results_dir", "experiments/results", "Directory searched (recursively) for "
                    "results.json and activations.json files.")
flags.DEFINE_string("out", "experiments/REPORT.md", "Markdown report to write.")
flags.DEFINE_string("plots_dir", None, "Where PNG figures go; default OUT's directory/plots.")
flags.DEFINE_string("paper_tables", None, "The paper's tables.json; default "
                    "../shared/paper/tables.json next to the repository, if present.")

_DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100",
                  "imagenet2012": "ImageNet", "fashion_mnist": "Fashion-MNIST"}
_PRECISION_NAMES = {"full": "Full", "binary": "BNN", "xnor": "XNOR"}
# A claim "holds" when adversarial accuracy stays within this many points of clean.
NEAR_CLEAN_POINTS = 5.0


eps_value = results.parse_epsilon
eps_key = results.epsilon_key


def eps_label(value, dataset):
    if dataset in ("mnist", "fashion_mnist"):
        return f"{value:g}"
    return f"{round(value * 255):g}/255"


# ------------------------------------------------------------------ loading

load_results = results.load


def load_activations(results_dir):
    found = []
    for root, _, files in sorted(os.walk(results_dir)):
        if "activations.json" in files:
            with open(os.path.join(root, "activations.json")) as f:
                found.append((root, json.load(f)))
    return found


def default_paper_tables():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    path = os.path.join(os.path.dirname(repo), "shared", "paper", "tables.json")
    return path if os.path.isfile(path) else None


# ------------------------------------------------------------------ selection

def _quality(rec):
    return (len(rec.get("attacks") or {}), rec.get("data", {}).get("test_examples") or 0,
            rec.get("epochs") or 0, rec.get("_path"))


def honest(rec):
    """Only runs attacked with a gradient through the quantizer enter the tables."""
    return rec.get("gradient") in ("straight_through", None)


def select(records, **criteria):
    """Best record per (model, precision, bits) matching ``criteria`` (adv_train, dataset...)."""
    best = {}
    for rec in records:
        if not honest(rec) or rec.get("transfer_only"):
            continue
        if any(rec.get(k, False if k == "adv_train" else None) != v for k, v in criteria.items()):
            continue
        key = (rec["model"], rec["precision"], rec["bits"])
        if key not in best or _quality(rec) > _quality(best[key]):
            best[key] = rec
    return best


def acc(rec, attack, key):
    """Accuracy (percent) of ``rec`` under ``attack`` at ε ``key`` ('0' = clean), or None."""
    a = (rec.get("attacks") or {}).get(attack)
    if a is None:
        return None
    if key in ("0", 0, 0.0):
        return 100.0 * a.get("clean_accuracy", rec["clean_accuracy"])
    value = a["adversarial_accuracy"].get(eps_key(eps_value(key)))
    return None if value is None else 100.0 * value


def fmt(value):
    return "–" if value is None else f"{value:.1f}"


# ------------------------------------------------------------------ bracket (issue 11)

# The attacks whose gradient goes through the model; a non-gradient attack beating one of them
# by more than MASKING_POINTS (same test images) flags likely gradient masking.
GRADIENT_ATTACKS = ("fgsm", "pgd", "rfgsm")
NON_GRADIENT = ("quantized_search", "transfer")
MASKING_POINTS = 2.0
SOURCE_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "rfgsm": "R-FGSM", "quantized_search": "QS",
                "transfer": "transfer", "certify": "certifier's counterexamples"}


def sources(rec):
    """Every concrete attack on ``rec``: name → {examples, clean_accuracy, adversarial_accuracy,
    prefixes} (fractions). ``certify``: the counterexamples that ``--certify`` found (its search
    and complete mode), as accuracy 1 − counterexample fraction — an upper bound too."""
    out = {name: a for name, a in (rec.get("attacks") or {}).items()
           if isinstance(a, dict) and "adversarial_accuracy" in a}
    if rec.get("transfer"):
        out["transfer"] = rec["transfer"]
    cert = rec.get("certified")
    if cert and cert.get("counterexample"):
        out["certify"] = {"examples": cert.get("examples"), "clean_accuracy": None,
                          "adversarial_accuracy": {k: 1.0 - v for k, v in
                                                   cert["counterexample"].items()}}
    return out


def _on_first(entry, n, key):
    """Accuracy (fraction) of an attack entry on the first ``n`` test images, or None."""
    if entry.get("examples") == n:
        part = entry
    else:
        part = (entry.get("prefixes") or {}).get(str(n))
        if part is None:
            return None
    if key is None:
        return part.get("clean_accuracy")
    return part["adversarial_accuracy"].get(key)


def certified_acc(rec, e):
    """(certified accuracy in percent, examples) at ε ``e``, or (None, None) without --certify."""
    cert = rec.get("certified") or {}
    value = (cert.get("certified") or {}).get(eps_key(eps_value(e)))
    return (None, None) if value is None else (100.0 * value, cert.get("examples"))


def bracket(rec, e):
    """Certified and best-attack accuracy of ``rec`` at ε ``e`` on one set of test images.

    The attacks ran on prefixes of the test set (FGSM/PGD on all of it, the quantized search
    and --certify on the first N); each records its accuracy on the others' prefixes, so the
    bracket compares like with like on ``examples`` images: the certified ones if the run was
    certified, else the fewest any attack used. Attacks with no record on those images are
    listed in ``left_out`` (name → their own examples) and not minimized over.

    Returns dict (percent): ``certified``, ``best``, ``best_by`` (attack names reaching it),
    ``values`` {attack: accuracy on those images}, ``clean`` (their clean accuracy, if
    recorded), ``examples``, ``left_out``.
    """
    key = eps_key(eps_value(e))
    src = sources(rec)
    cert, cert_n = certified_acc(rec, e)
    sizes = [a.get("examples") for a in src.values() if a.get("examples")]
    n = cert_n or (min(sizes) if sizes else None)
    values, left_out, clean = {}, {}, None
    for name, entry in src.items():
        v = _on_first(entry, n, key)
        if v is None:
            if key in entry.get("adversarial_accuracy", {}):
                left_out[name] = entry.get("examples")
            continue
        values[name] = 100.0 * v
        c = _on_first(entry, n, None)
        if clean is None and c is not None:
            clean = 100.0 * c
    best = min(values.values()) if values else None
    return {"certified": cert, "best": best, "examples": n, "clean": clean,
            "best_by": [k for k, v in values.items() if v == best], "values": values,
            "left_out": left_out}


def masking_flags(rec, epsilons, points=MASKING_POINTS):
    """Likely gradient masking: a gradient attack weaker than the quantized-space attack or
    transfer by more than ``points`` on the same images. Returns a list of dicts."""
    flags_ = []
    for e in epsilons:
        b = bracket(rec, e)
        for g in GRADIENT_ATTACKS:
            for other in NON_GRADIENT:
                if g in b["values"] and other in b["values"]:
                    gap = b["values"][g] - b["values"][other]
                    if round(gap, 6) > points:
                        flags_.append({"eps": e, "attack": g, "by": other, "gap": gap,
                                       "attack_accuracy": b["values"][g],
                                       "other_accuracy": b["values"][other],
                                       "examples": b["examples"]})
    return flags_


def soundness_violations(rec, epsilons):
    """ε where the certified accuracy exceeds an attack's on the same images (a soundness bug)."""
    bad = []
    for e in epsilons:
        b = bracket(rec, e)
        if b["certified"] is not None and b["best"] is not None \
                and round(b["certified"] - b["best"], 6) > 0:
            bad.append((e, b))
    return bad


def fmt_best(b):
    if b["best"] is None:
        return "–"
    return f"{b['best']:.1f} ({'/'.join(SOURCE_NAMES.get(k, k) for k in b['best_by'])})"


def describe_bracket(rec):
    """How the quantized search, certification and best attack of a run were made."""
    attacks = rec.get("attacks") or {}
    parts = []
    qs = attacks.get("quantized_search")
    if qs:
        parts.append(f"QS = gradient-free quantized-space search (no gradient; restarts "
                     f"{qs.get('restarts')}, iterations {qs.get('iterations')}, candidates "
                     f"{qs.get('candidates')}) on the first {qs.get('examples')} test images")
    cert = rec.get("certified")
    if cert:
        method = cert.get("method") or {}
        parts.append(f"certified: interval bounds + complete mode (≤ "
                     f"{method.get('complete_max_free')} free pixels) on the first "
                     f"{cert.get('examples')} test images")
    else:
        parts.append("not certified (run made without --certify)")
    brackets = [bracket(rec, e) for e in _record_eps(rec)]
    ns = {b["examples"] for b in brackets if b["examples"]}
    if ns:
        used = sorted({k for b in brackets for k in b["values"]})
        parts.append("best attack = min over " + ", ".join(SOURCE_NAMES.get(k, k) for k in used)
                     + f" on the same first {min(ns)} images")
        left = {k: n for b in brackets for k, n in b["left_out"].items()}
        if left:
            parts.append("left out of the best attack (no record on those images): " + ", ".join(
                f"{SOURCE_NAMES.get(k, k)} (ran on {n})" for k, n in sorted(left.items())))
    return "; ".join(parts)


def _record_eps(rec):
    keys = set()
    for a in sources(rec).values():
        keys.update(a.get("adversarial_accuracy", {}))
    keys.update(((rec.get("certified") or {}).get("certified") or {}))
    return sorted(keys, key=eps_value)


def describe(rec):
    """Model, precision, bits, gradient, schedule and data of a run, for a table row."""
    d = rec.get("data", {})
    src = d.get("source", "?")
    adv = rec.get("adv_train_params")
    sched = f"{rec.get('epochs')} ep, width {rec.get('width')}"
    if rec.get("init_from"):
        sched = (f"evaluation only, weights of `{os.path.basename(str(rec['init_from']).rstrip('/'))}`"
                 f", width {rec.get('width')}")
    if d.get("train_examples"):
        sched += f", {d['train_examples']} train"
    if adv:
        sched += f", R-FGSM ε={eps_label(adv['eps'], rec['dataset'])} α=ε/2 mix {adv['adv_ratio']:g}"
    attacks = rec.get("attacks") or {}
    examples = {a.get("examples") for a in attacks.values()}
    test = "/".join(str(e) for e in sorted(x for x in examples if x)) or d.get("test_examples")
    pgd = attacks.get("pgd")
    pgd_txt = (f"; PGD {pgd.get('steps')} steps, step {pgd.get('step_size')}, random start"
               if pgd else "")
    fgsm = attacks.get("fgsm")
    if pgd and fgsm and pgd.get("examples") != fgsm.get("examples"):
        pgd_txt += (f" on the first {pgd.get('examples')} test images (their clean accuracy "
                    f"{fmt(100 * pgd['clean_accuracy'])})")
    return (f"{rec['model']} {rec['precision']} {rec['bits']}b; grad {rec.get('gradient')}; "
            f"{sched}; {_DATASET_NAMES.get(rec['dataset'], rec['dataset'])} ({src}), "
            f"test {test}{pgd_txt}; {describe_bracket(rec)}; `{rec['_path']}`")


# ------------------------------------------------------------------ tables

def paper_row(paper, table, part, name):
    t = paper.get(table, {}) if paper else {}
    rows = t.get(part, []) if part else t.get("rows", [])
    for row in rows:
        if row["name"] == name:
            return row.get("accuracy_percent", {})
    return None


def cell_name(rec):
    return f"{_PRECISION_NAMES.get(rec['precision'], rec['precision'])}-{rec['bits']}b"


def comparison_table(rows, epsilons, dataset):
    """Markdown table: per ε, ours FGSM | ours PGD | paper (FGSM)."""
    header = ["Cell", "Clean (ours)", "Clean (paper)"]
    for e in epsilons:
        lab = eps_label(eps_value(e), dataset)
        header += [f"ε={lab} FGSM", f"ε={lab} PGD", f"ε={lab} QS", f"ε={lab} certified",
                   f"ε={lab} best attack", f"ε={lab} paper"]
    header.append("Model, precision, bits, gradient, schedule, data")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rec, paper in rows:
        cells = [name]
        cells.append(fmt(acc(rec, "fgsm", "0") if rec else None) if rec else "not run")
        cells.append(fmt(paper.get("0")) if paper else "–")
        for e in epsilons:
            pv = None
            if paper:
                for k, v in paper.items():
                    if k != "0" and abs(eps_value(k) - eps_value(e)) < 1e-6:
                        pv = v
            if rec is None:
                cells += ["–"] * 5 + [fmt(pv)]
                continue
            b = bracket(rec, e)
            flagged = {f["attack"] for f in masking_flags(rec, [e])}
            cells += [fmt(acc(rec, a, e)) + (" ⚠" if a in flagged else "") for a in ("fgsm", "pgd")]
            cells += [fmt(acc(rec, "quantized_search", e)), fmt(b["certified"]), fmt_best(b),
                      fmt(pv)]
        cells.append(describe(rec) if rec else "no run committed")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE_LEGEND = (
    "FGSM/PGD: white-box, gradient straight-through the quantizer, on the test images the row "
    "states. QS: the gradient-free quantized-space search (model outputs only, cannot be "
    "masked). Certified: proven robust accuracy (interval bounds and complete mode over the "
    "exact reachable quantized box) — a lower bound; best attack: the lowest accuracy any "
    "attack reached (FGSM, PGD, QS, black-box transfer where run, and the certifier's own "
    "counterexamples), an upper bound, on the same images as the certified column. "
    "certified ≤ true robust accuracy ≤ best attack. ⚠ = likely gradient masking: that "
    f"gradient attack is weaker than QS or transfer by more than {MASKING_POINTS:g} points on "
    "the same images (see the masking flags section). – = not run.")


MNIST_EPS = ["0.1", "0.2", "0.3"]
CIFAR_EPS = ["8/255", "16/255", "32/255"]


def _grid(best, precisions, bits_list, model=None):
    out = []
    for prec in precisions:
        for bits in bits_list:
            recs = [r for (m, p, b), r in sorted(best.items())
                    if p == prec and b == bits and (model is None or m == model)]
            out.append((prec, bits, recs))
    return out


def section_tables(records, paper):
    parts = []
    eps_of = {"mnist": MNIST_EPS, "cifar10": CIFAR_EPS}

    # Table I
    best = select(records, dataset="cifar10", adv_train=False, precision="full")
    lines = ["| Input bits | Clean (ours) | Clean (paper, AlexNet 20 ep) | Model, precision, "
             "bits, gradient, schedule, data |", "|---|---|---|---|"]
    paper_i = {r["name"]: r["clean_accuracy_percent"] for r in
               (paper or {}).get("table_I", {}).get("rows", [])}
    for bits in (2, 3, 4, 8):
        recs = [r for (m, p, b), r in sorted(best.items()) if b == bits]
        for rec in recs or [None]:
            lines.append(f"| {bits}b | {fmt(acc(rec, 'fgsm', '0')) if rec else 'not run'} | "
                         f"{fmt(paper_i.get(f'{bits}b'))} | "
                         f"{describe(rec) if rec else 'no run committed'} |")
    parts.append("## Table I — CIFAR10 clean accuracy vs input bits (full precision)\n\n"
                 + "\n".join(lines))

    # Table II: adversarial training, full precision, 2b vs 8b
    text = ["## Table II — R-FGSM adversarial training, full precision, 2b vs 8b input"]
    for dataset, part in (("mnist", "mnist"), ("cifar10", "cifar10")):
        best = select(records, dataset=dataset, adv_train=True, precision="full")
        rows = []
        for bits in (2, 8):
            for rec in [r for (m, p, b), r in sorted(best.items()) if b == bits] or [None]:
                rows.append((f"Full-{bits}b adv" + (f" ({rec['model']})" if rec else ""), rec,
                             paper_row(paper, "table_II", part, f"{bits}b")))
        text.append(f"### {_DATASET_NAMES[dataset]}\n\n"
                    + comparison_table(rows, eps_of[dataset], dataset))
    parts.append("\n\n".join(text))

    # Table III: adversarial training, BNN vs full, 8b
    text = ["## Table III — R-FGSM adversarial training, BNN vs full precision, 8b input"]
    for dataset, part in (("mnist", "mnist_fcn1"), ("cifar10", "cifar10")):
        best = select(records, dataset=dataset, adv_train=True, bits=8)
        rows = []
        for prec, pname in (("binary", "BNN"), ("full", "Full")):
            for rec in [r for (m, p, b), r in sorted(best.items()) if p == prec] or [None]:
                rows.append((f"{pname}-8b adv" + (f" ({rec['model']})" if rec else ""), rec,
                             paper_row(paper, "table_III", part, pname)))
        text.append(f"### {_DATASET_NAMES[dataset]} (paper: "
                    f"{'FCN1' if dataset == 'mnist' else 'AlexNet'})\n\n"
                    + comparison_table(rows, eps_of[dataset], dataset))
    parts.append("\n\n".join(text))

    # Tables IV (CIFAR10) and V (MNIST): no adversarial training
    for table, dataset, title in (
            ("table_IV", "cifar10", "## Table IV — CIFAR10, no adversarial training, input × "
                                    "parameter discretization (paper: AlexNet, 40 epochs)"),
            ("table_V", "mnist", "## Table V — MNIST, no adversarial training (paper: FCN1 "
                                 "784-6144×4-10, 20 epochs)")):
        best = select(records, dataset=dataset, adv_train=False)
        rows = []
        for prec, pname in (("binary", "BNN"), ("full", "Full")):
            for bits in (2, 4, 8):
                recs = [r for (m, p, b), r in sorted(best.items()) if p == prec and b == bits]
                for rec in recs or [None]:
                    rows.append((f"{pname}-{bits}b" + (f" ({rec['model']})" if rec else ""), rec,
                                 paper_row(paper, table, None, f"{pname}-{bits}b")))
        parts.append(title + "\n\n" + comparison_table(rows, eps_of[dataset], dataset))

    # Table VI
    text = ["## Table VI — R-FGSM adversarial training with 2b-input BNNs"]
    for dataset, part in (("mnist", "mnist_fcn1"), ("cifar10", "cifar10")):
        best = select(records, dataset=dataset, adv_train=True, bits=2, precision="binary")
        rows = [(f"BNN-2b adv ({rec['model']})", rec, paper_row(paper, "table_VI", part, "BNN-2b"))
                for rec in best.values()] or [("BNN-2b adv", None,
                                               paper_row(paper, "table_VI", part, "BNN-2b"))]
        text.append(f"### {_DATASET_NAMES[dataset]}\n\n"
                    + comparison_table(rows, eps_of[dataset], dataset))
    parts.append("\n\n".join(text))
    return parts


def section_other(records):
    """CIFAR100 / ImageNet (Figs. 7, 8) runs, if any."""
    lines = []
    for dataset in ("cifar100", "imagenet2012"):
        recs = [r for r in records if r["dataset"] == dataset and honest(r)]
        if not recs:
            lines.append(f"* {_DATASET_NAMES[dataset]}: no run — the data is not available "
                         "offline here. The binary "
                         f"`python -m tfdisc.experiments.{'cifar100' if dataset == 'cifar100' else 'imagenet'}` "
                         "is exercised by the test suite on small synthetic data in the right "
                         "format (" + ("CIFAR100 python batches" if dataset == "cifar100"
                                       else "an ImageNet image-folder tree, top-1 and top-5")
                         + ").")
            continue
        for rec in recs:
            eps = sorted(rec["adversarial_accuracy"], key=eps_value)
            top5 = rec.get("top5")
            lines.append(f"* {describe(rec)}: clean {fmt(100 * rec['clean_accuracy'])}, "
                         + ", ".join(f"ε={eps_label(eps_value(k), dataset)}: "
                                     f"{fmt(100 * rec['adversarial_accuracy'][k])}" for k in eps)
                         + (f"; top-5 clean {fmt(100 * top5['clean_accuracy'])}" if top5 else ""))
    return "## CIFAR100 (Fig. 7) and ImageNet (Fig. 8)\n\n" + "\n".join(lines)


def section_transfer(records):
    rows = [r for r in records if r.get("transfer") and honest(r)]
    if not rows:
        return "## Black-box transfer\n\nNo transfer run committed."
    lines = ["| Target | Source | Attack | Clean | " + " | ".join(
        ["ε (transfer / white-box FGSM / white-box PGD)"]) + " | Target details |",
             "|---|---|---|---|---|---|"]
    for rec in sorted(rows, key=lambda r: (r["dataset"], r["_path"])):
        t = rec["transfer"]
        cells = []
        for k in sorted(t["adversarial_accuracy"], key=eps_value):
            cells.append(f"{eps_label(eps_value(k), rec['dataset'])}: "
                         f"{fmt(100 * t['adversarial_accuracy'][k])} / {fmt(acc(rec, 'fgsm', k))}"
                         f" / {fmt(acc(rec, 'pgd', k))}")
        lines.append(f"| {cell_name(rec)}{' adv' if rec.get('adv_train') else ''} "
                     f"({rec['model']}) | {t['source_model']} (grad {t['source_gradient']}) | "
                     f"{t['attack'].upper()} | {fmt(100 * t['clean_accuracy'])} | "
                     f"{'; '.join(cells)} | {describe(rec)} |")
    return ("## Black-box transfer (adversarial examples crafted on the source, accuracy of the "
            "target)\n\n" + "\n".join(lines))


def section_masking(records):
    rows = [r for r in records if not honest(r)]
    text = ["## Gradient masking check (NOT a defence)",
            "Runs with `--gradient=none` take the true zero gradient of `floor` in the input "
            "quantizer, so FGSM/PGD cannot move the input: their \"adversarial accuracy\" is "
            "an artefact of gradient masking, never robustness, and they are excluded from "
            "every table above. Each is shown next to the same weights attacked through the "
            "straight-through (BPDA) gradient."]
    if not rows:
        text.append("No such run committed.")
        return "\n\n".join(text)
    lines = ["| Run | Attack | ε | Masked (gradient none) | Same weights, straight-through |",
             "|---|---|---|---|---|"]
    for rec in rows:
        check = rec.get("straight_through_check") or {}
        for name, a in (rec.get("attacks") or {}).items():
            for k in sorted(a["adversarial_accuracy"], key=eps_value):
                st = check.get(name, {}).get("adversarial_accuracy", {}).get(k)
                lines.append(f"| {cell_name(rec)} {rec['model']} `{rec['_path']}` | "
                             f"{name.upper()} | {eps_label(eps_value(k), rec['dataset'])} | "
                             f"{fmt(100 * a['adversarial_accuracy'][k])} (zero-gradient "
                             f"fraction {a.get('zero_gradient_fraction', float('nan')):.2f}) | "
                             f"{fmt(None if st is None else 100 * st)} |")
    text.append("\n".join(lines))
    return "\n\n".join(text)


def table_records(records):
    """The runs that enter the comparison tables (one per cell), in a stable order."""
    seen = {}
    for dataset in ("mnist", "cifar10"):
        for adv in (False, True):
            for rec in select(records, dataset=dataset, adv_train=adv).values():
                seen[rec["_path"]] = rec
    return [seen[k] for k in sorted(seen)]


def section_masking_flags(records):
    """Automatic gradient-masking flags and bracket soundness check over the table runs."""
    eps_of = {"mnist": MNIST_EPS, "cifar10": CIFAR_EPS}
    lines, bad = [], []
    for rec in table_records(records):
        eps = eps_of.get(rec["dataset"], [])
        for f in masking_flags(rec, eps):
            lines.append(f"| {cell_name(rec)}{' adv' if rec.get('adv_train') else ''} "
                         f"({rec['model']}) | {eps_label(eps_value(f['eps']), rec['dataset'])} | "
                         f"{SOURCE_NAMES[f['attack']]} {f['attack_accuracy']:.1f} | "
                         f"{SOURCE_NAMES[f['by']]} {f['other_accuracy']:.1f} | "
                         f"{f['gap']:.1f} | first {f['examples']} | `{rec['_path']}` |")
        bad += [(rec, e, b) for e, b in soundness_violations(rec, eps)]
    text = ["## Likely gradient masking (automatic flags) and bracket soundness",
            f"A gradient attack (FGSM, PGD; gradient straight-through the quantizer) that is "
            f"weaker than the gradient-free quantized-space search (QS) or than black-box "
            f"transfer by more than {MASKING_POINTS:g} points, on the same test images, is "
            "flagged as **likely gradient masking**: its accuracy overstates robustness."]
    if lines:
        text.append("| Run | ε | Gradient attack | Stronger attack without the model's gradient | "
                    "Gap (points) | Test images | results.json |\n|---|---|---|---|---|---|---|\n"
                    + "\n".join(lines))
    else:
        text.append("No flag raised on the runs in the tables.")
    if bad:
        text.append("**SOUNDNESS VIOLATION** — certified accuracy above an attack's accuracy on "
                    "the same images (a certified example was broken):\n\n" + "\n".join(
                        f"* `{rec['_path']}` ε={eps_label(eps_value(e), rec['dataset'])}: "
                        f"certified {b['certified']:.1f} > {fmt_best(b)} on the first "
                        f"{b['examples']}" for rec, e, b in bad))
    else:
        text.append("Soundness: on every certified run, certified ≤ every attack's accuracy on "
                    "the same images (checked here on the aggregate numbers; "
                    "tests/certify_test.py checks it example by example).")
    return "\n\n".join(text)


def bracket_plot(rec, epsilons, path):
    """Certified and best-attack accuracy against ε for one run (the bracket), as a PNG."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    dataset = rec["dataset"]
    scale = 1.0 if dataset in ("mnist", "fashion_mnist") else 255.0
    brackets = [(eps_value(e), bracket(rec, e)) for e in epsilons]
    brackets = [(x, b) for x, b in brackets if b["best"] is not None or b["certified"] is not None]
    if not brackets:
        return None
    clean = next((b["clean"] for _, b in brackets if b["clean"] is not None), None)
    x0 = [0.0] if clean is not None else []
    xs = x0 + [x * scale for x, _ in brackets]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    best = [clean] * len(x0) + [b["best"] for _, b in brackets]
    ax.plot(xs, [float("nan") if v is None else v for v in best], "-o", color="C3",
            label="best attack (upper bound)")
    cert = [b["certified"] for _, b in brackets]
    certified = any(v is not None for v in cert)
    if certified:
        cert = [clean] * len(x0) + cert
        ax.plot(xs, [float("nan") if v is None else v for v in cert], "-s", color="C2",
                label="certified (lower bound)")
        ax.fill_between(xs, [0 if v is None else v for v in cert],
                        [0 if v is None else v for v in best], color="C1", alpha=0.15,
                        label="true robust accuracy lies here")
    for name, style, color in (("fgsm", ":", "C0"), ("pgd", "--", "C1"),
                               ("quantized_search", "-.", "C4"), ("transfer", ":", "C5")):
        ys = [b["values"].get(name) for _, b in brackets]
        if any(v is not None for v in ys):
            ax.plot(xs, [clean] * len(x0) + [float("nan") if v is None else v for v in ys],
                    style, color=color, linewidth=1.2, alpha=0.8, label=SOURCE_NAMES[name])
    n = brackets[0][1]["examples"]
    ax.set_xlabel("ε" if scale == 1.0 else "ε (×1/255)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{cell_name(rec)}{' adv' if rec.get('adv_train') else ''} {rec['model']} "
                 f"({_DATASET_NAMES.get(dataset, dataset)}), first {n} test images"
                 + ("" if certified else "; not certified"), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bracket_plot_name(rec):
    stem = os.path.dirname(rec["_path"]).strip("./").replace(os.sep, "_") or "run"
    return f"bracket_{stem}.png"


def section_brackets(records, plots_dir, out_dir):
    """One bracket plot per run in the tables, linked from a table."""
    eps_of = {"mnist": MNIST_EPS, "cifar10": CIFAR_EPS}
    bdir = os.path.join(plots_dir, "bracket")
    lines = []
    for rec in table_records(records):
        eps = eps_of.get(rec["dataset"], [])
        os.makedirs(bdir, exist_ok=True)
        path = bracket_plot(rec, eps, os.path.join(bdir, bracket_plot_name(rec)))
        if path is None:
            continue
        cells = []
        for e in eps:
            b = bracket(rec, e)
            cells.append(f"[{fmt(b['certified'])}, {fmt(b['best'])}]")
        lines.append(f"| {cell_name(rec)}{' adv' if rec.get('adv_train') else ''} "
                     f"({rec['model']}, {_DATASET_NAMES.get(rec['dataset'])}) | "
                     f"{' | '.join(cells)} | [plot]({os.path.relpath(path, out_dir)}) | "
                     f"`{rec['_path']}` |")
    if not lines:
        return "## Bracket plots\n\nNo run to plot."
    return ("## Bracket plots: certified ≤ true robust accuracy ≤ best attack\n\n"
            "Per run: certified accuracy (lower bound, `--certify`) and best-attack accuracy "
            "(upper bound: min over FGSM, PGD, QS, transfer and the certifier's "
            "counterexamples) on the same test images, against ε. Cells: [certified, best "
            "attack] in percent, at the table's three ε (MNIST 0.1/0.2/0.3, CIFAR10 "
            "8/16/32 /255); – where the run has none.\n\n"
            "| Run | ε₁ | ε₂ | ε₃ | Plot | results.json |\n|---|---|---|---|---|---|\n"
            + "\n".join(lines))


# ------------------------------------------------------------------ claims

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
        a = acc(self.rec, metric, self.e)
        if a is None:
            return None
        return a - (acc(self.rec, metric, "0") if self.relative else 0.0)

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
    """'proven', 'refuted' or 'open' for the claim ``x − y (kind) t`` over the brackets."""
    (xl, xh), (yl, yh) = x.interval(), y.interval()
    if xh is None or yh is None:
        return "–", None
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
        return sorted(best.values(), key=_quality)[-1] if best else None

    for dataset, small, large in (("mnist", ["0.1"], ["0.2", "0.3"]),
                                  ("cifar10", ["8/255", "16/255"], ["32/255"])):
        name = _DATASET_NAMES[dataset]
        for prec in ("full", "binary"):
            r2, r8 = get(dataset, prec, 2), get(dataset, prec, 8)
            if r2 is None:
                continue
            label = f"{_PRECISION_NAMES[prec]}-2b"
            for e in small:
                lab = eps_label(eps_value(e), dataset)
                out.append((f"{name}: {label} (no adv. training) keeps accuracy within "
                            f"{NEAR_CLEAN_POINTS:g} points of clean at ε={lab}", ">=",
                            Term(r2, e, relative=True), Term(None, e), -NEAR_CLEAN_POINTS))
                if r8 is not None:
                    out.append((f"{name}: {label} is more robust than {_PRECISION_NAMES[prec]}-8b "
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
                      "open": "open"}.get(verdict, verdict))
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
            pname = _PRECISION_NAMES.get(p, p)
            name = {"table_II": f"{b}b", "table_III": pname}.get(table, f"{pname}-{b}b")
            row = paper_row(paper, table, part, name)
            if row:
                cells.append((table, cell_name(rec) + (" adv" if adv else ""), dataset, rec, row))
    lines = []
    for table, cell, dataset, rec, row in cells:
        for k, pv in sorted(row.items(), key=lambda kv: eps_value(kv[0])):
            if k == "0" or pv is None:
                continue
            b = bracket(rec, k)
            if b["best"] is None:
                continue
            span = f"[{fmt(b['certified'])}, {fmt(b['best'])}]"
            if round(pv - b["best"], 6) > 0:
                verdict = (f"**excluded** for our model: {pv - b['best']:.1f} points above our "
                           f"best attack (an upper bound); true robust accuracy in {span}"
                           + ("" if b["certified"] is not None else " (not certified)"))
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


# ------------------------------------------------------------------ figures

def _plot_curves(series, dataset, title, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    if not series:
        return None
    scale = 1.0 if dataset in ("mnist", "fashion_mnist") else 255.0
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, rec) in enumerate(series):
        for attack, style in (("fgsm", "-o"), ("pgd", "--s")):
            a = (rec.get("attacks") or {}).get(attack)
            if not a:
                continue
            keys = sorted(a["adversarial_accuracy"], key=eps_value)
            xs = [0.0] + [eps_value(k) * scale for k in keys]
            ys = [100 * a["clean_accuracy"]] + [100 * a["adversarial_accuracy"][k] for k in keys]
            ax.plot(xs, ys, style, color=colors[i % len(colors)], markersize=4,
                    label=f"{label} {attack.upper()}")
    ax.set_xlabel("ε" if scale == 1.0 else "ε (×1/255)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figures(records, plots_dir):
    os.makedirs(plots_dir, exist_ok=True)
    made = []
    for dataset in ("mnist", "cifar10", "cifar100", "imagenet2012"):
        name = _DATASET_NAMES[dataset]
        best = select(records, dataset=dataset, adv_train=False)
        if not best:
            continue
        # Fig. 4: input bits (full precision).
        series = [(f"{m} full {b}b", r) for (m, p, b), r in sorted(best.items()) if p == "full"]
        made.append((f"Fig. 4 style — {name}: input discretization, full precision",
                     _plot_curves(series, dataset, f"{name}: accuracy vs ε by input bits, full "
                                  "precision (gradient straight-through)",
                                  os.path.join(plots_dir, f"fig4_input_bits_{dataset}.png"))))
        # Fig. 5 / 7 / 8: binary (or xnor) vs full.
        series = [(f"{m} {p} {b}b", r) for (m, p, b), r in sorted(best.items())
                  if p != "full" or b in (2, 8)]
        made.append((f"Fig. 5/7/8 style — {name}: binarized vs full precision",
                     _plot_curves(series, dataset, f"{name}: BNN/XNOR vs full (gradient "
                                  "straight-through)",
                                  os.path.join(plots_dir, f"fig5_precision_{dataset}.png"))))
        adv = select(records, dataset=dataset, adv_train=True)
        if adv:
            series = [(f"{m} {p} {b}b adv", r) for (m, p, b), r in sorted(adv.items())]
            made.append((f"Adversarial training — {name}",
                         _plot_curves(series, dataset, f"{name}: R-FGSM adversarially trained "
                                      "(gradient straight-through)",
                                      os.path.join(plots_dir, f"adv_train_{dataset}.png"))))
    return [(t, p) for t, p in made if p]


def section_activations(found, plots_dir, out_dir):
    if not found:
        return ("## Fig. 6 — activation L1 norms\n\nNo activations.json committed (run "
                "`python -m tfdisc.experiments.activations`).")
    text = ["## Fig. 6 — normalized L1 norm of hidden activations, clean vs adversarial"]
    for root, rec in found:
        png = os.path.join(root, "activations.png")
        if os.path.isfile(png):
            dest = os.path.join(plots_dir, "fig6_activations.png")
            shutil.copyfile(png, dest)
            text.append(f"![Fig. 6]({os.path.relpath(dest, out_dir)})")
        text.append(f"{rec.get('normalization')}; attack {rec.get('attack', '?').upper()}, "
                    f"gradient {rec.get('gradient')}; data {rec.get('data')}.")
        lines = ["| Model | Layer | clean mean L1 | " + " | ".join(
            f"ε={e} mean ± std [p5, p95]" for e in ["0"] + rec.get("epsilons", [])) + " |",
                 "|---|---|---|" + "---|" * (1 + len(rec.get("epsilons", [])))]
        for m in rec.get("models", []):
            for layer, s in m["layers"].items():
                cells = [f"{v['mean']:.2f} ± {v['std']:.2f} [{v['p5']:.2f}, {v['p95']:.2f}]"
                         for _, v in s["normalized"].items()]
                lines.append(f"| {m['label']} (ep {m.get('epochs')}, width {m.get('width')}) | "
                             f"{layer} | {s['mean_clean_l1']:.1f} | " + " | ".join(cells) + " |")
        text.append("\n".join(lines))
    return "\n\n".join(text)


def section_runs(records):
    lines = ["| results.json | dataset | model | precision | bits | adv | attacks | gradient | "
             "clean | command |", "|---|---|---|---|---|---|---|---|---|---|"]
    for rec in sorted(records, key=lambda r: r["_path"]):
        lines.append(f"| `{rec['_path']}` | {rec['dataset']} | {rec['model']} | "
                     f"{rec['precision']} | {rec['bits']} | {rec.get('adv_train')} | "
                     f"{','.join(rec.get('attacks') or {})} | {rec.get('gradient')} | "
                     f"{fmt(100 * rec['clean_accuracy'])} | `{rec.get('command', '')}` |")
    return "## All runs\n\n" + "\n".join(lines)


def build_report(results_dir, out, plots_dir=None, paper_tables=None, preamble=""):
    """Writes the markdown report and figures; returns the markdown text."""
    records = load_results(results_dir)
    paper = None
    paper_tables = paper_tables or default_paper_tables()
    if paper_tables:
        with open(paper_tables) as f:
            paper = json.load(f)
    out_dir = os.path.dirname(os.path.abspath(out))
    plots_dir = plots_dir or os.path.join(out_dir, "plots")
    figs = figures(records, plots_dir)
    parts = [
        "# tfdisc — reproduction of the paper's tables and figures",
        "Generated by `python -m tfdisc.experiments.report` from every `results.json` under "
        f"`{os.path.relpath(os.path.abspath(results_dir), out_dir)}`. Accuracies in percent. "
        "Ours: white-box L∞ attacks whose gradient goes through the input quantizer "
        "(straight-through, BPDA) — FGSM (paper eq. 1) and PGD (random start, projected to the "
        "ε-ball and [0, 1]). The paper's numbers (from `tables.json`) are FGSM only. Runs made "
        "with the quantizer's zero gradient are excluded from the tables (see the gradient "
        "masking section). Where a cell has several runs, the one with the most attacks, test "
        "examples and epochs is shown; all runs are listed at the end.",
        "**The bracket (issue 11).** " + TABLE_LEGEND,
    ]
    if preamble:
        parts.append(preamble)
    parts.append(section_claims(records, paper))
    fcn1 = report_capacity.table_records(results_dir)  # FCN1-sized capacity-search trials
    parts += section_tables(records + fcn1, paper)
    parts.append(section_brackets(records + fcn1, plots_dir, out_dir))
    parts.append(section_masking_flags(records + fcn1))
    parts.append(section_transfer(records + fcn1))
    parts.append(section_masking(records))
    parts.append(section_other(records))
    parts.append(section_activations(load_activations(results_dir), plots_dir, out_dir))
    capacity = report_capacity.section(results_dir, plots_dir, out_dir)
    if capacity:
        parts.append(capacity)
    if figs:
        parts.append("## Figures\n\n" + "\n\n".join(
            f"### {title}\n\n![{title}]({os.path.relpath(path, out_dir)})" for title, path in figs))
    parts.append(section_runs(records))
    text = "\n\n".join(parts) + "\n"
    os.makedirs(out_dir, exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    return text


def main(argv):
    preamble = ""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    notes = os.path.join(os.path.dirname(os.path.abspath(FLAGS.out)), "NOTES.md")
    if os.path.isfile(notes):  # hand-written setup and closing notes, kept across regenerations
        with open(notes) as f:
            preamble = f.read().strip()
    build_report(FLAGS.results_dir, FLAGS.out, FLAGS.plots_dir, FLAGS.paper_tables, preamble)
    print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
