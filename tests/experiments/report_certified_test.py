"""report: the certified-training section (issue 30) and its runs kept out of the paper's tables."""
import pytest

from tfdisc.experiments import report
from tests.experiments.report_bracket_test import run, write


def ibp_run(certified=(0.95, 0.93, 0.90), qs=(0.97, 0.95, 0.93), edges=(90.5,), bits=1):
    rec = run("full", bits, certified=certified, qs=qs, pgd_first=(0.96, 0.94, 0.92),
              transfer_first=None)
    rec["attacks"]["fgsm"]["prefixes"]["1000"]["adversarial_accuracy"] = {
        "0.1": 0.97, "0.2": 0.96, "0.3": 0.95}
    rec["certified"]["counterexample"] = {"0.1": 0.02, "0.2": 0.03, "0.3": 0.05}
    rec["adv_train_params"] = {"method": "ibp", "eps": 0.3, "ramp_start": 469,
                               "ramp_steps": 3752, "kappa": [1.0, 0.5]}
    rec["train_seconds"] = 900.0
    rec["certified"]["unknown"] = {"0.1": 0.01, "0.2": 0.02, "0.3": 0.03}
    rec["quantizer"] = ({"name": "eq2", "bits": bits} if edges is None else
                        {"name": "custom_edges", "bits": bits, "edges": list(edges),
                         "chosen_from": "training images (eps 0.3)"})
    rec["_path"] = f"certified_training/fcn2_full_{bits}b_ibp/results.json"
    return rec


def test_section_sets_certified_training_beside_the_anchors(tmp_path):
    root = tmp_path / "results"
    write(root, [ibp_run(), run("full", 2)])
    records = report.load_results(str(root))
    text = report.section_certified_training(records)
    assert "91.95 / ≈93.3 / 93.38 / 93.62 / ≈93.6" in text  # the ε = 0.3 MNIST anchors
    assert "L∞ perturbations of the 8-bit image in [0, 1]" in text
    row = next(line for line in text.splitlines() if "| 0.3 | **" in line)  # the ε = 0.3 row
    assert "1-bit, edges 90.5 (from training images (eps 0.3))" in row
    assert "**90.0** (first 1000)" in row and "| 97.0 |" in row  # decided = 1 − unknown
    assert "15 min" in row and "IBP / CROWN-IBP" in row
    assert "Zero violations" in text
    # The IBP run is not a paper row: Table V's Full-1b cell does not exist, Full-2b is the plain run.
    assert set(report.select(records, dataset="mnist", adv_train=False)) == {
        ("fcn2", "full", 2)}


def test_violation_is_flagged():
    rec = ibp_run(certified=(0.99, 0.93, 0.90))  # certified 99 > QS 97 at 0.1
    rec["_path"] = "x/results.json"
    text = report.section_certified_training([rec])
    assert "**SOUNDNESS VIOLATION**" in text and "ε=0.1" in text


def test_re_evaluated_run_names_its_weights():
    rec = ibp_run()
    rec.update(epochs=0, train_seconds=0.0, init_from="../../runs/mnist/fcn2_full_1b_ibp0.3")
    text = report.section_certified_training([rec])
    assert "weights of `fcn2_full_1b_ibp0.3` (see notes)" in text and "0 min" not in text
    assert "weights trained elsewhere" in text and "ramp from step" not in text


def test_eq2_ibp_run_and_no_run():
    text = report.section_certified_training([ibp_run(edges=None, bits=2)])
    assert "2-bit, eq. 2" in text
    assert "No certified-training run" in report.section_certified_training([run("full", 2)])


@pytest.mark.parametrize("rec, expected", [
    (ibp_run(edges=None, bits=2), False), (run("full", 2), True)])
def test_paper_setting(rec, expected):
    assert report.paper_setting(rec) is expected
