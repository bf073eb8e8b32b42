"""Running a capacity search end to end, and what it writes: trials, Pareto front, plot, model.

``run_search(settings)`` chains ``tfdisc.tuning``: it loads the data, carves
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
  refused, never mixed into the old search (``tfdisc.tuning_state``).
"""
import csv
import dataclasses
import os
import shlex
import shutil
import time
from typing import Optional, Tuple

from tfdisc import attacks, pipeline, results, tuning, tuning_testset
from tfdisc.tuning_state import (OUTPUTS, PROJECT, SEARCH_RECORD, SearchStateError,  # noqa: F401
                                 check_search, remove_outputs, search_identity)
from tfdisc._version import __version__

__all__ = ["CAPACITY_AXES", "OUTPUTS", "REPORTS", "SEARCH_RECORD", "SearchSettings",
           "SearchStateError", "check_search", "collect", "pareto_front", "plot_capacity",
           "remove_outputs", "run_search", "search_identity", "write_trials"]

CAPACITY_AXES = {"packed_bytes": "model size, packed (bytes)", "binary_macs": "binary MACs",
                 "macs": "MACs", "params": "parameters"}
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
    space: tuning.Space
    objective: tuning.Objective
    output_dir: str
    tuner: str = "random"
    max_trials: Optional[int] = None
    hyperband_factor: int = 3
    validation_examples: int = 5000
    max_binary_macs: Optional[int] = None
    max_packed_bytes: Optional[int] = None
    report: str = "pareto"
    capacity: str = "packed_bytes"
    distributed: tuning.Distributed = tuning.Distributed()
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
        if self.tuner not in tuning.TUNERS:
            raise ValueError(f"Unknown tuner {self.tuner!r}; available: "
                             f"{', '.join(tuning.TUNERS)}.")
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


# ----------------------------------------------------------------- trials table

def collect(oracle, project_dir):
    """Every trial of ``oracle`` as a dict (worker records merged), by trial id."""
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        record = tuning.read_trial_record(project_dir, trial_id) or {}
        values = trial.hyperparameters.values
        status = "skipped" if tuning.is_skipped(trial) else str(trial.status).lower()
        if status == "invalid":  # keras-tuner's state of a crashed trial in the retry queue
            status = "waiting_for_retry"
        row = {"trial_id": trial_id, "status": status,
               "hyperparameters": {k: values.get(k) for k in ("precision", "bits", "width",
                                                              "depth")}}
        for key in ("model", "params", "macs", "binary_macs", "packed_bytes", "epochs",
                    "train_seconds", "seed", "hyperband", "reason", "model_file"):
            if key in record:
                row[key] = record[key]
        attempts = getattr(oracle, "attempts", {}).get(trial_id)
        if attempts:  # who ran each attempt and how it ended (a retried trial ran twice)
            row["attempts"] = [{"attempt": i + 1, **a} for i, a in enumerate(attempts)]
        if status == "completed":
            val = dict(record.get("validation") or {})
            val["adversarial_accuracy"] = float(trial.score)
            rows.append({**row, "validation": val})
        else:
            if status != "skipped" and trial.message:
                row["message"] = trial.message.strip().splitlines()[-1][:500]
            rows.append(row)
    return rows


def pareto_front(rows, capacity="packed_bytes"):
    """Trial ids of the completed trials no other trial beats on both axes.

    A trial is dominated if another has at most its capacity and at least its
    validation adversarial accuracy, one of them strictly.
    """
    done = [r for r in rows if r["status"] == "completed" and capacity in r]
    front = []
    for r in done:
        c, a = r[capacity], r["validation"]["adversarial_accuracy"]
        if not any((o[capacity] <= c and o["validation"]["adversarial_accuracy"] >= a)
                   and (o[capacity] < c or o["validation"]["adversarial_accuracy"] > a)
                   for o in done):
            front.append(r["trial_id"])
    return front


def _best(rows):
    done = [r for r in rows if r["status"] == "completed"]
    if not done:
        return None
    return max(done, key=lambda r: (r["validation"]["adversarial_accuracy"],
                                    -r.get("packed_bytes", 0)))["trial_id"]


def _csv_rows(rows, front, objective):
    test_keys = []
    for r in rows:
        test = r.get("test") or {}
        for prefix, block in (("test", test.get("attacks", {})),
                              ("test_transfer", test.get("transfer", {}))):
            for name, entry in block.items():
                for key in entry["adversarial_accuracy"]:
                    if f"{prefix}_{name}_eps{key}" not in test_keys:
                        test_keys.append(f"{prefix}_{name}_eps{key}")
    header = ["trial_id", "status", "precision", "bits", "width", "depth", "params", "macs",
              "binary_macs", "packed_bytes", "epochs", "train_seconds", "val_examples",
              "val_clean_accuracy",
              f"val_adversarial_accuracy_{objective['attack']}_eps{objective['eps_key']}",
              "pareto", "attempts", "workers", "test_examples", "test_clean_accuracy"] + test_keys
    out = [header]
    for r in rows:
        val = r.get("validation") or {}
        test = r.get("test") or {}
        cells = {"trial_id": r["trial_id"], "status": r["status"], **r["hyperparameters"],
                 "params": r.get("params"), "macs": r.get("macs"),
                 "binary_macs": r.get("binary_macs"), "packed_bytes": r.get("packed_bytes"),
                 "epochs": r.get("epochs"), "train_seconds": r.get("train_seconds"),
                 "val_examples": val.get("examples"),
                 "val_clean_accuracy": val.get("clean_accuracy"),
                 header[14]: val.get("adversarial_accuracy"),
                 "pareto": r["trial_id"] in front,
                 "attempts": len(r["attempts"]) if r.get("attempts") else None,
                 "workers": ";".join(a["worker"] for a in r.get("attempts") or ()) or None,
                 "test_examples": test.get("examples"),
                 "test_clean_accuracy": test.get("clean_accuracy")}
        for prefix, block in (("test", test.get("attacks", {})),
                              ("test_transfer", test.get("transfer", {}))):
            for name, entry in block.items():
                for key, value in entry["adversarial_accuracy"].items():
                    cells[f"{prefix}_{name}_eps{key}"] = value
        out.append(["" if cells.get(h) is None else cells.get(h) for h in header])
    return out


