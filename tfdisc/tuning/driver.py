"""Running a capacity search end to end, and what it writes: trials, Pareto front, plot, model.

``run_search(settings)`` chains the parts of ``tfdisc.tuning``: it loads the data, carves
the validation split out of the training set, runs the search (locally, or as
the chief or a worker of a distributed search) and, in the process that owns
the oracle, writes into ``settings.output_dir``:

* ``trials.json`` / ``trials.csv``: every trial with its hyperparameters,
  parameters, binary MACs, packed size, status (completed, skipped over
  budget, failed), validation clean and adversarial accuracy; the Pareto
  front (highest validation adversarial accuracy for its capacity) and, for
  the reported trials only, test-set figures;
* ``capacity.png``: validation adversarial accuracy against capacity, the
  Pareto front marked;
* ``model.keras``: the best trial's model (none if no trial completed); ``logs/``: TensorBoard (one
  directory per trial, with hparams); ``search/``: keras-tuner's state (what a
  rerun resumes from), each trial's model and record, and ``tfdisc_search.json``:
  the settings that decide the trials. A rerun with other such settings is
  refused, never mixed into the old search (``tfdisc.tuning.state``).
"""
import dataclasses
import os
import shlex
import shutil
import time
from typing import Optional, Tuple

from tfdisc import attacks, pipeline, results
from tfdisc._version import __version__
from tfdisc.tuning import testset
from tfdisc.tuning.distributed import Distributed, serve
from tfdisc.tuning.objective import Objective, split_validation
from tfdisc.tuning.oracle import (TUNERS, SearchStopped, SearchTimeout, describe_attempts,
                                  make_oracle)
from tfdisc.tuning.space import Space
from tfdisc.tuning.state import PROJECT, check_search
from tfdisc.tuning.trials import (CAPACITY_AXES, collect, pareto_front, plot_capacity,
                                  write_trials)
from tfdisc.tuning.tuner import CapacityTuner

__all__ = ["REPORTS", "SearchSettings", "run_search"]

