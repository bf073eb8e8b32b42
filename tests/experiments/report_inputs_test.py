"""report on bad input (issue 26): corrupt or wrong-type files are named, never dropped silently
or fatal to the whole report; a missing results directory is an error; NaN decides no verdict;
the report is the same wherever it is written."""
import json
import math
import os

import pytest
from absl.testing import flagsaver

from tfdisc import results as results_lib
from tfdisc.experiments import report, report_capacity
from tests.experiments.report_test import PAPER, _trial, record


def _write(path, obj):
    os.makedirs(path.parent, exist_ok=True)
    if isinstance(obj, bytes):
        path.write_bytes(obj)
    else:
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


@pytest.fixture()
def tree(tmp_path):
    """An experiment directory: results/ (two good runs), NOTES.md beside it, paper tables."""
    home = tmp_path / "experiments"
    root = home / "results"
    _write(root / "mnist" / "bnn2" / "results.json",
           record("mnist", "binary", 2, [0.96, 0.955, 0.5, 0.2], [0.96, 0.95, 0.1, 0.0]))
    _write(root / "mnist" / "full8" / "results.json",
           record("mnist", "full", 8, [0.985, 0.24, 0.04, 0.01], [0.985, 0.06, 0.0, 0.0]))
    _write(home / "NOTES.md", "## How these runs were made\n\nBy hand, 3 lines of notes.")
    _write(tmp_path / "tables.json", PAPER)
    return home, root, tmp_path / "tables.json"


def _main(capsys, **flags):
    flags.setdefault("plots_dir", None)
    flags.setdefault("notes", None)
    with flagsaver.flagsaver(**flags):
        report.main(["report"])
    return capsys.readouterr()


# 1 and 2: a corrupt, future-schema or wrong-type file is named; the rest of the report stands.
BAD = {
    "truncated": '{"dataset": "mnist", "model": "fcn2", "prec',
    "not_utf8": b"\xff\xfe{}",
    "a_list": [1, 2, 3],
    "attacks_list": record("mnist", "full", 4, [0.9, 0.8, 0.7, 0.6], attacks=[]),
    "bits_string": record("mnist", "full", "4", [0.9, 0.8, 0.7, 0.6]),
    "percent": record("mnist", "full", 4, [97.0, 80.0, 70.0, 60.0]),
    "eps_key": record("mnist", "full", 4, [0.9, 0.8, 0.7, 0.6],
                      adversarial_accuracy={"small": 0.5}),
    "no_bits": {k: v for k, v in record("mnist", "full", 4, [0.9, 0.8, 0.7, 0.6]).items()
                if k != "bits"},
}
REASONS = {"truncated": "not readable JSON", "not_utf8": "not readable JSON",
           "a_list": "(top level)", "attacks_list": "`attacks` must be an object",
           "bits_string": "`bits` must be a positive integer",
           "percent": "not a percentage", "eps_key": "Bad epsilon 'small'",
           "no_bits": "missing required key(s) bits"}


def test_bad_results_files_are_listed_in_the_report_and_on_stderr(tree, capsys, tmp_path):
    home, root, paper = tree
    for name, content in BAD.items():
        _write(root / "bad" / name / "results.json", content)
    out = tmp_path / "out" / "REPORT.md"
    captured = _main(capsys, results_dir=str(root), out=str(out), paper_tables=str(paper))
    text = out.read_text()
    skipped = text.split("**Skipped files**")[1].split("##")[0]
    for name, reason in REASONS.items():
        line = next(l for l in skipped.splitlines() if f"`bad/{name}/results.json`" in l)
        assert reason in line, line
        assert f"skipped bad/{name}/results.json: " in captured.err
    # the good runs are all there
    assert "`mnist/bnn2/results.json`" in text and "`mnist/full8/results.json`" in text
    assert "bad/" not in text.split("## All runs")[1]


def test_load_without_a_skip_list_raises_naming_the_file(tree):
    _, root, _ = tree
    _write(root / "bad" / "results.json", record("mnist", "full", 4, [0.9, 0.8, 0.7, 0.6],
                                                 attacks={"fgsm": {"clean_accuracy": 0.9}}))
    with pytest.raises(results_lib.ResultsError,
                       match=r"bad/results.json: `attacks.fgsm` has no `adversarial_accuracy`"):
        results_lib.load(str(root))


def test_bad_trials_and_activations_files_are_listed_too(tree, tmp_path):
    _, root, paper = tree
    _write(root / "capacity" / "a" / "trials.json", "{oops")
    bad_trial = _trial("binary", 8, 150, 0.2, 0.1)
    bad_trial["hyperparameters"]["width"] = "150"
    _write(root / "capacity" / "b" / "trials.json", {"trials": [bad_trial]})
    _write(root / "mnist" / "act" / "activations.json", {"models": [{"layers": [1]}]})
    problems = []
    text = report.build_report(str(root), str(tmp_path / "REPORT.md"), paper_tables=str(paper),
                               problems=problems)
    skipped = text.split("**Skipped files**")[1].split("##")[0]
    assert "`capacity/a/trials.json`: not readable JSON" in skipped
    assert "`capacity/b/trials.json`: `trials[0].hyperparameters` must be" in skipped
    assert "`mnist/act/activations.json`: `models[0].layers` must be an object" in skipped
    assert len(problems) == 3 and "## Capacity" not in text


