"""report: certified and best-attack columns, the gradient-masking flag, bracket plots, claims."""
import json
import os

import pytest

from tfdisc.experiments import report

EPS = ["0.1", "0.2", "0.3"]


def entry(name, n, clean, adv, prefix=None, **extra):
    """An attacks entry on the first ``n`` test images; ``prefix``: (m, clean, adv) on the first m."""
    e = {"name": name, "examples": n, "clean_accuracy": clean,
         "adversarial_accuracy": dict(zip(EPS, adv)), **extra}
    if prefix:
        m, pclean, padv = prefix
        e["prefixes"] = {str(m): {"examples": m, "clean_accuracy": pclean,
                                  "adversarial_accuracy": dict(zip(EPS, padv))}}
    return e


def run(precision="binary", bits=2, *, pgd_first=(0.95, 0.80, 0.10), qs=(0.93, 0.70, 0.05),
        certified=(0.40, 0.10, 0.0), transfer_first=(0.97, 0.90, 0.50), adv=False):
    """fcn2 MNIST run: FGSM/PGD/transfer on 10 000 images (with their first-1000 record), QS and
    certification on the first 1000."""
    rec = {"dataset": "mnist", "model": "fcn2", "precision": precision, "bits": bits,
           "epochs": 10, "seed": 0, "attack": "fgsm", "gradient": "straight_through",
           "adv_train": adv, "adv_train_params": {"method": "rfgsm", "eps": 0.3, "alpha": 0.15,
                                                  "adv_ratio": 0.5} if adv else None,
           "clean_accuracy": 0.98, "width": 600,
           "data": {"source": "../shared/datasets/mnist", "train_examples": 60000,
                    "test_examples": 10000},
           "command": "python -m tfdisc.experiments.mnist",
           "attacks": {
               # On all 10 000 images FGSM is far lower than anything on the first 1000: the
               # best attack must not pick it up (like with like).
               "fgsm": entry("fgsm", 10000, 0.98, [0.50, 0.20, 0.0],
                             prefix=(1000, 0.99, [0.96, 0.85, 0.2])),
               "pgd": entry("pgd", 10000, 0.98, [0.52, 0.21, 0.0],
                            prefix=(1000, 0.99, list(pgd_first)), steps=20,
                            step_size="2.5*eps/steps"),
           }}
    rec["adversarial_accuracy"] = rec["attacks"]["fgsm"]["adversarial_accuracy"]
    if qs is not None:
        rec["attacks"]["quantized_search"] = entry(
            "quantized_search", 1000, 0.99, list(qs), gradient="none", uses_gradient=False,
            restarts=1, iterations=40, candidates=16)
    if transfer_first is not None:
        rec["transfer"] = dict(entry("fgsm", 10000, 0.98, [0.9, 0.8, 0.4],
                                     prefix=(1000, 0.99, list(transfer_first))),
                               source_model="fcn2_full_8b", source_gradient="straight_through",
                               attack="fgsm")
    if certified is not None:
        rec["certified"] = {"certified": dict(zip(EPS, certified)),
                            "counterexample": dict(zip(EPS, [0.2, 0.3, 0.96])),
                            "unknown": {}, "examples": 1000,
                            "method": {"complete_max_free": 16}}
    rec["_path"] = f"mnist/fcn2_{precision}_{bits}b{'_adv' if adv else ''}/results.json"
    return rec


def test_best_attack_is_the_minimum_on_the_same_images():
    b = report.bracket(run(), "0.1")
    assert b["examples"] == 1000
    assert b["values"] == pytest.approx({"fgsm": 96.0, "pgd": 95.0, "quantized_search": 93.0,
                                         "transfer": 97.0, "certify": 80.0})
    assert b["best"] == pytest.approx(80.0) and b["best_by"] == ["certify"]
    assert b["certified"] == pytest.approx(40.0) and b["clean"] == pytest.approx(99.0)
    # Without the certifier's counterexamples, QS is the minimum; FGSM's 50.0 on 10 000 images
    # is never mixed in.
    rec = run()
    rec["certified"].pop("counterexample")
    b = report.bracket(rec, "0.2")
    assert b["best"] == pytest.approx(70.0) and b["best_by"] == ["quantized_search"]
    assert report.fmt_best(b) == "70.0 (QS)"


def test_best_attack_leaves_out_attacks_without_a_record_on_those_images():
    rec = run()
    del rec["attacks"]["pgd"]["prefixes"]
    b = report.bracket(rec, "0.1")
    assert "pgd" not in b["values"] and b["left_out"] == {"pgd": 10000}
    assert "PGD (ran on 10000)" in report.describe_bracket(rec)
    # No certification: the bracket uses the fewest images any attack ran on.
    rec = run(certified=None, qs=None, transfer_first=None)
    rec["attacks"]["fgsm"].pop("prefixes")
    rec["attacks"]["pgd"] = entry("pgd", 500, 0.97, [0.9, 0.6, 0.1])
    b = report.bracket(rec, "0.2")
    assert b["examples"] == 500 and b["certified"] is None and b["best"] == pytest.approx(60.0)