REPORTS = ("best", "pareto", "all")


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """One capacity search.

    ``base`` gives the dataset, model family and schedule (epochs: per trial,
    Hyperband's maximum), and the test-set evaluation of the reported trials
    (``attacks``, ``epsilons``, ``attack_params``, ``attack_limits``,
    ``test_limit``).
    """

    base: pipeline.Config
    space: Space
    objective: Objective
    output_dir: str
    tuner: str = "random"
    max_trials: Optional[int] = None
    hyperband_factor: int = 3
    validation_examples: int = 5000
    max_binary_macs: Optional[int] = None
    max_packed_bytes: Optional[int] = None
    report: str = "pareto"
    capacity: str = "packed_bytes"
    distributed: Distributed = Distributed()
    stop_after: Optional[int] = None
    max_retries_per_trial: int = 1
    max_consecutive_failures: int = 3
    lease_seconds: float = 120.0
    heartbeat_seconds: float = 10.0
    timeout_seconds: float = 600.0
    poll_seconds: float = 1.0
    transfer_attacks: Tuple[str, ...] = ()
    transfer_limit: Optional[int] = None
    command: Optional[str] = None

    def __post_init__(self):
        if self.tuner not in TUNERS:
            raise ValueError(f"Unknown tuner {self.tuner!r}; available: "
                             f"{', '.join(TUNERS)}.")
        if self.report not in REPORTS:
            raise ValueError(f"`report` must be one of {REPORTS}, got {self.report!r}.")
        if self.capacity not in CAPACITY_AXES:
            raise ValueError(f"`capacity` must be one of {tuple(CAPACITY_AXES)}, got "
                             f"{self.capacity!r}.")
        for name, minimum in (("max_trials", 1), ("stop_after", 1), ("max_binary_macs", 0),
                              ("max_packed_bytes", 0), ("transfer_limit", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < minimum):
                raise ValueError(f"`{name}` must be an integer ≥ {minimum} or None, got "
                                 f"{value!r}.")
        if self.hyperband_factor < 2:
            raise ValueError(f"`hyperband_factor` must be ≥ 2, got {self.hyperband_factor}.")
        for name in ("lease_seconds", "heartbeat_seconds", "timeout_seconds", "poll_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)!r}.")
        unknown = [a for a in self.transfer_attacks if a not in attacks.available()]
        if unknown:
            raise ValueError(f"Unknown transfer attack(s) {unknown}; available: "
                             f"{', '.join(attacks.available())}.")
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(f"`heartbeat_seconds` ({self.heartbeat_seconds}) must be at most "
                             f"half of `lease_seconds` ({self.lease_seconds}).")

    @property
    def project_dir(self):
        return os.path.join(self.output_dir, PROJECT)


def _best(rows):
    done = [r for r in rows if r["status"] == "completed"]
    if not done:
        return None
    return max(done, key=lambda r: (r["validation"]["adversarial_accuracy"],
                                    -r.get("packed_bytes", 0)))["trial_id"]


# ----------------------------------------------------------------- the run


def _summary(settings, rows, front, best, reported, data, objective, finished):
    base = settings.base
    return {
        "dataset": base.dataset, "model": base.model, "tuner": settings.tuner,
        "max_trials": settings.max_trials, "space": settings.space.describe(),
        "objective": objective,
        "budget": {"max_binary_macs": settings.max_binary_macs,
                   "max_packed_bytes": settings.max_packed_bytes},
        "schedule": (f"{base.epochs} epochs per trial"
                     + (" (Hyperband maximum, factor %d)" % settings.hyperband_factor
                        if settings.tuner == "hyperband" else "")
                     + f", Adam lr {base.learning_rate:g} cosine-decayed, batch "
                       f"{base.batch_size}, {data['train_examples']} training examples"),
        "data": data, "search_finished": finished, "capacity_axis": settings.capacity,
        "best_trial": best, "pareto_front": front, "reported": sorted(reported),
        "trials": rows, "command": settings.command, "tfdisc_version": __version__,
    }


def _data_note(data):
    return (f"{data['validation_examples']} validation examples held out of "
            f"{data['train_examples'] + data['validation_examples']} training")


def _rerun_command(settings):
    """The command to rerun to finish this search (without --overwrite, which would delete it)."""
    if not settings.command:
        return "the same command (without --overwrite)"
    words = [w for w in shlex.split(settings.command)
             if w.split("=")[0] not in ("--overwrite", "--nooverwrite")]
    return shlex.join(words)


def _best_model(settings, rows, best):
    """``model.keras`` beside ``trials.json`` is the best trial's model, or absent."""
    path = os.path.join(settings.output_dir, "model.keras")
    if best is None:
        if os.path.exists(path):
            os.remove(path)
        return
    row = next(r for r in rows if r["trial_id"] == best)
    tmp = f"{path}.{os.getpid()}.tmp"
    shutil.copyfile(os.path.join(settings.project_dir, row["model_file"]), tmp)
    os.replace(tmp, path)


def run_search(settings, *, progress=print):
    """Runs (or resumes) the search of ``settings``; returns the summary (None on a worker).

    Raises:
      ValueError: bad settings or data.
      SearchStateError: ``output_dir`` holds a search made with other settings, or a
        corrupt one (``tfdisc.tuning.state.check_search``).
      SearchTimeout: a distributed wait ran out (the chief first writes
        ``trials.json`` with the trials that ended, and the message says how to finish).
      SearchStopped: the chief stopped the search after too many failed trials
        (it first writes ``trials.json``).
    """
    os.makedirs(settings.output_dir, exist_ok=True)
    check_search(settings, progress=progress)
    dist = settings.distributed
    dist.apply(settings.timeout_seconds)
    oracle = make_oracle(
        settings.tuner, settings.space, max_trials=settings.max_trials,
        max_epochs=settings.base.epochs, factor=settings.hyperband_factor, seed=settings.base.seed,
        max_retries_per_trial=settings.max_retries_per_trial,
        max_consecutive_failures=settings.max_consecutive_failures,
        lease_seconds=settings.lease_seconds if dist.enabled else None)
    x_train, y_train, x_test, y_test = pipeline.load_data(settings.base)
    x_train, y_train, x_val, y_val = split_validation(
        x_train, y_train, settings.validation_examples, seed=settings.base.seed)
    data = {"source": results.portable_path(settings.base.data_dir, settings.output_dir)
            or "tensorflow-datasets",
            "train_examples": int(len(y_train)), "validation_examples": int(len(y_val)),
            "validation": "held out of the training set (fixed shuffle), never the test set",
            "test_examples": int(len(y_test))}
    tuner = CapacityTuner(
        oracle, base=settings.base, data=(x_train, y_train, x_val, y_val),
        objective=settings.objective, max_binary_macs=settings.max_binary_macs,
        max_packed_bytes=settings.max_packed_bytes,
        log_dir=os.path.join(settings.output_dir, "logs"), stop_after=settings.stop_after,
        heartbeat_seconds=settings.heartbeat_seconds, timeout_seconds=settings.timeout_seconds,
        poll_seconds=settings.poll_seconds, progress=progress, directory=settings.output_dir,
        project_name=PROJECT, overwrite=False)
    start = time.time()
    if dist.is_chief:
        tuner.oracle.verbose = 0
        tuner.oracle.progress, tuner.oracle.record_dir = progress, settings.project_dir
        tuner.save()
        progress(f"chief: serving the {settings.tuner} oracle on "
                 f"{dist.oracle_ip}:{dist.oracle_port}")
        try:
            serve(tuner.oracle, f"{dist.oracle_ip}:{dist.oracle_port}",
                  timeout_seconds=settings.timeout_seconds)
        except (SearchTimeout, SearchStopped) as e:
            # Write what is known, then say how to finish; the oracle's state is saved.
            rows = collect(tuner.oracle, settings.project_dir)
            best = _best(rows)
            _best_model(settings, rows, best)
            write_trials(settings.output_dir, {
                **_summary(settings, rows, pareto_front(rows, settings.capacity), best, set(),
                           data, settings.objective.describe(), False),
                "unfinished": tuner.oracle.unfinished(), "test_complete": False})
            ended = sum(r["status"] not in ("running", "waiting_for_retry") for r in rows)
            raise type(e)(f"{e}\nWrote {os.path.join(settings.output_dir, 'trials.json')} "
                          f"with the {ended} trial(s) that ended. To finish the search, rerun "
                          f"the chief and its workers with: {_rerun_command(settings)}"
                          ) from None
        finished = True
    else:
        ran = tuner.search()
        if dist.enabled:
            progress(f"{dist.tuner_id}: ran {ran} trial(s) in {time.time() - start:.0f} s")
            return None
        finished = not (settings.stop_after and ran >= settings.stop_after) and \
            not tuner.oracle.stop_reason
    oracle = tuner.oracle
    rows = collect(oracle, settings.project_dir)
    front = pareto_front(rows, settings.capacity)
    best = _best(rows)
    reported = {"best": {best} - {None}, "pareto": set(front) | ({best} - {None}),
                "all": {r["trial_id"] for r in rows if r["status"] == "completed"}}[
                    settings.report]
    objective = settings.objective.describe(
        tuner.load_model(oracle.trials[best]) if best is not None else None)
    _best_model(settings, rows, best)  # before trials.json names it (or says there is none)
    extra = {"stopped": oracle.stop_reason} if oracle.stop_reason else {}

    def checkpoint():  # test figures so far; "test_complete" false until the end
        write_trials(settings.output_dir, {
            **_summary(settings, rows, front, best, reported, data, objective, finished),
            **extra, "test_complete": False})

    testset.evaluate_reported(settings, rows, reported, x_test, y_test,
                              progress=progress, checkpoint=checkpoint)
    summary = {**_summary(settings, rows, front, best, reported, data, objective, finished),
               **extra, "test_complete": True}
    write_trials(settings.output_dir, summary)
    plot_capacity(rows, front, os.path.join(settings.output_dir, "capacity.png"),
                  capacity=settings.capacity, objective=objective, data_note=_data_note(data))
    for row in rows:
        if len(row.get("attempts") or ()) > 1:
            progress(f"trial {row['trial_id']} {row['status']} after {len(row['attempts'])} "
                     f"attempts: {describe_attempts(row['attempts'])}")
    if oracle.stop_reason:
        progress(f"the search stopped early: {oracle.stop_reason}")
    if best is not None:
        row = next(r for r in rows if r["trial_id"] == best)
        progress(f"best trial {best}: {row['hyperparameters']} val adversarial accuracy "
                 f"{row['validation']['adversarial_accuracy']:.4f} ({objective['attack']} "
                 f"eps={objective['eps']:g}, gradient {objective['params']['gradient']}), "
                 f"test clean {row['test']['clean_accuracy']:.4f}")
    else:
        progress("no trial completed, so there is no best trial and no model.keras (see the "
                 "trials' status and reason in trials.json; a budget that skips every "
                 "trial can be loosened with --max_binary_macs/--max_packed_bytes)")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "skipped", "failed")}
    progress(f"{len(rows)} trials ({counts['completed']} completed, {counts['skipped']} "
             f"skipped, {counts['failed']} failed); wrote "
             f"{os.path.join(settings.output_dir, 'trials.json')}")
    return summary
