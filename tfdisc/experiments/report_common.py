"""Shared pieces of the report: loading, selection of runs, ε labels and formatting.

``tfdisc.experiments.report`` builds the markdown from these, with the
bracket (:mod:`report_bracket`) and the claims (:mod:`report_claims`).
"""
import json
import os

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


def quality(rec):
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


def fmt(value):
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