def test_masking_flag_over_two_points():
    # QS beats PGD by 2.5 points at 0.1 (95.0 vs 92.5): flagged; FGSM 96.0 is 3.5 above: flagged.
    flags = report.masking_flags(run(qs=(0.925, 0.99, 0.99), transfer_first=None), EPS)
    assert {(f["eps"], f["attack"], f["by"]) for f in flags} == {("0.1", "pgd", "quantized_search"),
                                                                 ("0.1", "fgsm", "quantized_search")}
    pgd = next(f for f in flags if f["attack"] == "pgd")
    assert pgd["gap"] == pytest.approx(2.5) and pgd["examples"] == 1000


def test_masking_flag_not_raised_at_two_points_or_less():
    # Exactly 2 points (95.0 vs 93.0, not exact in floating point) and 1 point: no flag.
    assert report.masking_flags(run(pgd_first=(0.95, 0.80, 0.10), qs=(0.93, 0.79, 0.10),
                                    transfer_first=None), ["0.1", "0.2", "0.3"]) == [
        f for f in report.masking_flags(run(qs=(0.93, 0.79, 0.10), transfer_first=None), EPS)
        if f["attack"] == "fgsm"]
    assert not [f for f in report.masking_flags(run(qs=(0.93, 0.79, 0.10),
                                                    transfer_first=None), EPS)
                if f["attack"] == "pgd"]


def test_masking_flag_from_transfer():
    flags = report.masking_flags(run(qs=None, transfer_first=(0.97, 0.90, 0.05)), ["0.3"])
    assert {(f["attack"], f["by"]) for f in flags} == {("fgsm", "transfer"), ("pgd", "transfer")}


def test_soundness_violation_detected():
    assert report.soundness_violations(run(), EPS) == []
    bad = report.soundness_violations(run(certified=(0.96, 0.10, 0.0)), EPS)
    assert [e for e, _ in bad] == ["0.1"]  # certified 96.0 > best 80.0 (certifier's search)


def write(root, records):
    for rec in records:
        d = root / os.path.dirname(rec["_path"])
        os.makedirs(d, exist_ok=True)
        (d / "results.json").write_text(json.dumps({k: v for k, v in rec.items()
                                                    if k != "_path"}))


def test_report_certified_column_flags_and_bracket_plots(tmp_path):
    root = tmp_path / "results"
    masked = run(qs=(0.90, 0.70, 0.05))  # PGD 95.0 vs QS 90.0 at 0.1
    old = run("full", 2, qs=None, certified=None, transfer_first=None)  # predates --certify
    write(root, [masked, old, run("full", 8, certified=(0.0, 0.0, 0.0))])
    out = tmp_path / "out" / "REPORT.md"
    (tmp_path / "tables.json").write_text("{}")
    text = report.build_report(str(root), str(out), paper_tables=str(tmp_path / "tables.json"))
    table_v = text.split("## Table V")[1].split("## Table VI")[0]
    # BNN-2b: FGSM, PGD (flagged) on 10 000 | QS | certified | best attack.
    assert ("| BNN-2b (fcn2) | 98.0 | – | 50.0 ⚠ | 52.0 ⚠ | 90.0 | 40.0 | 80.0 (certifier's "
            "counterexamples) | – |") in table_v
    # The run without --certify: "–" in the certified column, and says why.
    assert "| Full-2b (fcn2) | 98.0 | – | 50.0 | 52.0 | – | – | 50.0 (FGSM) |" in table_v
    assert "not certified (run made without --certify)" in table_v
    flags = text.split("## Likely gradient masking")[1].split("\n## ")[0]
    assert "likely gradient masking" in flags
    assert "| BNN-2b (fcn2) | 0.1 | PGD 95.0 | QS 90.0 | 5.0 | first 1000 |" in flags
    assert "SOUNDNESS VIOLATION" not in text
    brackets = text.split("## Bracket plots")[1].split("\n## ")[0]
    for rec in (masked, old):
        png = tmp_path / "out" / "plots" / "bracket" / report.bracket_plot_name(rec)
        assert png.stat().st_size > 1000
        assert f"plots/bracket/{png.name}" in brackets
    assert "| [40.0, 80.0] | [10.0, 70.0] | [0.0, 4.0] |" in brackets
    assert "| [–, 50.0] |" in brackets  # not certified


