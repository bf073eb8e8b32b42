"""The oracle side of a capacity search: keras-tuner oracles with leases, retries and records.

``make_oracle`` wraps keras-tuner's random, Bayesian, Hyperband and grid
oracles (``tfdisc.tuning.tuner`` runs the trials). Distributed search uses
keras-tuner's own oracle service, selected by ``KERASTUNER_TUNER_ID``
(``chief`` serves the oracle, any other id is a worker),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT``
(``tfdisc.tuning.distributed``). On top of keras-tuner's service:

* every worker sends a heartbeat during a trial (``get_trial``); the chief
  gives a trial whose worker is silent for ``lease_seconds`` back to the retry
  queue, or marks it failed once its retries are used up;
* a worker that asks for a trial while others still run one waits (IDLE)
  instead of stopping, so it can pick up a retried trial;
* every wait is bounded (``timeout_seconds``); the chief
  (``tfdisc.tuning.distributed.serve``) stops when the search is over or
  nobody has called it for ``timeout_seconds``;
* a reloaded grid search continues where it stopped (keras-tuner 1.4.8's grid
  oracle does not save its place).

Trials skipped for their budget (``BudgetExceeded``) do not count as failures.
"""
import functools
import json
import os
import time

import keras_tuner as kt

from tfdisc import results

__all__ = ["BudgetExceeded", "OBJECTIVE", "SearchStopped", "SearchTimeout", "TRIAL_RECORD",
           "TUNERS", "describe_attempts", "is_skipped", "make_oracle", "progress_line",
           "read_trial_record"]

_Status = kt.engine.trial.TrialStatus

OBJECTIVE = "val_adversarial_accuracy"
TUNERS = ("random", "bayesian", "hyperband", "grid")
TRIAL_RECORD = "tfdisc_trial.json"


class BudgetExceeded(kt.errors.FailedTrialError):
    """A trial's model exceeds the budget: it is not trained and is recorded as skipped."""


class SearchTimeout(RuntimeError):
    """A bounded wait of the distributed search ran out."""


class SearchStopped(RuntimeError):
    """The chief stopped the search: too many consecutive trials failed."""


# ----------------------------------------------------------------- oracle


