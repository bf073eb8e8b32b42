"""The capacity section of the report: adversarial accuracy against width (issue 10's study).

Reads every ``trials.json`` that ``python -m tfdisc.experiments.tune`` wrote under the results
directory and sets BNN beside full precision, at 8-bit and 2-bit input, width by width, next to the
paper's FCN1 statement.
"""
import math
import os

from tfdisc import results

__all__ = ["FCN1", "load_trials", "section", "table_records"]

# Paper Table V, FCN1 (784-6144×4-10), FGSM: clean / ε 0.1 / 0.2 / 0.3, percent.
PAPER_FCN1 = {"BNN-8b": (97.1, 89.4, 56.1, 33.6), "Full-8b": (98.2, 75.9, 38.5, 26.4)}
_NAMES = {"full": "Full", "binary": "BNN", "xnor": "XNOR"}
#: The paper's FCN1 (784-6144×4-10) is the fcn2 family at this width and depth.
FCN1 = {"width": 6144, "depth": 4}


def _check_search(search):
    """Raises ValueError naming the first key the report cannot read; returns NaN key paths."""
    if not isinstance(search, dict):
        raise ValueError(f"expected an object, got {type(search).__name__}")
    trials = search.get("trials", [])
    if not isinstance(trials, list):
        raise ValueError("`trials` must be a list")
    for key in ("dataset", "model"):
        if search.get(key) is not None and not isinstance(search[key], str):
            raise ValueError(f"`{key}` must be a string")
    if search.get("data") is not None and not isinstance(search["data"], dict):
        raise ValueError("`data` must be an object")
    nonfinite = []
    for i, trial in enumerate(trials):
        if not isinstance(trial, dict):
            raise ValueError(f"`trials[{i}]` must be an object")
        if trial.get("status") != "completed" or not trial.get("test"):
            continue
        where = f"trials[{i}]"
        hp, test = trial.get("hyperparameters"), trial["test"]
        if not isinstance(hp, dict) or not isinstance(hp.get("precision"), str) or any(
                not isinstance(hp.get(k), int) or isinstance(hp.get(k), bool)
                for k in ("bits", "width", "depth")):
            raise ValueError(f"`{where}.hyperparameters` must be an object with a string "
                             "`precision` and integer `bits`, `width` and `depth`")
        if not isinstance(test, dict):
            raise ValueError(f"`{where}.test` must be an object")
        if results.check_accuracy(test.get("clean_accuracy"), f"{where}.test.clean_accuracy"):
            nonfinite.append(f"{where}.test.clean_accuracy")
        nonfinite += results.check_attacks(test.get("attacks"), f"{where}.test.attacks")
        if test.get("transfer") is not None:
            nonfinite += results.check_attacks(test["transfer"], f"{where}.test.transfer")
    return nonfinite


def load_trials(results_dir, skipped=None, nonfinite=None):
    """Completed trials with test figures from every trials.json; (path, search record, trial).

    A trials.json whose test evaluation was interrupted (``test_complete`` false) is left out.
    An unreadable or malformed one goes to ``skipped`` as (relative path, reason), or raises
    :class:`tfdisc.results.ResultsError` without a ``skipped`` list. NaN accuracies (treated as
    no data) go to ``nonfinite`` as (relative path, [key paths]).
    """
    found = []
    for path, search in results.find_json(results_dir, "trials.json", skipped):
        try:
            nan = _check_search(search)
        except ValueError as e:
            if skipped is None:
                raise results.ResultsError(f"{os.path.join(results_dir, path)}: {e}") from None
            skipped.append((path, str(e)))
            continue
        if search.get("test_complete") is False:  # an evaluation still under way
            continue
        if nan and nonfinite is not None:
            nonfinite.append((path, nan))
        for trial in search.get("trials", []):
            if trial.get("status") == "completed" and trial.get("test"):
                found.append((path, search, trial))
    return found


