"""AutoAttack against the other attacks in the report (issue 29's target).

Per run in the tables that recorded AutoAttack, and ε: its accuracy beside
FGSM's, PGD's and the quantized search's on the same first test images
(``report_bracket.bracket``), and the gap to the strongest of them. The issue's
target is AutoAttack ≤ that minimum on every row; a row where it is not is
listed as such (never dropped), for the notes to explain.
"""
from tfdisc.experiments.report_bracket import SOURCE_NAMES, bracket, table_records
from tfdisc.experiments.report_common import (
    CIFAR_EPS,
    DATASET_NAMES,
    MNIST_EPS,
    cell_name,
    eps_label,
    eps_value,
    fmt)

# The attacks AutoAttack must match or beat (the target of issue 29).
OTHERS = ("fgsm", "pgd", "quantized_search")


def comparison(rec, epsilons):
    """Rows ``{eps, autoattack, others: {name: accuracy}, best_other, gap, examples}``
    (percent; gap = AutoAttack − the strongest other, > 0 where AutoAttack is weaker) for
    every ε where AutoAttack and at least one other attack ran on the same images."""
    rows = []
    for e in epsilons:
        b = bracket(rec, e)
        aa = b["values"].get("autoattack")
        others = {k: b["values"][k] for k in OTHERS if k in b["values"]}
        if aa is None or not others:
            continue
        best = min(others.values())
        rows.append({"eps": e, "autoattack": aa, "others": others, "best_other": best,
                     "best_other_by": [k for k, v in others.items() if v == best],
                     "gap": aa - best, "examples": b["examples"]})
    return rows


def section_autoattack(records):
    """The report section: AutoAttack ≤ min(FGSM, PGD, QS) on the same images, row by row."""
    eps_of = {"mnist": MNIST_EPS, "cifar10": CIFAR_EPS}
    lines, weaker, runs = [], [], 0
    for rec in table_records(records):
        if "autoattack" not in (rec.get("attacks") or {}):
            continue
        runs += 1
        name = (f"{cell_name(rec)}{' adv' if rec.get('adv_train') else ''} ({rec['model']}, "
                f"{DATASET_NAMES.get(rec['dataset'], rec['dataset'])})")
        for row in comparison(rec, eps_of.get(rec["dataset"], [])):
            cells = " | ".join(fmt(row["others"].get(k)) for k in OTHERS)
            by = "/".join(SOURCE_NAMES[k] for k in row["best_other_by"])
            mark = " **weaker**" if round(row["gap"], 6) > 0 else ""
            lines.append(f"| {name} | {eps_label(eps_value(row['eps']), rec['dataset'])} | "
                         f"{fmt(row['autoattack'])} | {cells} | {row['gap']:+.1f} ({by}){mark} "
                         f"| first {row['examples']} | `{rec['_path']}` |")
            if mark:
                weaker.append(f"`{rec['_path']}` ε="
                              f"{eps_label(eps_value(row['eps']), rec['dataset'])}: AutoAttack "
                              f"{fmt(row['autoattack'])} vs {by} {fmt(row['best_other'])}")
    text = ["## AutoAttack against FGSM, PGD and the quantized search",
            "Accuracy (%) under each attack on the same first test images; gap = AutoAttack − "
            "the strongest of the others (negative: AutoAttack is stronger). Issue 29's target: "
            "AutoAttack ≤ the minimum of FGSM, PGD and QS on every row."]
    if not lines:
        text.append("No run in the tables recorded AutoAttack.")
        return "\n\n".join(text)
    text.append("| Run | ε | AutoAttack | FGSM | PGD | QS | Gap (points) | Test images | "
                "results.json |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines))
    if weaker:
        text.append("Rows where AutoAttack is **weaker** than another attack (see the notes "
                    "for why):\n\n" + "\n".join(f"* {w}" for w in weaker))
    else:
        text.append(f"On all {runs} runs with AutoAttack, it is at least as strong as FGSM, PGD "
                    "and QS at every ε.")
    return "\n\n".join(text)
