"""report: AutoAttack and its components in the best-attack column (issue 29), on synthetic runs."""
import json
import os

import pytest

from tfdisc.experiments import report

EPS = ["0.1", "0.2", "0.3"]


def entry(name, clean, adv, n=1000, **extra):
    return {"name": name, "examples": n, "clean_accuracy": clean,
            "adversarial_accuracy": dict(zip(EPS, adv)), **extra}


def run(autoattack=None, **attacks):
    """A BNN-2b fcn2 MNIST run with FGSM and PGD, and the given attack entries."""
    blocks = {"fgsm": entry("fgsm", 0.96, [0.90, 0.60, 0.30]),
              "pgd": entry("pgd", 0.96, [0.85, 0.50, 0.20], steps=20,
                           step_size="2.5*eps/steps")}
    blocks.update(attacks)
    if autoattack is not None:
        blocks["autoattack"] = autoattack
    return {"dataset": "mnist", "model": "fcn2", "precision": "binary", "bits": 2,
            "epochs": 10, "seed": 0, "attack": "fgsm", "gradient": "straight_through",
            "adv_train": False, "adv_train_params": None, "clean_accuracy": 0.96,
            "adversarial_accuracy": blocks["fgsm"]["adversarial_accuracy"], "attacks": blocks,
            "width": 600, "data": {"source": "../shared/datasets/mnist",
                                   "train_examples": 60000, "test_examples": 1000},
            "command": "python -m tfdisc.experiments.mnist", "_path": "mnist/bnn2/results.json"}


def autoattack_entry(adv=(0.70, 0.40, 0.10)):
    components = {
        "apgd_ce": entry("apgd_ce", 0.96, [0.80, 0.45, 0.15]),
        "apgd_t": entry("apgd_t", 0.96, [0.72, 0.40, 0.10]),
        "square": entry("square", 0.96, list(adv))}
    return entry("autoattack", 0.96, list(adv), gradient="straight_through", n_iter=100,
                 n_queries=5000, sign_gradient="ste", version="standard",
                 components=components, components_meaning="cumulative")


def write(tmp_path, rec):
    root = tmp_path / "results"
    os.makedirs(root / "mnist" / "bnn2")
    rec = dict(rec)
    rec.pop("_path")
    (root / "mnist" / "bnn2" / "results.json").write_text(json.dumps(rec))
    return root


def test_best_attack_column_picks_autoattack_when_it_is_lowest(tmp_path):
    root = write(tmp_path, run(autoattack_entry()))
    text = report.build_report(str(root), str(tmp_path / "out" / "REPORT.md"))
    table_v = text.split("## Table V")[1].split("## Table VI")[0]
    # FGSM | PGD | QS | certified | best attack, per ε: AutoAttack's 70.0 beats PGD's 85.0.
    assert "| 90.0 | 85.0 | – | – | 70.0 (AutoAttack) |" in table_v
    assert "| 30.0 | 20.0 | – | – | 10.0 (AutoAttack) |" in table_v
    assert "best attack = min over AutoAttack, FGSM, PGD" in table_v
    # How it ran, and the accuracy after each of its components.
    assert "AutoAttack = standard (APGD-CE, APGD-T, Square; 100 iterations, Square 5000 " \
           "queries; sign gradient ste, quantizer gradient straight_through)" in table_v
    assert "accuracy after each component (APGD-CE → APGD-T → Square): ε=0.1 80.0 → 72.0 → " \
           "70.0, ε=0.2 45.0 → 40.0 → 40.0, ε=0.3 15.0 → 10.0 → 10.0" in table_v


def test_best_attack_is_pgd_when_autoattack_is_not_lower():
    b = report.bracket(run(autoattack_entry(adv=(0.88, 0.55, 0.25))), "0.1")
    assert b["best_by"] == ["pgd"] and report.fmt_best(b) == "85.0 (PGD)"
    b = report.bracket(run(autoattack_entry(adv=(0.85, 0.55, 0.25))), "0.1")
    assert report.fmt_best(b) == "85.0 (PGD/AutoAttack)"


def test_components_run_on_their_own_enter_the_best_attack_and_the_masking_flags():
    rec = run(apgd_ce=entry("apgd_ce", 0.96, [0.95, 0.70, 0.40]),
              square=entry("square", 0.96, [0.60, 0.50, 0.40], gradient="not used"))
    b = report.bracket(rec, "0.1")
    assert b["values"]["apgd_ce"] == pytest.approx(95.0)
    assert report.fmt_best(b) == "60.0 (Square)"
    # A gradient attack far weaker than the gradient-free Square: likely gradient masking.
    flags = report.masking_flags(rec, ["0.1"])
    assert {(f["attack"], f["by"]) for f in flags} == {("fgsm", "square"), ("pgd", "square"),
                                                      ("apgd_ce", "square")}


def test_autoattack_section_lists_every_row_and_marks_a_weaker_one(tmp_path):
    """AutoAttack ≤ min(FGSM, PGD, QS) row by row; a row where it is weaker is named, not hidden."""
    text = report.section_autoattack([dict(run(autoattack_entry(adv=(0.70, 0.55, 0.10))),
                                           _path="mnist/fcn2/a/results.json")])
    assert "| 70.0 | 90.0 | 85.0 | – | -15.0 (PGD) |" in text
    assert "| 55.0 | 60.0 | 50.0 | – | +5.0 (PGD) **weaker** |" in text
    assert "`mnist/fcn2/a/results.json` ε=0.2: AutoAttack 55.0 vs PGD 50.0" in text
    text = report.section_autoattack([dict(run(autoattack_entry()), _path="x/results.json")])
    assert "**weaker**" not in text and "at least as strong as FGSM, PGD and QS" in text
    assert "No run in the tables recorded AutoAttack." in report.section_autoattack(
        [dict(run(), _path="y/results.json")])