def table_records(results_dir, trials=None):
    """FCN1-sized trials of the capacity search as report records (model ``fcn1``).

    A trial of the ``fcn2`` family at width 6144 and depth 4 is the paper's
    FCN1 network, so its test figures belong beside the paper's FCN1 rows
    (Tables V, and III/VI for adversarially trained ones). The records carry
    the keys the report's tables read; ``_path`` names the trials.json and
    the trial. ``trials``: the output of :func:`load_trials`, loaded here if None.
    """
    records = []
    for path, search, trial in load_trials(results_dir) if trials is None else trials:
        hp = trial["hyperparameters"]
        if search.get("model") != "fcn2" or any(hp.get(k) != v for k, v in FCN1.items()):
            continue
        data = search.get("data") or {}
        source = data.get("source")
        if source and not os.path.isabs(source):
            # trials.json records it relative to its own directory; the report's other records
            # were recorded relative to the repository, the parent of the experiment directory
            # that holds results_dir (never the working directory: the report must not depend
            # on where it is run from).
            home = os.path.dirname(os.path.dirname(os.path.abspath(results_dir)))
            source = os.path.relpath(os.path.normpath(
                os.path.join(os.path.abspath(results_dir), os.path.dirname(path), source)), home)
        attacks = trial["test"]["attacks"]
        records.append({
            "dataset": search["dataset"], "model": "fcn1", "precision": hp["precision"],
            "bits": hp["bits"], "epochs": trial.get("epochs"), "width": hp["width"],
            "depth": hp["depth"], "seed": trial.get("seed"), "adv_train": False,
            "gradient": next(iter(attacks.values()))["gradient"],
            "clean_accuracy": trial["test"]["clean_accuracy"], "attacks": attacks,
            # Transfer ran on a test prefix (--transfer_limit), white-box attacks on all test
            # images: the bracket must not take a minimum over different images, so the
            # transfer figures stay in the capacity section (and its claim check).
            "data": {"source": source, "train_examples": data.get("train_examples"),
                     "test_examples": trial["test"].get("examples")},
            "command": search.get("command"),
            "_path": f"{path} (trial {trial['trial_id']})",
        })
    return records


def _series(trials):
    """{(precision, bits): {width: trial}} (the last trial of a width wins)."""
    series = {}
    for _, _, trial in trials:
        hp = trial["hyperparameters"]
        series.setdefault((hp["precision"], hp["bits"]), {})[hp["width"]] = trial
    return series


def _acc(trial, attack, key, block="attacks"):
    """Test accuracy (%) of a trial under ``attack`` at ε ``key``; None if not run.

    ``block`` "attacks" is the white-box evaluation, "transfer" the black-box one.
    """
    a = (trial["test"].get(block) or {}).get(attack)
    if a is None or key not in a["adversarial_accuracy"]:
        return None
    value = a["adversarial_accuracy"][key]
    return None if math.isnan(value) else 100.0 * value  # NaN: no data, never a verdict


def _transfer_acc(trial, attack, key):
    return _acc(trial, attack, key, block="transfer")


def _f(value):
    return "–" if value is None else f"{value:.1f}"


_PANELS = (("fgsm", _acc, "FGSM (white-box)"), ("pgd", _acc, "PGD (white-box)"),
           ("pgd", _transfer_acc, "PGD transferred from the precision twin"))


