"""Prints the capacity README's results table from the search's trials.json files.

Every figure comes from the files; nothing is typed by hand. Accuracies are fractions as
recorded; the header names each attack's test examples (read from the files).

  python experiments/scripts/capacity_table.py experiments/results/capacity/grid_w150_2400
"""
import json
import os
import sys

EPS = ("0.1", "0.2", "0.3")


def _load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "trials.json")
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such trials.json")
    with open(path, encoding="utf-8") as f:
        search = json.load(f)
    if search.get("test_complete") is False:
        sys.exit(f"{path}: the test evaluation is not finished (test_complete false)")
    return [t for t in search["trials"] if t.get("status") == "completed" and t.get("test")]


def _attack_name(attack):
    steps = attack.get("steps")
    return attack["name"].upper() + (f"-{steps}" if steps else "")


def _cell(block):
    if block is None:
        return "–"
    acc = block["adversarial_accuracy"]
    return " / ".join(f"{acc[e]:.4f}" if e in acc else "–" for e in EPS)


def _examples(trials, block, attack):
    found = sorted({(t["test"].get(block) or {}).get(attack, {}).get("examples")
                    for t in trials} - {None})
    return ", ".join(f"{n:,}".replace(",", " ") for n in found) or "–"


def table(trials):
    """Markdown lines of the table."""
    trials = sorted(trials, key=lambda t: (-t["hyperparameters"]["bits"],
                                           t["hyperparameters"]["width"],
                                           t["hyperparameters"]["precision"]))
    val = trials[0]["validation"]
    head = [
        "bits", "width", "precision", "params", "binary MACs", "packed KiB", "val clean",
        f"val {_attack_name(val['attack'])} ε={val['eps']}", "test clean",
        f"FGSM ε=0.1 / 0.2 / 0.3 ({_examples(trials, 'attacks', 'fgsm')})",
        f"PGD-20 ε=0.1 / 0.2 / 0.3 ({_examples(trials, 'attacks', 'pgd')})",
        f"transfer FGSM from twin ({_examples(trials, 'transfer', 'fgsm')})",
        f"transfer PGD-20 from twin ({_examples(trials, 'transfer', 'pgd')})",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in trials:
        hp, test, v = t["hyperparameters"], t["test"], t["validation"]
        transfer = test.get("transfer") or {}
        row = [str(hp["bits"]), str(hp["width"]), hp["precision"], f"{t['params']:,}",
               f"{t['binary_macs']:,}", f"{t['packed_bytes'] / 1024:.1f}",
               f"{v['clean_accuracy']:.4f}", f"{v['adversarial_accuracy']:.4f}",
               f"{test['clean_accuracy']:.4f}", _cell(test["attacks"].get("fgsm")),
               _cell(test["attacks"].get("pgd")), _cell(transfer.get("fgsm")),
               _cell(transfer.get("pgd"))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(paths):
    if not paths:
        sys.exit(__doc__)
    trials = [t for p in paths for t in _load(p)]
    if not trials:
        sys.exit("no completed trial with test figures")
    print("\n".join(table(trials)))


if __name__ == "__main__":
    main(sys.argv[1:])