def write_trials(output_dir, summary):
    """``trials.json`` and ``trials.csv`` (atomic JSON; CSV one row per trial)."""
    results.write_json(os.path.join(output_dir, "trials.json"), summary)
    tmp = os.path.join(output_dir, f".trials.{os.getpid()}.csv")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(_csv_rows(summary["trials"], summary["pareto_front"],
                                          summary["objective"]))
    os.replace(tmp, os.path.join(output_dir, "trials.csv"))


def plot_capacity(rows, front, path, *, capacity, objective, data_note):
    """PNG of validation adversarial accuracy against capacity, Pareto front marked."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    done = [r for r in rows if r["status"] == "completed"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"full": "o", "binary": "s", "xnor": "^"}
    groups = sorted({(r["hyperparameters"]["precision"], r["hyperparameters"]["bits"])
                     for r in done})
    for precision, bits in groups:
        pts = [r for r in done if (r["hyperparameters"]["precision"],
                                   r["hyperparameters"]["bits"]) == (precision, bits)]
        ax.scatter([max(r[capacity], 1) for r in pts],
                   [r["validation"]["adversarial_accuracy"] for r in pts],
                   marker=markers.get(precision, "o"), label=f"{precision} {bits}b", alpha=0.8)
    pts = sorted((r for r in done if r["trial_id"] in front), key=lambda r: r[capacity])
    if pts:
        ax.step([max(r[capacity], 1) for r in pts],
                [r["validation"]["adversarial_accuracy"] for r in pts], where="post",
                color="k", lw=1, label="Pareto front")
        ax.scatter([max(r[capacity], 1) for r in pts],
                   [r["validation"]["adversarial_accuracy"] for r in pts], s=140,
                   facecolors="none", edgecolors="k")
    ax.set_xscale("log")
    ax.set_xlabel(CAPACITY_AXES[capacity] + " (log scale)")
    ax.set_ylabel("validation adversarial accuracy")
    ax.set_title(f"{objective['attack'].upper()} ε={objective['eps']:g}, gradient "
                 f"{objective['params'].get('gradient', 'straight_through')}; {data_note}",
                 fontsize=8)
    ax.grid(alpha=0.3)
    if done:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
        corrupt one (``tfdisc.tuning_state.check_search``).
      tuning.SearchTimeout: a distributed wait ran out (the chief first writes
        ``trials.json`` with the trials that ended, and the message says how to finish).
      tuning.SearchStopped: the chief stopped the search after too many failed trials
        (it first writes ``trials.json``).
    """
    os.makedirs(settings.output_dir, exist_ok=True)
    check_search(settings, progress=progress)
    dist = settings.distributed
    dist.apply(settings.timeout_seconds)
    oracle = tuning.make_oracle(
        settings.tuner, settings.space, max_trials=settings.max_trials,
        max_epochs=settings.base.epochs, factor=settings.hyperband_factor, seed=settings.base.seed,
        max_retries_per_trial=settings.max_retries_per_trial,
        max_consecutive_failures=settings.max_consecutive_failures,
        lease_seconds=settings.lease_seconds if dist.enabled else None)
    x_train, y_train, x_test, y_test = pipeline.load_data(settings.base)
    x_train, y_train, x_val, y_val = tuning.split_validation(
        x_train, y_train, settings.validation_examples, seed=settings.base.seed)
    data = {"source": results.portable_path(settings.base.data_dir, settings.output_dir)
            or "tensorflow-datasets",
            "train_examples": int(len(y_train)), "validation_examples": int(len(y_val)),
            "validation": "held out of the training set (fixed shuffle), never the test set",
            "test_examples": int(len(y_test))}
    tuner = tuning.CapacityTuner(
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
            tuning.serve(tuner.oracle, f"{dist.oracle_ip}:{dist.oracle_port}",
                         timeout_seconds=settings.timeout_seconds)
        except (tuning.SearchTimeout, tuning.SearchStopped) as e:
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

    tuning_testset.evaluate_reported(settings, rows, reported, x_test, y_test,
                                     progress=progress, checkpoint=checkpoint)
    summary = {**_summary(settings, rows, front, best, reported, data, objective, finished),
               **extra, "test_complete": True}
    write_trials(settings.output_dir, summary)
    plot_capacity(rows, front, os.path.join(settings.output_dir, "capacity.png"),
                  capacity=settings.capacity, objective=objective, data_note=_data_note(data))
    for row in rows:
        if len(row.get("attempts") or ()) > 1:
            progress(f"trial {row['trial_id']} {row['status']} after {len(row['attempts'])} "
                     f"attempts: {tuning.describe_attempts(row['attempts'])}")
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