def test_bad_paper_tables_is_an_error_naming_it(tree, tmp_path):
    _, root, _ = tree
    bad = tmp_path / "tables_bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(results_lib.ResultsError, match="tables_bad.json: cannot read it as JSON"):
        report.build_report(str(root), str(tmp_path / "REPORT.md"), paper_tables=str(bad))
    assert not (tmp_path / "REPORT.md").exists()


# 3: no results, no report.
@pytest.mark.parametrize("case", ["missing", "empty", "only_corrupt"])
def test_no_usable_results_is_an_error_and_writes_nothing(case, tmp_path, capsys):
    results_dir = tmp_path / "results"
    if case != "missing":
        results_dir.mkdir()
    if case == "only_corrupt":
        _write(results_dir / "run" / "results.json", "{")
    out = tmp_path / "out" / "REPORT.md"
    with pytest.raises(SystemExit) as e:
        _main(capsys, results_dir=str(results_dir), out=str(out), paper_tables=None)
    message = str(e.value.code)
    assert message.startswith("tfdisc.experiments.report: ") and str(results_dir) in message
    assert ("does not exist" if case == "missing" else "no usable results.json") in message
    if case == "only_corrupt":
        assert "run/results.json: not readable JSON" in message
    assert not out.exists() and not (tmp_path / "out" / "plots").exists()


# 4: NaN is no data.
def test_nan_accuracies_decide_no_verdict(tree, tmp_path):
    _, root, paper = tree
    nan = float("nan")
    # Full-2b with every attack NaN at ε 0.1: "within 5 points of clean" used to be "refuted"
    _write(root / "mnist" / "full2" / "results.json",
           record("mnist", "full", 2, [0.98, nan, 0.3, 0.1], [0.98, nan, 0.0, 0.0]))
    text = report.build_report(str(root), str(tmp_path / "REPORT.md"), paper_tables=str(paper))
    claims = text.split("## The paper's claims")[1].split("### The paper's numbers")[0]
    row = next(l for l in claims.splitlines()
               if "Full-2b (no adv. training) keeps accuracy within 5 points of clean at ε=0.1" in l)
    assert "refuted" not in row and "proven" not in row and "**no**" not in row
    assert row.endswith("| no data (not run, or NaN recorded) |")
    # "more robust than Full-8b at ε=0.1" compares NaN too: no verdict either
    row = next(l for l in claims.splitlines() if "Full-2b is more robust than Full-8b at ε=0.1" in l)
    assert row.endswith("| no data (not run, or NaN recorded) |")
    # stated, with the keys, and shown as NaN in the tables
    nan_note = text.split("**No data (NaN recorded)**")[1].split("**The bracket")[0]
    assert ("`mnist/full2/results.json`: `adversarial_accuracy.0.1`, "
            "`attacks.fgsm.adversarial_accuracy.0.1`") in nan_note
    table_v = text.split("## Table V")[1].split("## Table VI")[0]
    assert "| Full-2b (fcn2) | 98.0 | – | NaN | NaN | – | – | – | –" in table_v


def test_nan_in_capacity_trials_decides_no_claim(tree, tmp_path):
    _, root, paper = tree
    bnn = _trial("binary", 8, 6144, float("nan"), 0.1)
    full = _trial("full", 8, 6144, 0.25, 0.12)
    for trial, tid in ((bnn, "0"), (full, "1")):
        trial["trial_id"] = tid
        for a in trial["test"]["attacks"].values():
            a["gradient"] = "straight_through"
    _write(root / "capacity" / "trials.json", {"dataset": "mnist", "model": "fcn2",
                                               "trials": [bnn, full]})
    text = report.build_report(str(root), str(tmp_path / "REPORT.md"), paper_tables=str(paper))
    claim = next(l for l in text.splitlines() if l.startswith("* **8-bit input, FCN1"))
    assert "FGSM (BNN vs full)" not in claim  # NaN: no "BNN behind or equal" verdict
    assert "PGD (BNN vs full) ε 0.1: 10.0 vs 12.0" in claim
    assert "`capacity/trials.json`: `trials[0].test.attacks.fgsm.adversarial_accuracy.0.1`" in text
    assert math.isnan(report_capacity.load_trials(str(root))[0][2]["test"]["attacks"]["fgsm"][
        "adversarial_accuracy"]["0.1"])


