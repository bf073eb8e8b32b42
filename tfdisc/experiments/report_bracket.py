"""The bracket of issue 11 in the report: certified ≤ true robust accuracy ≤ best attack.

Per run and ε: the certified accuracy (``--certify``), the best attack (the
minimum over every attack the run recorded — FGSM, PGD, the gradient-free
quantized-space search, AutoAttack and, run on their own, its components
APGD-CE, APGD-T and Square — transfer and the certifier's counterexamples, on
the same test images; the accuracies AutoAttack records after each of its
components are cumulative, never below the ensemble's, so they are not
sources of their own), the automatic
"likely gradient masking" flags, the soundness check, and the bracket plots;
and the gradient-masking check of the runs made with the quantizer's zero
gradient (``--gradient=none``), shown beside the straight-through attack.
"""
import math
import os
import re

from tfdisc.experiments.report_common import (
    CIFAR_EPS,
    DATASET_NAMES,
    MNIST_EPS,
    cell_name,
    eps_key,
    eps_label,
    eps_value,
    fmt,
    honest,
    select)

# The attacks whose gradient goes through the model; a non-gradient attack beating one of them
# by more than MASKING_POINTS (same test images) flags likely gradient masking. AutoAttack mixes
# both kinds (its Square needs no gradient), so it is in neither list; it and every other
# recorded attack still enter the best attack.
GRADIENT_ATTACKS = ("fgsm", "pgd", "rfgsm", "apgd_ce", "apgd_t")


NON_GRADIENT = ("quantized_search", "transfer", "square")


MASKING_POINTS = 2.0


SOURCE_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "rfgsm": "R-FGSM", "quantized_search": "QS",
                "transfer": "transfer", "certify": "certifier's counterexamples",
                "autoattack": "AutoAttack", "apgd_ce": "APGD-CE", "apgd_t": "APGD-T",
                "square": "Square"}


def sources(rec):
    """Every concrete attack on ``rec``: name → {examples, clean_accuracy, adversarial_accuracy,
    prefixes} (fractions). ``certify``: the counterexamples that ``--certify`` found (its search,
    complete mode and, in runs since issue 28's candidates, every attack's images re-checked on
    the model), as accuracy 1 − counterexample fraction — an upper bound too, and then no higher
    than any of those attacks on the same images."""
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


def on_first(entry, n, key):
    """Accuracy (fraction) of an attack entry on the first ``n`` test images at ε key ``key``
    (None: the clean accuracy), or None where it has no record on them."""
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
    if value is None:
        return None, None
    if math.isnan(value):  # NaN recorded: no data, but the certified images are still the set
        return None, cert.get("examples")
    return 100.0 * value, cert.get("examples")


def bracket(rec, e):
    """Certified and best-attack accuracy of ``rec`` at ε ``e`` on one set of test images.

    The attacks ran on prefixes of the test set (FGSM/PGD on all of it, the quantized search
    and --certify on the first N); each records its accuracy on the others' prefixes, so the
    bracket compares like with like on ``examples`` images: the certified ones if the run was
    certified, else the fewest any attack used. Attacks with no record on those images are
    listed in ``left_out`` (name → their own examples) and not minimized over.

    Returns dict (percent): ``certified``, ``best``, ``best_by`` (attack names reaching it),
    ``values`` {attack: accuracy on those images}, ``clean`` (their clean accuracy, if
    recorded), ``examples``, ``left_out``. A NaN accuracy counts as no data: it is in neither
    ``values`` nor the minimum.
    """
    key = eps_key(eps_value(e))
    src = sources(rec)
    cert, cert_n = certified_acc(rec, e)
    sizes = [a.get("examples") for a in src.values() if a.get("examples")]
    n = cert_n or (min(sizes) if sizes else None)
    values, left_out, clean = {}, {}, None
    for name, entry in src.items():
        v = on_first(entry, n, key)
        if v is None:
            if key in entry.get("adversarial_accuracy", {}):
                left_out[name] = entry.get("examples")
            continue
        if math.isnan(v):
            continue
        values[name] = 100.0 * v
        c = on_first(entry, n, None)
        if clean is None and c is not None and not math.isnan(c):
            clean = 100.0 * c
    best = min(values.values()) if values else None
    unknown = ((rec.get("certified") or {}).get("unknown") or {}).get(key)
    return {"certified": cert, "best": best, "examples": n, "clean": clean,
            "best_by": [k for k, v in values.items() if v == best], "values": values,
            "left_out": left_out, "exact": is_exact(cert, best),
            "unknown": None if unknown is None else 100.0 * unknown}


def is_exact(certified, best):
    """Whether a bracket is closed: the certified accuracy equals the best attack's (percent).

    That happens when every example is decided (certified or broken by a counterexample that
    was re-checked on the model); the true robust accuracy is then known exactly.
    """
    return certified is not None and best is not None and abs(best - certified) < 1e-9


def fmt_bracket(b):
    """A bracket as shown in the tables: ``**X** (exact)`` when closed, else ``[certified, best]``."""
    if b["exact"]:
        return f"**{b['best']:.1f}** (exact)"
    return f"[{fmt(b['certified'])}, {fmt(b['best'])}]"


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
    if attacks.get("autoattack"):
        parts.append(describe_autoattack(rec))
    cert = rec.get("certified")
    if cert:
        parts.append(describe_certified(rec))
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


