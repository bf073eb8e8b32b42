"""Shared pieces of the report: loading (with the list of files it could not use), selection of
runs, ε labels, formatting, and the small sections (problems, Fig. 6 activations).

``tfdisc.experiments.report`` builds the markdown from these, with the
bracket (:mod:`report_bracket`) and the claims (:mod:`report_claims`).
"""
import json
import math
import os
import shutil

from tfdisc import results

DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100",
                  "imagenet2012": "ImageNet", "fashion_mnist": "Fashion-MNIST"}


PRECISION_NAMES = {"full": "Full", "binary": "BNN", "xnor": "XNOR"}


# A claim "holds" when adversarial accuracy stays within this many points of clean.
NEAR_CLEAN_POINTS = 5.0


MNIST_EPS = ["0.1", "0.2", "0.3"]


CIFAR_EPS = ["8/255", "16/255", "32/255"]


eps_value = results.parse_epsilon


eps_key = results.epsilon_key


def eps_label(value, dataset):
    if dataset in ("mnist", "fashion_mnist"):
        return f"{value:g}"
    return f"{round(value * 255):g}/255"


load_results = results.load


def _check_activations(rec):
    """Raises ValueError unless ``rec`` has the shape the Fig. 6 section reads."""
    if not isinstance(rec, dict) or not isinstance(rec.get("models", []), list) \
            or not isinstance(rec.get("epsilons", []), list):
        raise ValueError("expected an object with a `models` list and an `epsilons` list")
    for i, m in enumerate(rec.get("models", [])):
        layers = m.get("layers") if isinstance(m, dict) else None
        if not isinstance(layers, dict):
            raise ValueError(f"`models[{i}].layers` must be an object")
        for layer, s in layers.items():
            try:
                float(s["mean_clean_l1"])
                for v in s["normalized"].values():
                    [float(v[k]) for k in ("mean", "std", "p5", "p95")]
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ValueError(f"`models[{i}].layers.{layer}` is malformed "
                                 f"({type(e).__name__}: {e})") from None


def load_activations(results_dir, skipped=None):
    """(directory, record) of every valid activations.json under ``results_dir``.

    Unreadable or malformed files go to ``skipped`` as (relative path, reason), or raise
    :class:`tfdisc.results.ResultsError` without a ``skipped`` list.
    """
    found = []
    for path, rec in results.find_json(results_dir, "activations.json", skipped):
        try:
            _check_activations(rec)
        except ValueError as e:
            if skipped is None:
                raise results.ResultsError(f"{os.path.join(results_dir, path)}: {e}") from None
            skipped.append((path, str(e)))
            continue
        found.append((os.path.join(results_dir, os.path.dirname(path)), rec))
    return found


def load_paper_tables(path):
    """The paper's tables.json, or ResultsError naming the file and what is wrong."""
    try:
        with open(path) as f:
            paper = json.load(f)
    except (OSError, ValueError) as e:
        raise results.ResultsError(f"--paper_tables {path}: cannot read it as JSON "
                                   f"({type(e).__name__}: {e})") from None
    if not isinstance(paper, dict):
        raise results.ResultsError(f"--paper_tables {path}: expected an object of tables, got "
                                   f"{type(paper).__name__}")
    return paper


def default_notes(results_dir):
    """``NOTES.md`` beside ``results_dir`` (``experiments/NOTES.md`` for ``experiments/results``),
    or None if there is none. Never read from the report's folder: the report must not depend on
    where it is written."""
    path = os.path.join(os.path.dirname(os.path.abspath(results_dir)), "NOTES.md")
    return path if os.path.isfile(path) else None


def default_paper_tables():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    path = os.path.join(os.path.dirname(repo), "shared", "paper", "tables.json")
    return path if os.path.isfile(path) else None


def quality(rec):
    return (len(rec.get("attacks") or {}), (rec.get("data") or {}).get("test_examples") or 0,
            rec.get("epochs") or 0, rec.get("_path"))


def honest(rec):
    """Only runs attacked with a gradient through the quantizer enter the tables."""
    return rec.get("gradient") in ("straight_through", None)


def paper_setting(rec):
    """Whether a run is in the paper's setting: eq. 2 input quantizer, no certified training.

    Certified-training runs and custom bin edges (issue 30) have their own report section and
    stay out of the paper's tables, the claims and the brackets of those tables.
    """
    return ((rec.get("adv_train_params") or {}).get("method") != "ibp"
            and (rec.get("quantizer") or {}).get("name", "eq2") == "eq2")


def select(records, **criteria):
    """Best record per (model, precision, bits) matching ``criteria`` (adv_train, dataset...),
    among honest runs in the paper's setting."""
    best = {}
    for rec in records:
        if not honest(rec) or rec.get("transfer_only") or not paper_setting(rec):
            continue
        if any(rec.get(k, False if k == "adv_train" else None) != v for k, v in criteria.items()):
            continue
        key = (rec["model"], rec["precision"], rec["bits"])
        if key not in best or quality(rec) > quality(best[key]):
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


def finite(value):
    """``value``, or None if it is missing or not finite (a NaN accuracy is no data)."""
    return None if value is None or not math.isfinite(value) else value


def fmt(value):
    if value is not None and math.isnan(value):
        return "NaN"
    return "–" if value is None else f"{value:.1f}"


def paper_row(paper, table, part, name):
    t = paper.get(table, {}) if paper else {}
    rows = t.get(part, []) if part else t.get("rows", [])
    for row in rows:
        if row["name"] == name:
            return row.get("accuracy_percent", {})
    return None


def cell_name(rec):
    return f"{PRECISION_NAMES.get(rec['precision'], rec['precision'])}-{rec['bits']}b"


def section_problems(skipped, nonfinite, limit=8):
    """Markdown listing the files left out and the NaN accuracies ('' when there are none)."""
    parts = []
    if skipped:
        parts.append("**Skipped files** — not used anywhere in this report; fix or remove them "
                     "and regenerate:\n\n" + "\n".join(
                         f"* `{path}`: {reason}" for path, reason in skipped))
    if nonfinite:
        lines = []
        for path, keys in nonfinite:
            more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
            lines.append(f"* `{path}`: " + ", ".join(f"`{k}`" for k in keys[:limit]) + more)
        parts.append("**No data (NaN recorded)** — these accuracies are NaN: they show as NaN or "
                     "–, and enter no minimum, verdict or flag:\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def problem_lines(skipped, nonfinite):
    """The same problems as one line each, for stderr."""
    return ([f"skipped {path}: {reason}" for path, reason in skipped]
            + [f"NaN accuracies (no data) in {path}: {', '.join(keys)}"
               for path, keys in nonfinite])


def section_activations(found, plots_dir, out_dir):
    if not found:
        return ("## Fig. 6 — activation L1 norms\n\nNo activations.json committed (run "
                "`python -m tfdisc.experiments.activations`).")
    text = ["## Fig. 6 — normalized L1 norm of hidden activations, clean vs adversarial"]
    for i, (root, rec) in enumerate(found):
        png = os.path.join(root, "activations.png")
        if os.path.isfile(png):  # one file per activations.json: none overwrites another's
            dest = os.path.join(plots_dir, "fig6_activations.png" if i == 0
                                else f"fig6_activations_{i + 1}.png")
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