class _LeasedOracle:
    """Mixin over a keras-tuner Oracle: heartbeats, leases, bounded waits, skip-aware failures.

    Oracle state changes run under keras-tuner's ``synchronized`` lock.
    """

    def _lease_setup(self, lease_seconds, max_consecutive_failures):
        self.lease_seconds = lease_seconds
        self.max_consecutive_failures = max_consecutive_failures
        self._last_seen = {}  # trial id -> time of its worker's last call
        self._tuner_seen = {}  # tuner id -> time of its last call
        self.last_activity = time.monotonic()
        self.stop_reason = None
        self.stop_requested = False
        self.progress = None  # chief: callable(line) for every ended trial
        self.record_dir = None  # where workers write TRIAL_RECORD files
        self.grid_size = None  # trials the space holds (None: unbounded)
        self.attempts = {}  # trial id -> [{"worker", "status"[, "message"]}], saved with the state
        self._reaped = set()

    def _touch(self, trial_id=None, tuner_id=None):
        now = time.monotonic()
        self.last_activity = now
        if trial_id is not None:
            self._last_seen[trial_id] = now
        if tuner_id is not None:
            self._tuner_seen[tuner_id] = now

    @kt.synchronized
    def reap(self):
        """Returns trials whose worker fell silent for ``lease_seconds`` to the retry queue."""
        if not self.lease_seconds:
            return
        now = time.monotonic()
        for tuner_id, trial in list(self.ongoing_trials.items()):
            seen = self._last_seen.setdefault(trial.trial_id, now)
            if now - seen <= self.lease_seconds:
                continue
            del self.ongoing_trials[tuner_id]
            self.tuner_ids.discard(tuner_id)
            trial.status = _Status.INVALID
            trial.message = (f"worker {tuner_id} stopped responding during trial "
                             f"{trial.trial_id} (no heartbeat for {now - seen:.0f} s)")
            self._reaped.add(trial.trial_id)
            print(f"tfdisc.tuning: {trial.message}; returning the trial to the oracle.",
                  flush=True)
            self.end_trial(trial)
        for tuner_id in list(self.tuner_ids):
            if tuner_id not in self.ongoing_trials and \
                    now - self._tuner_seen.get(tuner_id, now) > self.lease_seconds:
                self.tuner_ids.discard(tuner_id)

    @kt.synchronized
    def create_trial(self, tuner_id):
        self._touch(tuner_id=tuner_id)
        self.reap()
        if self.stop_reason or self.stop_requested:
            self.tuner_ids.discard(tuner_id)
            return kt.engine.trial.Trial(self.get_space(), status=_Status.STOPPED)
        others_running = any(t != tuner_id for t in self.ongoing_trials)
        already_running = tuner_id in self.ongoing_trials
        trial = super().create_trial(tuner_id)
        if trial.status == _Status.RUNNING:
            self._touch(trial_id=trial.trial_id)
            if not already_running:  # a new attempt (a first run or a retry)
                self.attempts.setdefault(trial.trial_id, []).append(
                    {"worker": tuner_id, "status": "running"})
                self.save()
        elif trial.status == _Status.STOPPED and others_running:
            # Another worker's trial may still fail and need a retry: wait.
            self.tuner_ids.add(tuner_id)
            return kt.engine.trial.Trial(self.get_space(), status=_Status.IDLE)
        return trial

    @kt.synchronized
    def get_trial(self, trial_id):
        """Also the workers' heartbeat: renews the lease of an ongoing trial."""
        self._touch(trial_id=trial_id)
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                self._tuner_seen[tuner_id] = self.last_activity
        return super().get_trial(trial_id)

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self._touch(trial_id=trial_id)
        return super().update_trial(trial_id, metrics, step=step)

    @kt.synchronized
    def end_trial(self, trial):
        self._touch()
        record = read_trial_record(self.record_dir, trial.trial_id) if self.record_dir else None
        if trial.status == _Status.FAILED and not trial.message and record and \
                record.get("status") == "skipped":
            # keras-tuner's gRPC drops a worker's trial message: the worker's record says
            # why, so a skipped trial is not taken for a failure.
            trial.message = f"{BudgetExceeded.__name__}: skipped, {record.get('reason', '')}"
        self._end_attempt(trial)
        super().end_trial(trial)
        last = self.attempts.get(trial.trial_id, [{}])[-1]
        if last.get("status") == "completed" and \
                self.trials[trial.trial_id].status != _Status.COMPLETED:  # a NaN objective
            last.update(status="failed", message=f"the objective {OBJECTIVE} is NaN")
            self.save()
        self._last_seen.pop(trial.trial_id, None)
        if self.progress:
            self.progress(progress_line(self.trials[trial.trial_id], record,
                                        self.attempts.get(trial.trial_id)))
        failures = 0
        for trial_id in self.end_order:
            t = self.trials[trial_id]
            if t.status == _Status.FAILED and not is_skipped(t):
                failures += 1
            elif not is_skipped(t):
                failures = 0
        if self.max_consecutive_failures and failures >= self.max_consecutive_failures:
            self.stop_reason = (f"{failures} consecutive trials failed; stopping the search. "
                                f"Last error:\n{trial.message or ''}")

    def _end_attempt(self, trial):
        """Records how the running attempt of ``trial`` ended (before keras-tuner saves)."""
        running = [a for a in self.attempts.get(trial.trial_id, ()) if a["status"] == "running"]
        if not running:
            return
        attempt = running[-1]
        if trial.status == _Status.COMPLETED:
            attempt["status"] = "completed"
        elif is_skipped(trial):
            attempt["status"] = "skipped"
        else:
            attempt["status"] = "lost" if trial.trial_id in self._reaped else "failed"
            lines = (trial.message or "").strip().splitlines()
            attempt["message"] = lines[-1][:300] if lines else (
                f"no message reached the oracle; see the log of {attempt['worker']}")
        self._reaped.discard(trial.trial_id)

    def get_state(self):
        return {**super().get_state(), "tfdisc_attempts": self.attempts}

    # keras-tuner writes its state files in place: a process killed while writing leaves a
    # truncated oracle.json or trial.json that no rerun can read. Write them atomically.
    def save(self):
        results.write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        results.write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"),
                           trial.get_state())

    def set_state(self, state):
        super().set_state(state)
        self.attempts = {k: [dict(a) for a in v]
                         for k, v in state.get("tfdisc_attempts", {}).items()}

    def reload(self):
        super().reload()  # keras-tuner sends the trials that were running to the retry queue
        for attempts in self.attempts.values():
            if attempts and attempts[-1]["status"] == "running":
                attempts[-1].update(status="interrupted", message="the search stopped during "
                                    "this attempt; the trial is retried")

    def finished(self):
        """The chief may stop serving: trials stopped, none running or waiting for a retry."""
        return not self.ongoing_trials and not self._retry_queue and not self.tuner_ids

    def unfinished(self):
        """Trials not ended yet: ``{"running", "retry", "unstarted"}`` counts.

        ``unstarted`` is None when the oracle cannot know it (Hyperband).
        """
        bounds = [b for b in (self.max_trials, self.grid_size) if b]
        unstarted = None
        if bounds and not isinstance(self, kt.oracles.HyperbandOracle):
            unstarted = max(min(bounds) - len(self.trials), 0)
        return {"running": len(self.ongoing_trials), "retry": len(self._retry_queue),
                "unstarted": unstarted}

    def describe_unfinished(self):
        """``unfinished()`` in words."""
        counts = self.unfinished()
        unstarted = ("an unknown number" if counts["unstarted"] is None
                     else str(counts["unstarted"]))
        return (f"{counts['running']} trial(s) running, {counts['retry']} waiting for a retry, "
                f"{unstarted} not started yet")