def describe_certified(rec):
    """How ``--certify`` ran on ``rec`` (method, solver, limits) and the fraction it decided."""
    cert = rec["certified"]
    method = cert.get("method") or {}
    exact = method.get("exact")
    if exact:
        text = (f"certified: interval bounds, then exact verification over the reachable "
                f"quantized inputs ({exact.get('name')}, encoding {exact.get('encoding', 'bnn')}, "
                f"{exact.get('solver')}, {fmt_seconds(exact.get('time_limit_s'))} per example "
                f"and ε; statuses not decided in time are unknown)")
    else:
        text = (f"certified: interval bounds + branch and bound (≤ "
                f"{method.get('complete_max_free')} free pixels)")
    text += f" on the first {cert.get('examples')} test images"
    if method.get("candidates"):
        text += ("; counterexamples include every image of "
                 + ", ".join(SOURCE_NAMES.get(c, c) for c in method["candidates"])
                 + " that the model misclassifies inside the ball (re-checked one by one)")
    unknown = cert.get("unknown") or {}
    if unknown:
        text += "; decided (certified or counterexample): " + ", ".join(
            f"ε={eps_label(eps_value(k), rec['dataset'])} {fmt(100.0 * (1.0 - v))} %"
            for k, v in sorted(unknown.items(), key=lambda kv: eps_value(kv[0])))
    return text


def fmt_seconds(value):
    return "no time limit" if value is None else f"{value:g} s"


def describe_autoattack(rec):
    """How AutoAttack ran on ``rec`` and the accuracy after each of its components, per ε."""
    aa = rec["attacks"]["autoattack"]
    components = aa.get("components") or {}
    names = list(components) or list(aa.get("sequence") or [])
    text = (f"AutoAttack = {aa.get('version', 'standard')} "
            f"({', '.join(SOURCE_NAMES.get(c, c) for c in names)}; {aa.get('n_iter')} "
            f"iterations, Square {aa.get('n_queries')} queries; sign "
            f"gradient {aa.get('sign_gradient')}, quantizer gradient {aa.get('gradient')}) on "
            f"the first {aa.get('examples')} test images")
    if components:
        per_eps = [f"ε={eps_label(eps_value(key), rec['dataset'])} " + " → ".join(
            fmt(_percent(part["adversarial_accuracy"].get(key))) for part in components.values())
            for key in sorted(aa.get("adversarial_accuracy", {}), key=eps_value)]
        text += (f"; accuracy after each component "
                 f"({' → '.join(SOURCE_NAMES.get(c, c) for c in components)}): "
                 + ", ".join(per_eps))
    return text


def _percent(value):
    return None if value is None else 100.0 * value


def _record_eps(rec):
    keys = set()
    for a in sources(rec).values():
        keys.update(a.get("adversarial_accuracy", {}))
    keys.update(((rec.get("certified") or {}).get("certified") or {}))
    return sorted(keys, key=eps_value)


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
                               ("quantized_search", "-.", "C4"), ("transfer", ":", "C5"),
                               ("autoattack", "--", "C6")):
        ys = [b["values"].get(name) for _, b in brackets]
        if any(v is not None for v in ys):
            ax.plot(xs, [clean] * len(x0) + [float("nan") if v is None else v for v in ys],
                    style, color=color, linewidth=1.2, alpha=0.8, label=SOURCE_NAMES[name])
    n = brackets[0][1]["examples"]
    ax.set_xlabel("ε" if scale == 1.0 else "ε (×1/255)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{cell_name(rec)}{' adv' if rec.get('adv_train') else ''} {rec['model']} "
                 f"({DATASET_NAMES.get(dataset, dataset)}), first {n} test images"
                 + ("" if certified else "; not certified"), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bracket_plot_name(rec):
    path = rec["_path"]
    if os.path.basename(path) == "results.json":
        path = os.path.dirname(path)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", path.replace(".json", "")).strip("_") or "run"
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
        cells = [fmt_bracket(bracket(rec, e)) for e in eps]
        lines.append(f"| {cell_name(rec)}{' adv' if rec.get('adv_train') else ''} "
                     f"({rec['model']}, {DATASET_NAMES.get(rec['dataset'])}) | "
                     f"{' | '.join(cells)} | [plot]({os.path.relpath(path, out_dir)}) | "
                     f"`{rec['_path']}` |")
    if not lines:
        return "## Bracket plots\n\nNo run to plot."
    return ("## Bracket plots: certified ≤ true robust accuracy ≤ best attack\n\n"
            "Per run: certified accuracy (lower bound, `--certify`) and best-attack accuracy "
            "(upper bound: min over FGSM, PGD, QS, AutoAttack, transfer and the certifier's "
            "counterexamples) on the same test images, against ε. Cells: [certified, best "
            "attack] in percent, at the table's three ε (MNIST 0.1/0.2/0.3, CIFAR10 "
            "8/16/32 /255); – where the run has none; **X** (exact) where the two meet "
            "(every example decided), so the true robust accuracy is X.\n\n"
            "| Run | ε₁ | ε₂ | ε₃ | Plot | results.json |\n|---|---|---|---|---|---|\n"
            + "\n".join(lines))

