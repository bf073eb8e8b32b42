"""tfdisc.tuning is one package with a module per role, and its public API is complete."""
import ast
import importlib
import os

import pytest

import tfdisc
from tfdisc import tuning

# Every name the five former top-level modules (tuning, tuning_oracle, tuning_results,
# tuning_state, tuning_testset) exported, with the module of its role today.
ROLES = {
    "space": ["IntRange", "Space", "parse_int_space"],
    "objective": ["Objective", "profile", "split_validation"],
    "tuner": ["CapacityTuner"],
    "oracle": ["BudgetExceeded", "OBJECTIVE", "SearchStopped", "SearchTimeout", "TRIAL_RECORD",
               "TUNERS", "describe_attempts", "is_skipped", "make_oracle", "progress_line",
               "read_trial_record"],
    "distributed": ["Distributed", "serve"],
    "state": ["OUTPUTS", "PROJECT", "SEARCH_RECORD", "SearchStateError", "check_search",
              "remove_outputs", "search_identity"],
    "trials": ["CAPACITY_AXES", "collect", "pareto_front", "plot_capacity", "write_trials"],
    "testset": ["evaluate_reported"],
    "driver": ["REPORTS", "SearchSettings", "run_search"],
}
PACKAGE_DIR = os.path.dirname(tuning.__file__)


def test_every_public_name_is_tfdisc_tuning_name_and_lives_in_its_role_module():
    names = [n for role in ROLES.values() for n in role]
    assert sorted(tuning.__all__) == sorted(names)
    for role, role_names in ROLES.items():
        module = importlib.import_module(f"tfdisc.tuning.{role}")
        for name in role_names:
            assert getattr(tuning, name) is getattr(module, name), name
            assert name in module.__all__, (role, name)


def test_tfdisc_tuning_is_the_package_and_the_old_modules_are_gone():
    assert tfdisc.tuning is tuning
    for old in ("tuning_oracle", "tuning_results", "tuning_state", "tuning_testset"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"tfdisc.{old}")
        with pytest.raises(AttributeError):
            getattr(tfdisc, old)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role_modules_import_siblings_never_the_package_and_stay_small(role):
    path = os.path.join(PACKAGE_DIR, f"{role}.py")
    with open(path) as f:
        text = f.read()
    assert text.count("\n") < 500
    for node in ast.walk(ast.parse(text)):
        # `from tfdisc import tuning` (or `import tfdisc.tuning`) in a role module would run
        # the package __init__, which imports every role module: an import cycle.
        if isinstance(node, ast.ImportFrom) and node.module == "tfdisc":
            assert "tuning" not in [a.name for a in node.names], (role, ast.unparse(node))
        if isinstance(node, ast.Import):
            assert "tfdisc.tuning" not in [a.name for a in node.names], (role, ast.unparse(node))
