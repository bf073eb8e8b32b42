"""The capacity section of the report: adversarial accuracy against width (issue 10's study).

Reads every ``trials.json`` that ``python -m tfdisc.experiments.tune`` wrote under the results
directory and sets BNN beside full precision, at 8-bit and 2-bit input, width by width, next to the
paper's FCN1 statement.
"""
import os

from tfdisc import results

__all__ = ["load_trials", "section"]

# Paper Table V, FCN1 (784-6144×4-10), FGSM: clean / ε 0.1 / 0.2 / 0.3, percent.
PAPER_FCN1 = {"BNN-8b": (97.1, 89.4, 56.1, 33.6), "Full-8b": (98.2, 75.9, 38.5, 26.4)}
_NAMES = {"full": "Full", "binary": "BNN", "xnor": "XNOR"}


def load_trials(results_dir):
    """Completed trials with test figures from every trials.json; (path, search record, trial)."""
    found = []
    for path, search in results.find_json(results_dir, "trials.json"):
        for trial in search.get("trials", []):
            if trial.get("status") == "completed" and trial.get("test"):
                found.append((path, search, trial))
    return found


def _series(trials):
    """{(precision, bits): {width: trial}} (the last trial of a width wins)."""
    series = {}
    for _, _, trial in trials:
        hp = trial["hyperparameters"]
        series.setdefault((hp["precision"], hp["bits"]), {})[hp["width"]] = trial
    return series


def _acc(trial, attack, key):
    a = trial["test"]["attacks"].get(attack)
    if a is None or key not in a["adversarial_accuracy"]:
        return None
    return 100.0 * a["adversarial_accuracy"][key]


def _plot(series, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, attack in zip(axes, ("fgsm", "pgd")):
        for (precision, bits), by_width in sorted(series.items()):
            widths = sorted(by_width)
            values = [_acc(by_width[w], attack, "0.1") for w in widths]
            style = "-o" if precision == "binary" else "--s"
            ax.plot(widths, values, style, label=f"{_NAMES.get(precision, precision)}-{bits}b")
        ax.set_xscale("log")
        ticks = sorted({w for by_width in series.values() for w in by_width})
        ax.set_xticks(ticks, [str(w) for w in ticks])
        ax.minorticks_off()
        ax.set_xlabel("width (hidden units, depth 4)")
        ax.set_title(f"{attack.upper()} ε=0.1, straight-through gradient")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("adversarial accuracy (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(results_dir, plots_dir, out_dir):
    """Markdown of the capacity section ('' when no search results exist)."""
    trials = load_trials(results_dir)
    if not trials:
        return ""
    series = _series(trials)
    widths = sorted({w for by_width in series.values() for w in by_width})
    first = trials[0][2]
    lines = [
        "## Capacity: BNN against full precision as width grows (issue 10, reduced study)",
        "",
        "The paper claims BNNs of enough capacity (FCN1, 784-6144×4-10) are more robust than "
        "their full-precision twins; its Table V (FCN1, FGSM) has BNN-8b "
        f"{PAPER_FCN1['BNN-8b'][1]} against Full-8b {PAPER_FCN1['Full-8b'][1]} at ε = 0.1. Ours: "
        f"FCN models of depth 4 and widths {', '.join(str(w) for w in widths)} found by "
        "`python -m tfdisc.experiments.tune` with a grid (files: "
        f"{', '.join(sorted({'`' + p + '`' for p, _, _ in trials}))}), "
        f"{first['epochs']} epochs each, real MNIST; FGSM on all test images and PGD-20 on the "
        "first 1000, white-box, gradient straight through the quantizer. "
        "**FCN1 (width 6144) was not run, so the paper's claim is not settled here.**",
        "",
        "| precision-bits | " + " | ".join(f"w={w} clean / FGSM / PGD at 0.1" for w in widths)
        + " |",
        "|---|" + "---|" * len(widths),
    ]
    for (precision, bits), by_width in sorted(series.items()):
        cells = []
        for w in widths:
            t = by_width.get(w)
            if t is None:
                cells.append("–")
                continue
            fgsm, pgd = _acc(t, "fgsm", "0.1"), _acc(t, "pgd", "0.1")
            cells.append(f"{100 * t['test']['clean_accuracy']:.1f} / "
                         f"{'–' if fgsm is None else f'{fgsm:.1f}'} / "
                         f"{'–' if pgd is None else f'{pgd:.1f}'}")
        lines.append(f"| {_NAMES.get(precision, precision)}-{bits}b | " + " | ".join(cells) + " |")
    path = os.path.join(plots_dir, "capacity_mnist.png")
    _plot(series, path)
    lines += ["", f"![Capacity: adversarial accuracy against width]"
                  f"({os.path.relpath(path, out_dir)})"]
    return "\n".join(lines)