def test_claims_verdicts_over_the_bracket(tmp_path):
    root = tmp_path / "results"
    # Full-2b certified 95.0 at 0.1, Full-8b best attack ≤ 6.0: "2b more robust by ≥ 10" proven.
    full2 = run("full", 2, certified=(0.95, 0.5, 0.0), qs=(0.97, 0.9, 0.1))
    full2["certified"]["counterexample"] = {"0.1": 0.02, "0.2": 0.1, "0.3": 0.9}
    full8 = run("full", 8, certified=(0.0, 0.0, 0.0), qs=(0.06, 0.0, 0.0))
    write(root, [full2, full8])
    claims = report.section_claims(report.load_results(str(root)))
    row = next(line for line in claims.splitlines()
               if "Full-2b is more robust than Full-8b at ε=0.1" in line)
    # Full-2b's bracket at 0.1 is closed (certified 95.0 = best attack): shown as exact.
    assert "**proven** (certified)" in row and "95.0 (exact) vs [0.0, 6.0]" in row
    row = next(line for line in claims.splitlines()
               if "Full-2b (no adv. training) keeps accuracy within 5 points of clean at ε=0.1"
               in line)
    assert "**proven**" in row


def test_paper_numbers_against_the_bracket(tmp_path):
    root = tmp_path / "results"
    # Full-2b at 0.1/0.2/0.3: certified 95/50/0, best attack 95 (PGD) / 80 (PGD) / 10.
    full2 = run("full", 2, certified=(0.95, 0.5, 0.0), qs=(0.97, 0.9, 0.1))
    full2["certified"]["counterexample"] = {"0.1": 0.02, "0.2": 0.1, "0.3": 0.9}
    write(root, [full2])
    paper = {"table_V": {"rows": [{"name": "Full-2b", "accuracy_percent": {
        "0": 98.0, "0.1": 97.4, "0.2": 40.0, "0.3": 5.0}}]}}
    text = report.section_paper_bracket(report.load_results(str(root)), paper)
    rows = {line.split(" | ")[2]: line for line in text.splitlines() if "| Table V |" in line}
    assert "**excluded** for our model: 2.4 points above our best attack" in rows["0.1"]
    assert "true robust accuracy exactly 95.0" in rows["0.1"]
    assert "below our certified bound" in rows["0.2"]
    assert "not excluded: inside our bracket [0.0, 10.0]" in rows["0.3"]


def test_decided_bracket_is_shown_as_exact_with_the_exact_method(tmp_path):
    """Every example decided at ε = 0.1 (certified 93 %, counterexamples 7 %): the bracket closes,
    the tables state the exact robust accuracy, and the run's description names the exact
    verifier and the fraction it decided."""
    root = tmp_path / "results"
    rec = run("full", 2, certified=(0.93, 0.10, 0.0), qs=(0.95, 0.70, 0.05))
    rec["certified"].update(
        counterexample={"0.1": 0.07, "0.2": 0.2, "0.3": 0.96},
        unknown={"0.1": 0.0, "0.2": 0.7, "0.3": 0.04},
        method={"requested": "auto", "complete_max_free": 16,
                "exact": {"name": "exact-milp", "solver": "highs 1.16.0 (highspy)",
                          "time_limit_s": 2.0, "encoding": "relu"}})
    b = report.bracket(rec, "0.1")
    assert b["exact"] and b["best"] == pytest.approx(93.0) and b["unknown"] == 0.0
    assert not report.bracket(rec, "0.2")["exact"]
    assert report.fmt_bracket(b) == "**93.0** (exact)"
    assert report.fmt_bracket(report.bracket(rec, "0.2")) == "[10.0, 70.0]"
    text = report.describe_bracket(rec)
    assert ("exact verification over the reachable quantized inputs (exact-milp, encoding relu, "
            "highs 1.16.0 (highspy), 2 s per example and ε") in text
    assert "decided (certified or counterexample): ε=0.1 100.0 %, ε=0.2 30.0 %, ε=0.3 96.0 %" \
        in text
    write(root, [rec])
    records = report.load_results(str(root))
    brackets = report.section_brackets(records, str(tmp_path / "plots"), str(tmp_path))
    assert "| **93.0** (exact) | [10.0, 70.0] | [0.0, 4.0] |" in brackets
    paper = {"table_V": {"rows": [{"name": "Full-2b", "accuracy_percent": {"0.1": 90.0}}]}}
    text = report.section_paper_bracket(records, paper)
    assert "below our model's true robust accuracy, which is exactly 93.0" in text


def test_undecided_run_is_described_with_its_branch_and_bound():
    text = report.describe_bracket(run())
    assert "interval bounds + branch and bound (≤ 16 free pixels) on the first 1000" in text
