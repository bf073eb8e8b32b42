"""Capacity search with keras-tuner: width, depth, input bits and precision against robustness.

One module per role; every public name is also ``tfdisc.tuning.<name>``:

* ``space``: the search space (``Space``, ``IntRange``, ``parse_int_space``);
* ``objective``: what a trial is measured by (``Objective``, adversarial accuracy on a
  validation split carved from the training set by ``split_validation``; ``profile``,
  a model's capacity);
* ``tuner``: ``CapacityTuner``, which builds, trains and measures each trial's model
  through ``tfdisc.pipeline`` (keras-tuner 1.4.8 never sees a tf-keras model,
  keras-team/keras-tuner#1039);
* ``oracle``: keras-tuner's oracles with leases, retries and skip-aware failures
  (``make_oracle``), and the per-trial records and progress lines;
* ``distributed``: chief/worker roles over keras-tuner's oracle service (``Distributed``,
  ``serve``);
* ``state``: the settings a search records and the checks of a rerun (``check_search``,
  ``remove_outputs``);
* ``trials``: the trials table, Pareto front and capacity plot a search writes;
* ``testset``: the test-set figures of the reported trials (``evaluate_reported``);
* ``driver``: ``run_search(SearchSettings(...))``, the whole search end to end.

Imports flow one way: ``driver`` uses the others, ``oracle`` uses none of them.
"""
from tfdisc.tuning.oracle import (OBJECTIVE, TRIAL_RECORD, TUNERS, BudgetExceeded,
                                  SearchStopped, SearchTimeout, describe_attempts, is_skipped,
                                  make_oracle, progress_line, read_trial_record)
from tfdisc.tuning.space import IntRange, Space, parse_int_space
from tfdisc.tuning.objective import Objective, profile, split_validation
from tfdisc.tuning.tuner import CapacityTuner
from tfdisc.tuning.distributed import Distributed, serve
from tfdisc.tuning.state import (OUTPUTS, PROJECT, SEARCH_RECORD, SearchStateError,
                                 check_search, remove_outputs, search_identity)
from tfdisc.tuning.trials import (CAPACITY_AXES, collect, pareto_front, plot_capacity,
                                  write_trials)
from tfdisc.tuning.testset import evaluate_reported
from tfdisc.tuning.driver import REPORTS, SearchSettings, run_search

__all__ = [
    # space
    "IntRange", "Space", "parse_int_space",
    # objective
    "OBJECTIVE", "Objective", "profile", "split_validation",
    # tuner and oracle
    "BudgetExceeded", "CapacityTuner", "SearchStopped", "SearchTimeout", "TRIAL_RECORD",
    "TUNERS", "describe_attempts", "is_skipped", "make_oracle", "progress_line",
    "read_trial_record",
    # distributed
    "Distributed", "serve",
    # state
    "OUTPUTS", "PROJECT", "SEARCH_RECORD", "SearchStateError", "check_search",
    "remove_outputs", "search_identity",
    # trials table, test set, driver
    "CAPACITY_AXES", "REPORTS", "SearchSettings", "collect", "evaluate_reported",
    "pareto_front", "plot_capacity", "run_search", "write_trials",
]