class _ResumableGrid:
    """keras-tuner 1.4.8's GridSearchOracle does not save where it is in the grid.

    Its ``_ordered_ids``/``_populate_next`` are not part of its state, so a
    reloaded grid search stops at once. They follow from the trials (the grid
    order of their values), so they are rebuilt after a reload.
    """

    def reload(self):
        super().reload()
        from keras_tuner.src.tuners import gridsearch  # pylint: disable=import-outside-toplevel

        def cmp(a, b):
            return self._compare(self.trials[a].hyperparameters.values,
                                 self.trials[b].hyperparameters.values)

        order = sorted(self.trials, key=functools.cmp_to_key(cmp))
        self._ordered_ids = gridsearch.LinkedList()
        for trial_id in order:
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(order)


def is_skipped(trial):
    """True for a trial skipped because its model exceeded the budget."""
    return trial.status == _Status.FAILED and BudgetExceeded.__name__ in (trial.message or "")


_ORACLES = {
    "random": kt.oracles.RandomSearchOracle,
    "bayesian": kt.oracles.BayesianOptimizationOracle,
    "hyperband": kt.oracles.HyperbandOracle,
    "grid": kt.oracles.GridSearchOracle,
}


def make_oracle(tuner, space, *, max_trials=None, max_epochs=None, factor=3, seed=0,
                max_retries_per_trial=1, max_consecutive_failures=3, lease_seconds=None):
    """A keras-tuner oracle (random, bayesian, hyperband or grid) over ``space``.

    ``max_trials`` bounds random and Bayesian searches (grid: optional, the grid
    is exhausted otherwise); Hyperband's budget is ``max_epochs`` and ``factor``.
    """
    if tuner not in _ORACLES:
        raise ValueError(f"Unknown tuner {tuner!r}; available: {', '.join(TUNERS)}.")
    if tuner in ("random", "bayesian") and not max_trials:
        raise ValueError(f"The {tuner} tuner needs `max_trials` ≥ 1.")
    if tuner == "hyperband" and (not max_epochs or max_epochs < 2):
        raise ValueError("The hyperband tuner needs `epochs` (its max_epochs) ≥ 2.")
    base = _ORACLES[tuner]
    mixins = (_LeasedOracle, _ResumableGrid) if tuner == "grid" else (_LeasedOracle,)
    cls = type(f"Leased{base.__name__}", mixins + (base,), {})
    kwargs = dict(objective=kt.Objective(OBJECTIVE, "max"), hyperparameters=space.hyperparameters(),
                  allow_new_entries=False, tune_new_entries=False, seed=seed or None,
                  max_retries_per_trial=max_retries_per_trial,
                  max_consecutive_failed_trials=None)
    if tuner == "hyperband":
        kwargs.update(max_epochs=max_epochs, factor=factor)
    else:
        kwargs.update(max_trials=max_trials)
    oracle = cls(**kwargs)
    oracle._lease_setup(lease_seconds, max_consecutive_failures)  # pylint: disable=protected-access
    oracle.grid_size = space.grid_size()
    return oracle


def describe_attempts(attempts):
    """``"worker0 lost (…); worker1 completed"``: who ran each attempt of a trial, and how."""
    return "; ".join(f"{a['worker']} {a['status']}" + (f" ({a['message']})" if a.get(
        "message") else "") for a in attempts or ())


def progress_line(trial, record, attempts=None):
    """One line per trial: hyperparameters, capacity, clean and adversarial accuracy.

    ``attempts`` (the oracle's record of a trial's attempts): shown when the
    trial ran more than once, or on a named worker.
    """
    values = trial.hyperparameters.values
    status = "skipped" if is_skipped(trial) else str(trial.status).lower()
    hp = " ".join(f"{k}={values[k]}" for k in ("precision", "bits", "width", "depth")
                  if k in values)
    if "tuner/epochs" in values:
        hp += f" epochs={values['tuner/epochs']}"
    line = f"trial {trial.trial_id} {status:9s} {hp}"
    if record:
        line += (f" | params {record['params']} binary_MACs {record['binary_macs']} "
                 f"packed {record['packed_bytes'] / 1024:.1f} KiB")
        val = record.get("validation")
        if val:
            line += (f" | val clean {val['clean_accuracy']:.4f} adv "
                     f"{val['attack']['name']} eps={val['eps']:g} "
                     f"grad={val['attack']['gradient']} {val['adversarial_accuracy']:.4f} "
                     f"| {record['train_seconds']:.1f} s train")
        elif record.get("reason"):
            line += f" | {record['reason']}"
    elif trial.message and status != "completed":
        line += " | " + trial.message.strip().splitlines()[-1][:200]
    if attempts and len(attempts) > 1:
        line += f" | {len(attempts)} attempts: {describe_attempts(attempts)}"
    elif attempts and attempts[0]["worker"] != "tuner0":
        line += f" | on {attempts[0]['worker']}"
    return line


def read_trial_record(tuner_dir, trial_id):
    """The worker-written record of a trial, or None."""
    path = os.path.join(tuner_dir, f"trial_{trial_id}", TRIAL_RECORD)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
