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
``activations.json`` is found) are written to --plots_dir, by default the folder
``plots/`` beside --out (the report links them relative to itself), and the
binary says where. Hand-written notes come from ``NOTES.md`` beside the results
directory (``experiments/NOTES.md`` for ``experiments/results``), or --notes:
the markdown is the same wherever --out puts it.

A results.json (or trials.json, activations.json) that cannot be parsed or has
a key of the wrong type is not used: it is listed under "Skipped files" at the
top of the report and on stderr. NaN accuracies are listed too and decide no
verdict. A missing --results_dir, or one without any usable results, is an
error and no report is written.
"""
import os
import sys

from absl import app, flags

from tfdisc.results import ResultsError
from tfdisc.experiments import report_capacity
from tfdisc.experiments.report_autoattack import section_autoattack  # noqa: F401
# The pieces the report is built from (re-exported: callers use report.NAME).
from tfdisc.experiments.report_bracket import (  # noqa: F401
    GRADIENT_ATTACKS,
    NON_GRADIENT,
    MASKING_POINTS,
    SOURCE_NAMES,
    sources,
    certified_acc,
    bracket,
    masking_flags,
    soundness_violations,
    fmt_best,
    fmt_bracket,
    is_exact,
    describe_bracket,
    describe_certified,
    table_records,
    section_masking_flags,
    section_masking,
    bracket_plot,
    bracket_plot_name,
    section_brackets)
from tfdisc.experiments.report_certified import (  # noqa: F401
    ANCHORS,
    certified_training_runs,
    section_certified_training)
from tfdisc.experiments.report_claims import (  # noqa: F401
    Term,
    bracket_verdict,
    section_claims,
    section_paper_bracket)
from tfdisc.experiments.report_common import (  # noqa: F401
    DATASET_NAMES,
    PRECISION_NAMES,
    NEAR_CLEAN_POINTS,
    MNIST_EPS,
    CIFAR_EPS,
    eps_value,
    eps_key,
    eps_label,
    load_results,
    load_activations,
    load_paper_tables,
    default_notes,
    section_problems,
    section_activations,
    problem_lines,
    default_paper_tables,
    quality,
    honest,
    paper_setting,
    select,
    acc,
    fmt,
    paper_row,
    cell_name)

FLAGS = flags.FLAGS

flags.DEFINE_string("results_dir", "experiments/results", "Directory searched (recursively) for "
                    "results.json and activations.json files.")
flags.DEFINE_string("out", "experiments/REPORT.md", "Markdown report to write.")
flags.DEFINE_string("plots_dir", None, "Where PNG figures go; default the folder plots/ beside "
                    "--out (the report links them relative to itself).")
flags.DEFINE_string("notes", None, "Hand-written markdown put after the legend; default NOTES.md "
                    "beside --results_dir (experiments/NOTES.md for experiments/results), if "
                    "present.")
flags.DEFINE_string("paper_tables", None, "The paper's tables.json; default "
                    "../shared/paper/tables.json next to the repository, if present.")

def describe(rec):
    """Model, precision, bits, gradient, schedule and data of a run, for a table row."""
    d = rec.get("data") or {}
    src = d.get("source", "?")
    adv = rec.get("adv_train_params")
    sched = f"{rec.get('epochs')} ep, width {rec.get('width')}"
    if rec.get("init_from"):
        sched = (f"evaluation only, weights of `{os.path.basename(str(rec['init_from']).rstrip('/'))}`"
                 f", width {rec.get('width')}")
    if d.get("train_examples"):
        sched += f", {d['train_examples']} train"
    if adv and adv.get("method") == "ibp":
        sched += (f", IBP certified training ε={eps_label(adv['eps'], rec['dataset'])} κ "
                  f"{adv.get('kappa')}")
    elif adv:
        sched += f", R-FGSM ε={eps_label(adv['eps'], rec['dataset'])} α=ε/2 mix {adv['adv_ratio']:g}"
    if (rec.get("quantizer") or {}).get("name") == "custom_edges":
        sched += f", input quantizer edges {rec['quantizer']['edges']}"
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
            f"{sched}; {DATASET_NAMES.get(rec['dataset'], rec['dataset'])} ({src}), "
            f"test {test}{pgd_txt}; {describe_bracket(rec)}; `{rec['_path']}`")


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
    "attack reached (FGSM, PGD, QS, AutoAttack, black-box transfer where run, and the "
    "certifier's own counterexamples, which in newer runs include every attack's images "
    "re-checked one by one: a per-image worst case over the attacks), an upper bound, on the "
    "same images as the certified column. "
    "certified ≤ true robust accuracy ≤ best attack. ⚠ = likely gradient masking: that "
    f"gradient attack is weaker than QS or transfer by more than {MASKING_POINTS:g} points on "
    "the same images (see the masking flags section). – = not run.")


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
        text.append(f"### {DATASET_NAMES[dataset]}\n\n"
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
        text.append(f"### {DATASET_NAMES[dataset]} (paper: "
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
        text.append(f"### {DATASET_NAMES[dataset]}\n\n"
                    + comparison_table(rows, eps_of[dataset], dataset))
    parts.append("\n\n".join(text))
    return parts


def section_other(records):
    """CIFAR100 / ImageNet (Figs. 7, 8) runs, if any."""
    lines = []
    for dataset in ("cifar100", "imagenet2012"):
        recs = [r for r in records if r["dataset"] == dataset and honest(r)]
        if not recs:
            lines.append(f"* {DATASET_NAMES[dataset]}: no run — the data is not available "
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
        name = DATASET_NAMES[dataset]
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


def section_runs(records):
    lines = ["| results.json | dataset | model | precision | bits | adv | attacks | gradient | "
             "clean | command |", "|---|---|---|---|---|---|---|---|---|---|"]
    for rec in sorted(records, key=lambda r: r["_path"]):
        lines.append(f"| `{rec['_path']}` | {rec['dataset']} | {rec['model']} | "
                     f"{rec['precision']} | {rec['bits']} | {rec.get('adv_train')} | "
                     f"{','.join(rec.get('attacks') or {})} | {rec.get('gradient')} | "
                     f"{fmt(100 * rec['clean_accuracy'])} | `{rec.get('command', '')}` |")
    return "## All runs\n\n" + "\n".join(lines)


def default_plots_dir(out):
    """Where the figures go by default: the folder ``plots/`` beside the report ``out``."""
    return os.path.join(os.path.dirname(os.path.abspath(out)), "plots")


def build_report(results_dir, out, plots_dir=None, paper_tables=None, preamble="",
                 problems=None):
    """Writes the markdown report and figures; returns the markdown text.

    The text depends on the results, not on where ``out`` is: figure links are relative to
    ``out`` and the figures go to ``plots_dir`` (default :func:`default_plots_dir`). Raises
    :class:`tfdisc.results.ResultsError`, writing nothing, if ``results_dir`` is missing or holds
    no usable results.json or trials.json. Files it cannot use and NaN accuracies are listed in
    the report and, one line each, appended to ``problems`` if given.
    """
    skipped, nonfinite = [], []
    records = load_results(results_dir, skipped)
    trials = report_capacity.load_trials(results_dir, skipped, nonfinite)
    activations = load_activations(results_dir, skipped)
    nonfinite = sorted(nonfinite + [(r["_path"], r["_nonfinite"]) for r in records
                                    if r.get("_nonfinite")])
    skipped.sort()
    if not records and not trials:
        raise ResultsError(
            f"no usable results.json or trials.json under {results_dir!r}"
            + (": " + "; ".join(f"{p}: {r}" for p, r in skipped) if skipped else "")
            + ". Point --results_dir at the directory holding the runs' results.")
    paper = None
    paper_tables = paper_tables or default_paper_tables()
    if paper_tables:
        paper = load_paper_tables(paper_tables)
    out_dir = os.path.dirname(os.path.abspath(out))
    plots_dir = plots_dir or default_plots_dir(out)
    figs = figures(records, plots_dir)
    parts = [
        "# tfdisc — reproduction of the paper's tables and figures",
        "Generated by `python -m tfdisc.experiments.report` from every `results.json` under "
        # the results directory's own name: the same line wherever the report is written
        f"`{os.path.basename(os.path.abspath(results_dir))}`. Accuracies in percent. "
        "Ours: white-box L∞ attacks whose gradient goes through the input quantizer "
        "(straight-through, BPDA) — FGSM (paper eq. 1) and PGD (random start, projected to the "
        "ε-ball and [0, 1]). The paper's numbers (from `tables.json`) are FGSM only. Runs made "
        "with the quantizer's zero gradient are excluded from the tables (see the gradient "
        "masking section). Where a cell has several runs, the one with the most attacks, test "
        "examples and epochs is shown; all runs are listed at the end.",
    ]
    problems_text = section_problems(skipped, nonfinite)
    if problems_text:
        parts.append(problems_text)
    if problems is not None:
        problems += problem_lines(skipped, nonfinite)
    parts.append("**The bracket (issue 11).** " + TABLE_LEGEND)
    if preamble:
        parts.append(preamble)
    parts.append(section_claims(records, paper))
    fcn1 = report_capacity.table_records(results_dir, trials)  # FCN1-sized capacity trials
    parts += section_tables(records + fcn1, paper)
    parts.append(section_brackets(records + fcn1, plots_dir, out_dir))
    parts.append(section_masking_flags(records + fcn1))
    parts.append(section_autoattack(records + fcn1))
    parts.append(section_transfer(records + fcn1))
    parts.append(section_masking(records))
    parts.append(section_certified_training(records))
    parts.append(section_other(records))
    parts.append(section_activations(activations, plots_dir, out_dir))
    capacity = report_capacity.section(results_dir, plots_dir, out_dir, trials)
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
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if os.path.isdir(FLAGS.out) or FLAGS.out.endswith(os.sep):
        raise SystemExit(f"tfdisc.experiments.report: --out={FLAGS.out} is a directory; give "
                         "the report's file name, e.g. --out=experiments/REPORT.md")
    notes = FLAGS.notes or default_notes(FLAGS.results_dir)
    preamble = ""
    if notes:  # hand-written setup and closing notes, kept across regenerations
        try:
            with open(notes) as f:
                preamble = f.read().strip()
        except OSError as e:
            raise SystemExit(f"tfdisc.experiments.report: --notes {notes}: {e.strerror}") from None
    problems = []
    plots_dir = FLAGS.plots_dir or default_plots_dir(FLAGS.out)
    try:
        build_report(FLAGS.results_dir, FLAGS.out, plots_dir, FLAGS.paper_tables, preamble,
                     problems)
    except ResultsError as e:
        raise SystemExit(f"tfdisc.experiments.report: {e}") from None
    except OSError as e:  # e.g. --out or --plots_dir not writable
        raise SystemExit(f"tfdisc.experiments.report: cannot write {e.filename}: "
                         f"{e.strerror}") from None
    for line in problems:
        print(f"tfdisc.experiments.report: warning: {line}", file=sys.stderr)
    print(f"Wrote {FLAGS.out}" + (f" (notes from {notes})" if notes else " (no NOTES.md)"))
    print(f"Figures in {plots_dir} (the report links them relative to itself)")


if __name__ == "__main__":
    app.run(main)