def _plot(series, path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    panels = [p for p in _PANELS if any(
        p[1](t, p[0], "0.1") is not None for by_width in series.values()
        for t in by_width.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True,
                             squeeze=False)
    for ax, (attack, get, title) in zip(axes[0], panels):
        for (precision, bits), by_width in sorted(series.items()):
            widths = [w for w in sorted(by_width) if get(by_width[w], attack, "0.1") is not None]
            values = [get(by_width[w], attack, "0.1") for w in widths]
            style = "-o" if precision == "binary" else "--s"
            ax.plot(widths, values, style, label=f"{_NAMES.get(precision, precision)}-{bits}b")
        ax.set_xscale("log")
        ticks = sorted({w for by_width in series.values() for w in by_width})
        ax.set_xticks(ticks, [str(w) for w in ticks])
        ax.minorticks_off()
        ax.set_xlabel("width (hidden units, depth 4)")
        ax.set_title(f"{title}, ε=0.1,\nstraight-through gradient", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("adversarial accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _examples(trials, attack, block="attacks"):
    """{examples: [widths]} of an attack's test runs (``block`` "transfer": its transfer)."""
    out = {}
    for _, _, t in trials:
        a = (t["test"].get(block) or {}).get(attack)
        if a is not None:
            out.setdefault(a["examples"], set()).add(t["hyperparameters"]["width"])
    return {n: sorted(w) for n, w in out.items()}


def _claim_lines(series):
    """The paper's FCN1 claim (BNN more robust than its full-precision twin), checked."""
    width = FCN1["width"]
    lines = []
    for bits in sorted({b for (_, b) in series}, reverse=True):
        bnn = series.get(("binary", bits), {}).get(width)
        full = series.get(("full", bits), {}).get(width)
        if bnn is None or full is None:
            lines.append(f"* **{bits}-bit input, FCN1:** not run (needs both the BNN and its "
                         "full-precision twin at width 6144).")
            continue
        parts = []
        for label, get, attack in (("FGSM", _acc, "fgsm"), ("PGD", _acc, "pgd"),
                                   ("PGD transferred from the twin", _transfer_acc, "pgd"),
                                   ("FGSM transferred from the twin", _transfer_acc, "fgsm")):
            cells, wins = [], []
            for key in ("0.1", "0.2", "0.3"):
                b, f = get(bnn, attack, key), get(full, attack, key)
                if b is None or f is None:
                    continue
                cells.append(f"ε {key}: {_f(b)} vs {_f(f)}")
                wins.append(b > f)
            if cells:
                verdict = ("BNN ahead at every ε" if all(wins) else
                           "BNN behind or equal at every ε" if not any(wins) else
                           "BNN ahead at some ε only")
                parts.append(f"{label} (BNN vs full) {'; '.join(cells)}: **{verdict}**")
        paper = ""
        if bits == 8:
            paper = (f" Paper (FGSM): BNN-8b {PAPER_FCN1['BNN-8b'][1]} / "
                     f"{PAPER_FCN1['BNN-8b'][2]} / {PAPER_FCN1['BNN-8b'][3]} against Full-8b "
                     f"{PAPER_FCN1['Full-8b'][1]} / {PAPER_FCN1['Full-8b'][2]} / "
                     f"{PAPER_FCN1['Full-8b'][3]} at ε 0.1 / 0.2 / 0.3 (clean "
                     f"{PAPER_FCN1['BNN-8b'][0]} vs {PAPER_FCN1['Full-8b'][0]}).")
        lines.append(f"* **{bits}-bit input, FCN1 ({bnn.get('epochs')} epochs; clean "
                     f"{100 * bnn['test']['clean_accuracy']:.1f} BNN vs "
                     f"{100 * full['test']['clean_accuracy']:.1f} full):** "
                     + "; ".join(parts) + "." + paper)
    return lines


def section(results_dir, plots_dir, out_dir, trials=None):
    """Markdown of the capacity section ('' when no search results exist).

    ``trials``: the output of :func:`load_trials`, loaded here if None."""
    trials = load_trials(results_dir) if trials is None else trials
    if not trials:
        return ""
    series = _series(trials)
    widths = sorted({w for by_width in series.values() for w in by_width})
    epochs = sorted({t.get("epochs") for _, _, t in trials})
    pgd = _examples(trials, "pgd")
    pgd_text = "; ".join(f"on {n} test images at width{'s' if len(w) > 1 else ''} "
                         f"{', '.join(str(x) for x in w)}" for n, w in sorted(pgd.items()))
    has_fcn1 = FCN1["width"] in widths
    has_transfer = any(t["test"].get("transfer") for _, _, t in trials)
    lines = [
        "## Capacity: BNN against full precision as width grows (issue 10)",
        "",
        "The paper claims BNNs of enough capacity (FCN1, 784-6144×4-10) are more robust than "
        "their full-precision twins; its Table V (FCN1, FGSM) has BNN-8b "
        f"{PAPER_FCN1['BNN-8b'][1]} against Full-8b {PAPER_FCN1['Full-8b'][1]} at ε = 0.1. Ours: "
        f"FCN models of depth 4 and widths {', '.join(str(w) for w in widths)} trained by "
        "`python -m tfdisc.experiments.tune` with a grid (files: "
        f"{', '.join(sorted({'`' + p + '`' for p, _, _ in trials}))}), "
        f"{' or '.join(str(e) for e in epochs)} epochs each, real MNIST; white-box FGSM on all "
        f"test images and PGD-20 ({pgd_text}), gradient straight through the quantizer"
        + ("; black-box transfer: each model attacked with examples crafted on its "
           "precision twin (same width and bits), where that was run ("
           + "; ".join(f"on the first {n} test images at width{'s' if len(w) > 1 else ''} "
                       f"{', '.join(str(x) for x in w)}"
                       for n, w in sorted(_examples(trials, "pgd", "transfer").items()))
           + ")." if has_transfer else ".")
        + ("" if has_fcn1 else " **FCN1 (width 6144) was not run, so the paper's claim is not "
                               "settled here.**"),
        "",
        "| precision-bits | " + " | ".join(
            f"w={w} clean / FGSM / PGD{' / transfer PGD' if has_transfer else ''} at 0.1"
            for w in widths) + " |",
        "|---|" + "---|" * len(widths),
    ]
    for (precision, bits), by_width in sorted(series.items()):
        cells = []
        for w in widths:
            t = by_width.get(w)
            if t is None:
                cells.append("not run")
                continue
            cell = (f"{100 * t['test']['clean_accuracy']:.1f} / {_f(_acc(t, 'fgsm', '0.1'))} / "
                    f"{_f(_acc(t, 'pgd', '0.1'))}")
            if has_transfer:
                cell += f" / {_f(_transfer_acc(t, 'pgd', '0.1'))}"
            cells.append(cell)
        lines.append(f"| {_NAMES.get(precision, precision)}-{bits}b | " + " | ".join(cells) + " |")
    if has_fcn1:
        lines += ["", "**The FCN1 claim, checked** (accuracy in %, BNN vs its full-precision "
                      "twin, all 10 000 test images unless stated above):", ""]
        lines += _claim_lines(series)
    path = os.path.join(plots_dir, "capacity_mnist.png")
    _plot(series, path)
    lines += ["", f"![Capacity: adversarial accuracy against width]"
                  f"({os.path.relpath(path, out_dir)})"]
    return "\n".join(lines)
