"""The oracle side of a capacity search: keras-tuner oracles with leases, and the chief's service.

``make_oracle`` wraps keras-tuner's random, Bayesian, Hyperband and grid
oracles (``tfdisc.tuning`` runs the trials). Distributed search uses
keras-tuner's own oracle service, selected by ``KERASTUNER_TUNER_ID``
(``chief`` serves the oracle, any other id is a worker),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` (``Distributed.apply``
sets them). On top of keras-tuner's service:

* every worker sends a heartbeat during a trial (``get_trial``); the chief
  gives a trial whose worker is silent for ``lease_seconds`` back to the retry
  queue, or marks it failed once its retries are used up;
* a worker that asks for a trial while others still run one waits (IDLE)
  instead of stopping, so it can pick up a retried trial;
* every wait is bounded (``timeout_seconds``); the chief (``serve``) stops
  when the search is over or nobody has called it for ``timeout_seconds``;
* a reloaded grid search continues where it stopped (keras-tuner 1.4.8's grid
  oracle does not save its place).

Trials skipped for their budget (``BudgetExceeded``) do not count as failures.
"""
import dataclasses
import functools
import json
import os
import time
from concurrent import futures
from typing import Optional

import keras_tuner as kt

__all__ = ["BudgetExceeded", "Distributed", "OBJECTIVE", "SearchTimeout", "TRIAL_RECORD",
           "TUNERS", "is_skipped", "make_oracle", "progress_line", "read_trial_record", "serve"]

_Status = kt.engine.trial.TrialStatus

OBJECTIVE = "val_adversarial_accuracy"
TUNERS = ("random", "bayesian", "hyperband", "grid")
TRIAL_RECORD = "tfdisc_trial.json"


class BudgetExceeded(kt.errors.FailedTrialError):
    """A trial's model exceeds the budget: it is not trained and is recorded as skipped."""


class SearchTimeout(RuntimeError):
    """A bounded wait of the distributed search ran out."""



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
        trial = super().create_trial(tuner_id)
        if trial.status == _Status.RUNNING:
            self._touch(trial_id=trial.trial_id)
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
        super().end_trial(trial)
        self._last_seen.pop(trial.trial_id, None)
        if self.progress:
            self.progress(progress_line(self.trials[trial.trial_id], read_trial_record(
                self.record_dir, trial.trial_id) if self.record_dir else None))
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

    def finished(self):
        """The chief may stop serving: trials stopped, none running or waiting for a retry."""
        return not self.ongoing_trials and not self._retry_queue and not self.tuner_ids


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
    return oracle



def progress_line(trial, record):
    """One line per trial: hyperparameters, capacity, clean and adversarial accuracy."""
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
    return line


# ----------------------------------------------------------------- distributed

@dataclasses.dataclass(frozen=True)
class Distributed:
    """Chief/worker roles over keras-tuner's oracle service (its environment variables)."""

    tuner_id: Optional[str] = None
    oracle_ip: Optional[str] = None
    oracle_port: Optional[int] = None

    ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")

    @classmethod
    def from_env(cls, tuner_id=None, oracle_ip=None, oracle_port=None):
        """Arguments override the environment; all three or none must be set."""
        env = os.environ
        d = cls(tuner_id or env.get(cls.ENV[0]), oracle_ip or env.get(cls.ENV[1]),
                oracle_port or (int(env[cls.ENV[2]]) if env.get(cls.ENV[2]) else None))
        given = [v is not None for v in (d.tuner_id, d.oracle_ip, d.oracle_port)]
        if any(given) and not all(given):
            raise ValueError("Distributed search needs the tuner id, the oracle IP and the "
                             "oracle port together (--tuner_id/--oracle_ip/--oracle_port or "
                             f"{', '.join(cls.ENV)}); got tuner id {d.tuner_id!r}, IP "
                             f"{d.oracle_ip!r}, port {d.oracle_port!r}.")
        if d.oracle_port is not None and not 0 < d.oracle_port < 65536:
            raise ValueError(f"The oracle port must be in 1..65535, got {d.oracle_port}.")
        return d

    @property
    def enabled(self):
        return self.tuner_id is not None

    @property
    def is_chief(self):
        return self.enabled and "chief" in self.tuner_id

    def apply(self, timeout_seconds):
        """Sets keras-tuner's environment (and its client timeout) for this process."""
        if not self.enabled:
            for name in self.ENV:
                os.environ.pop(name, None)
            return
        os.environ.update({self.ENV[0]: self.tuner_id, self.ENV[1]: self.oracle_ip,
                           self.ENV[2]: str(self.oracle_port)})
        # pylint: disable-next=import-outside-toplevel
        from keras_tuner.src.distribute import oracle_client

        oracle_client.TIMEOUT = timeout_seconds  # bounded gRPC calls (keras-tuner: 1 hour)


def serve(oracle, address, *, timeout_seconds=600.0, poll_seconds=0.5):
    """Serves ``oracle`` to the workers (keras-tuner's servicer) until the search is over.

    Returns when every trial has ended and every worker has been told to stop
    (or has been silent past the oracle's lease).

    Raises:
      SearchTimeout: nobody called the oracle for ``timeout_seconds``.
      RuntimeError: the oracle stopped the search (too many failed trials).
    """
    import grpc  # pylint: disable=import-outside-toplevel
    from keras_tuner.src import protos  # pylint: disable=import-outside-toplevel
    from keras_tuner.src.distribute import oracle_chief  # pylint: disable=import-outside-toplevel

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if not server.add_insecure_port(address):
        raise OSError(f"The oracle cannot listen on {address}.")
    server.start()
    try:
        while True:
            time.sleep(poll_seconds)
            oracle.reap()
            if servicer.stop_triggered and oracle.finished():
                break
            idle = time.monotonic() - oracle.last_activity
            if idle > timeout_seconds:
                raise SearchTimeout(f"No worker called the oracle for {idle:.0f} s; "
                                    f"{len(oracle.ongoing_trials)} trial(s) unfinished.")
    finally:
        server.stop(grace=2)
    if oracle.stop_reason:
        raise RuntimeError(oracle.stop_reason)


def read_trial_record(tuner_dir, trial_id):
    """The worker-written record of a trial, or None."""
    path = os.path.join(tuner_dir, f"trial_{trial_id}", TRIAL_RECORD)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