# 5: the same report wherever it is written.
def test_same_report_wherever_it_is_written(tree, tmp_path, capsys, monkeypatch):
    home, root, paper = tree
    in_tree = home / "REPORT.md"
    first = _main(capsys, results_dir=str(root), out=str(in_tree), paper_tables=str(paper))
    elsewhere = tmp_path / "far" / "away" / "REPORT.md"
    os.makedirs(tmp_path / "far")
    monkeypatch.chdir(tmp_path / "far")
    second = _main(capsys, results_dir=str(root), out=str(elsewhere), paper_tables=str(paper))
    text = in_tree.read_text()
    assert elsewhere.read_text() == text
    assert "## How these runs were made\n\nBy hand, 3 lines of notes." in text
    assert "from every `results.json` under `results`." in text
    # figures go to plots/ beside the report, which links them relative to itself, and says so
    for out, captured in ((in_tree, first), (elsewhere, second)):
        plots = out.parent / "plots"
        assert (plots / "fig4_input_bits_mnist.png").stat().st_size > 1000
        assert f"Figures in {plots} " in captured.out
        assert f"notes from {home / 'NOTES.md'}" in captured.out
    assert "(plots/fig4_input_bits_mnist.png)" in text


def test_explicit_notes_flag_and_missing_notes_file(tree, tmp_path, capsys):
    _, root, paper = tree
    notes = tmp_path / "other_notes.md"
    notes.write_text("## Other notes")
    out = tmp_path / "REPORT.md"
    _main(capsys, results_dir=str(root), out=str(out), paper_tables=str(paper), notes=str(notes))
    assert "## Other notes" in out.read_text()
    with pytest.raises(SystemExit, match="--notes .*missing.md: No such file"):
        _main(capsys, results_dir=str(root), out=str(out), paper_tables=str(paper),
              notes=str(tmp_path / "missing.md"))


def test_cli_missing_results_dir_exits_non_zero_with_one_message(tmp_path):
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    proc = subprocess.run(
        [sys.executable, "-m", "tfdisc.experiments.report", "--results_dir=nowhere",
         "--out=out/REPORT.md"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "tfdisc.experiments.report: results directory 'nowhere' does not exist")
    assert not (tmp_path / "out").exists() and proc.stdout == ""


# The same class of bug in the neighbouring code.
def test_unlistable_directory_is_listed_not_skipped_silently(tree, tmp_path, monkeypatch):
    _, root, paper = tree
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):
        yield from real_walk(top, onerror=onerror, **kwargs)
        onerror(PermissionError(13, "Permission denied", str(root / "locked")))

    monkeypatch.setattr(results_lib.os, "walk", walk)
    text = report.build_report(str(root), str(tmp_path / "REPORT.md"), paper_tables=str(paper))
    assert ("* `locked`: directory not listable, any results.json in it is not read "
            "(Permission denied)") in text
    with pytest.raises(results_lib.ResultsError, match="locked: directory not listable"):
        results_lib.load(str(root))


def test_zero_gradient_fraction_of_wrong_type_is_named(tree, tmp_path):
    _, root, paper = tree
    rec = record("mnist", "full", 2, [0.98, 0.98, 0.98, 0.98], gradient="none")
    rec["attacks"]["fgsm"]["zero_gradient_fraction"] = "all"  # the masking section formats it
    _write(root / "mnist" / "masked" / "results.json", rec)
    text = report.build_report(str(root), str(tmp_path / "REPORT.md"), paper_tables=str(paper))
    assert ("`mnist/masked/results.json`: `attacks.fgsm.zero_gradient_fraction` must be a "
            "number") in text


def test_two_activation_figures_do_not_overwrite_each_other(tree, tmp_path):
    _, root, paper = tree
    for i, name in enumerate(("act_a", "act_b")):
        _write(root / "mnist" / name / "activations.json",
               {"models": [], "epsilons": [], "normalization": f"norm {name}"})
        (root / "mnist" / name / "activations.png").write_bytes(bytes([i]) * 10)
    out = tmp_path / "out" / "REPORT.md"
    text = report.build_report(str(root), str(out), paper_tables=str(paper))
    fig6 = text.split("## Fig. 6")[1].split("\n## ")[0]
    assert "(plots/fig6_activations.png)" in fig6 and "(plots/fig6_activations_2.png)" in fig6
    assert (out.parent / "plots" / "fig6_activations.png").read_bytes() == bytes([0]) * 10
    assert (out.parent / "plots" / "fig6_activations_2.png").read_bytes() == bytes([1]) * 10


def test_out_that_is_a_directory_is_refused(tree, tmp_path, capsys):
    _, root, paper = tree
    with pytest.raises(SystemExit, match="is a directory; give the report's file name"):
        _main(capsys, results_dir=str(root), out=str(tmp_path), paper_tables=str(paper))
    assert not (tmp_path / "plots").exists()
