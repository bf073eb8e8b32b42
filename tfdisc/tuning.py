"""Capacity search with keras-tuner: width, depth, input bits and precision against robustness.

The search space (``Space``) covers the capacity of any zoo model that takes
``width``/``depth`` (``tfdisc.models``), optionally its input bit depth and
parameter precision. The objective is **adversarial accuracy** (PGD by
default, FGSM selectable) with the gradient straight through the input
quantizer, at one ε, maximized, measured on a validation split carved from
the *training* set (``split_validation``); the test set is only used for the
trials reported at the end (``tfdisc.tuning_results``).

keras-tuner 1.4.8 imports Keras 3 when it is installed and rejects tf-keras
models and histories (keras-team/keras-tuner#1039): its ``Tuner.run_trial``
type-checks the built model against Keras 3. ``CapacityTuner`` therefore
overrides ``run_trial``: it builds, trains and evaluates through
``tfdisc.pipeline`` and returns plain floats, so keras-tuner never touches a
model or a history; models are saved by the tuner itself
(``<trial dir>/model.keras``).

Distributed search uses keras-tuner's own oracle service. The environment
variables ``KERASTUNER_TUNER_ID`` (``chief`` for the oracle, anything else for
a worker), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` select it
(``Distributed.apply`` sets them). On top of keras-tuner's service:

* every worker sends a heartbeat during a trial; the chief gives a trial whose
  worker is silent for ``lease_seconds`` back to the retry queue (or marks it
  failed once its retries are used up);
* a worker that asks for a trial while others still run one waits (IDLE)
  instead of stopping, so it can pick up a retried trial;
* every wait is bounded (``timeout_seconds``) and the chief stops serving when
  the search is over or nobody has called it for ``timeout_seconds``.

Rerunning a search on the same directory resumes it (keras-tuner's reload):
finished trials are not repeated, a trial that was running is retried.
"""
import dataclasses
import functools
import json
import os
import re
import threading
import time
from concurrent import futures
from typing import Optional, Tuple

import larq as lq
import numpy as np
import tensorflow as tf

import keras_tuner as kt

from tfdisc import attacks as attacks_lib
from tfdisc import data as data_lib
from tfdisc import evaluate, models, pipeline, results

__all__ = ["BudgetExceeded", "CapacityTuner", "Distributed", "IntRange", "OBJECTIVE",
           "Objective", "SearchTimeout", "Space", "TUNERS", "TRIAL_RECORD", "make_oracle",
           "parse_int_space", "profile", "serve", "split_validation"]

OBJECTIVE = "val_adversarial_accuracy"
TUNERS = ("random", "bayesian", "hyperband", "grid")
TRIAL_RECORD = "tfdisc_trial.json"
_Status = kt.engine.trial.TrialStatus


class BudgetExceeded(kt.errors.FailedTrialError):
    """A trial's model exceeds the budget: it is not trained and is recorded as skipped."""


class SearchTimeout(RuntimeError):
    """A bounded wait of the distributed search ran out."""


# ----------------------------------------------------------------- search space

@dataclasses.dataclass(frozen=True)
class IntRange:
    """An integer range ``low..high`` (step ``step``, multiplied if ``log``)."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def values(self):
        out, v = [], self.low
        while v <= self.high:
            out.append(v)
            v = v * self.step if self.log else v + self.step
        return out


_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*(?:([/*])\s*(\d+))?\s*$")


def parse_int_space(text, name):
    """``"150,300,600"`` → (150, 300, 600); ``"64..1024*2"`` (log, ×2) or ``"100..600/100"``
    → ``IntRange``; ``"600"`` → (600,).

    Raises:
      ValueError: anything else, values < 1, an empty range or a log step < 2.
    """
    text = str(text).strip()
    match = _RANGE.match(text)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        log = match.group(3) == "*"
        step = int(match.group(4) or (2 if log else 1))
        if low < 1 or high < low:
            raise ValueError(f"`{name}` range {text!r} must have 1 ≤ low ≤ high.")
        if (log and step < 2) or step < 1:
            raise ValueError(f"`{name}` range {text!r}: the step must be ≥ 1 (≥ 2 for a "
                             "multiplicative step '*').")
        return IntRange(low, high, step, log)
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"`{name}` must be a comma-separated list of positive integers "
                         f"(e.g. 150,300,600) or a range LOW..HIGH, LOW..HIGH/STEP or "
                         f"LOW..HIGH*FACTOR, got {text!r}.") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"`{name}` values must be positive integers, got {text!r}.")
    return tuple(dict.fromkeys(values))


@dataclasses.dataclass(frozen=True)
class Space:
    """The capacity search space: each entry is a tuple of choices or an ``IntRange``."""

    width: object
    depth: object = (4,)
    bits: Tuple[int, ...] = (8,)
    precision: Tuple[str, ...] = ("full",)

    def __post_init__(self):
        for name in ("width", "depth", "bits"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, value := parse_int_space(value, name))
            if not isinstance(value, IntRange):
                object.__setattr__(self, name, value := tuple(value))
                if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                    for v in value):
                    raise ValueError(f"`{name}` must be positive integers, got {value!r}.")
        bits = self.bits.values() if isinstance(self.bits, IntRange) else self.bits
        if any(b > 8 for b in bits):
            raise ValueError(f"`bits` must lie in 1..8, got {self.bits!r}.")
        precision = (self.precision,) if isinstance(self.precision, str) else tuple(
            self.precision)
        if not precision or any(p not in models.PRECISIONS for p in precision):
            raise ValueError(f"`precision` must be chosen from {models.PRECISIONS}, got "
                             f"{self.precision!r}.")
        object.__setattr__(self, "precision", tuple(dict.fromkeys(precision)))

    def hyperparameters(self):
        """The space as ``keras_tuner.HyperParameters`` (fixed values for single choices)."""
        hp = kt.HyperParameters()
        for name in ("width", "depth", "bits", "precision"):
            value = getattr(self, name)
            if isinstance(value, IntRange):
                hp.Int(name, value.low, value.high, step=value.step,
                       sampling="log" if value.log else "linear")
            elif len(value) == 1:
                hp.Fixed(name, value[0])
            else:
                hp.Choice(name, list(value), ordered=name != "precision")
        return hp

    def describe(self):
        def one(v):
            return dataclasses.asdict(v) if isinstance(v, IntRange) else list(v)
        return {name: one(getattr(self, name)) for name in ("width", "depth", "bits",
                                                             "precision")}


# ----------------------------------------------------------------- measuring a model

def profile(model):
    """Capacity of ``model`` (larq's ``ModelProfile``).

    Returns:
      dict: ``params`` (all weights), ``macs`` (all multiply-accumulates of one
      example), ``binary_macs`` (the 1-bit ones), ``packed_bytes`` (weights at
      their own bit width: 1 bit for binarized kernels, 32 otherwise).
    """
    prof = lq.models.ModelProfile(model)
    return {"params": int(model.count_params()), "macs": int(prof.op_count("mac")),
            "binary_macs": int(prof.op_count("mac", 1)),
            "packed_bytes": int(np.ceil(prof.memory / 8))}


def split_validation(x, y, examples, seed=0):
    """``(x_train, y_train, x_val, y_val)``: ``examples`` held out of the training arrays.

    The split is a fixed shuffle (``seed``), the same for every trial and
    process, and never touches the test set.

    Raises:
      ValueError: ``examples`` not in ``1 .. len(y) - 1``.
    """
    if isinstance(examples, bool) or not isinstance(examples, int) or not \
            0 < examples < len(y):
        raise ValueError(f"`validation_examples` must be between 1 and {len(y) - 1} (the "
                         f"training set has {len(y)} examples), got {examples!r}.")
    order = np.random.RandomState(seed).permutation(len(y))
    val, train = order[:examples], order[examples:]
    return x[train], y[train], x[val], y[val]


@dataclasses.dataclass(frozen=True)
class Objective:
    """Adversarial accuracy under ``attack`` at ``eps`` (gradient through the quantizer)."""

    attack: str = "pgd"
    eps: float = 0.1
    params: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 500

    def __post_init__(self):
        attack = attacks_lib.get(self.attack)
        attacks_lib.check_eps(self.eps, "objective_eps")
        if not self.eps > 0:
            raise ValueError(f"`objective_eps` must be > 0, got {self.eps!r}.")
        attack.check_params(**self.params)

    def measure(self, model, x, y):
        """``(clean accuracy, adversarial accuracy, attack record)`` on arrays ``x, y``."""
        ds = data_lib.from_arrays(x, y, batch_size=self.batch_size)
        sweep = evaluate.sweep(model, ds, [self.eps], self.attack, **self.params)
        record = evaluate.attack_record(self.attack, model, **self.params)
        return sweep["top1"][0.0], sweep["top1"][self.eps], record

    def describe(self, model=None):
        out = {"metric": OBJECTIVE, "direction": "max", "attack": self.attack,
               "eps": self.eps, "eps_key": results.epsilon_key(self.eps)}
        out["params"] = (evaluate.attack_record(self.attack, model, **self.params)
                         if model is not None else dict(self.params))
        return out


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


# ----------------------------------------------------------------- tuner

class _StopAfter(Exception):
    """This process ran its ``stop_after`` trials."""


class CapacityTuner(kt.Tuner):
    """Runs trials through ``tfdisc.pipeline`` and reports plain floats to keras-tuner.

    Args:
      oracle: from ``make_oracle``.
      base: a ``tfdisc.pipeline.Config``: dataset, model family, schedule;
        width, depth, bits and precision come from each trial.
      data: ``(x_train, y_train, x_val, y_val)`` arrays.
      objective: an ``Objective``.
      max_binary_macs, max_packed_bytes: budget; bigger models are skipped.
      log_dir: TensorBoard root (one sub-directory per trial).
      stop_after: stop this process after that many trials (resume later).
      heartbeat_seconds, timeout_seconds, poll_seconds: distributed waits.
      **kwargs: ``keras_tuner.Tuner`` arguments (directory, project_name, ...).
    """

    def __init__(self, oracle, *, base, data, objective, max_binary_macs=None,
                 max_packed_bytes=None, log_dir=None, stop_after=None, heartbeat_seconds=5.0,
                 timeout_seconds=600.0, poll_seconds=1.0, progress=print, **kwargs):
        super().__init__(oracle, hypermodel=None, **kwargs)
        self.base, self.data, self.objective = base, data, objective
        self.max_binary_macs, self.max_packed_bytes = max_binary_macs, max_packed_bytes
        self.log_dir, self.stop_after, self.progress = log_dir, stop_after, progress
        self.heartbeat_seconds, self.timeout_seconds = heartbeat_seconds, timeout_seconds
        self.poll_seconds = poll_seconds
        self.trials_run = 0
        self._waiting_since = None
        self._heartbeat = None
        self._records = {}

    # -- one trial
    def trial_config(self, trial):
        """The ``pipeline.Config`` of a trial (Hyperband: the epochs of this round)."""
        values = trial.hyperparameters.values
        epochs = values.get("tuner/epochs", self.base.epochs) - values.get(
            "tuner/initial_epoch", 0)
        return dataclasses.replace(
            self.base, width=int(values["width"]), depth=int(values["depth"]),
            bits=int(values["bits"]), precision=str(values["precision"]), epochs=max(epochs, 1),
            seed=self.base.seed + int(trial.trial_id), verbose=0)

    def model_path(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), "model.keras")

    def run_trial(self, trial, *args, **kwargs):
        cfg = self.trial_config(trial)
        values = trial.hyperparameters.values
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(cfg.seed)
        model = pipeline.build_model(cfg)
        record = {"trial_id": trial.trial_id, "model": model.name,
                  "hyperparameters": {k: values[k] for k in ("width", "depth", "bits",
                                                             "precision")},
                  **profile(model)}
        if "tuner/epochs" in values:
            record["hyperband"] = {k.split("/")[1]: v for k, v in values.items()
                                   if k.startswith("tuner/")}
        over = []
        if self.max_binary_macs is not None and record["binary_macs"] > self.max_binary_macs:
            over.append(f"{record['binary_macs']} binary MACs > {self.max_binary_macs}")
        if self.max_packed_bytes is not None and record["packed_bytes"] > self.max_packed_bytes:
            over.append(f"{record['packed_bytes']} packed bytes > {self.max_packed_bytes}")
        if over:
            record.update(status="skipped", reason="over budget: " + ", ".join(over))
            self._write_record(trial.trial_id, record)
            raise BudgetExceeded(f"skipped, {record['reason']}")
        previous = values.get("tuner/trial_id")
        if previous:
            model.set_weights(pipeline.load_model(self.model_path(previous),
                                                  "hyperband parent").get_weights())
        x_train, y_train, x_val, y_val = self.data
        callbacks = []
        if self.log_dir:
            callbacks.append(tf.keras.callbacks.TensorBoard(
                log_dir=os.path.join(self.log_dir, f"trial_{trial.trial_id}")))
        train_seconds, _ = pipeline.train(model, cfg, x_train, y_train, callbacks)
        clean, adv, attack = self.objective.measure(model, x_val, y_val)
        pipeline.save_model(model, self.get_trial_dir(trial.trial_id))
        record.update(
            status="completed", epochs=cfg.epochs + values.get("tuner/initial_epoch", 0),
            train_seconds=round(train_seconds, 2), seed=cfg.seed,
            validation={"examples": int(len(y_val)), "clean_accuracy": clean,
                        "adversarial_accuracy": adv, "attack": attack,
                        "eps": self.objective.eps},
            model_file=os.path.relpath(self.model_path(trial.trial_id), self.project_dir))
        self._write_record(trial.trial_id, record)
        if self.log_dir:
            self._log_hparams(trial, record)
        return {OBJECTIVE: adv, "val_clean_accuracy": clean}

    def _write_record(self, trial_id, record):
        self._records[trial_id] = record
        results.write_json(os.path.join(self.get_trial_dir(trial_id), TRIAL_RECORD), record)

    def _log_hparams(self, trial, record):
        from tensorboard.plugins.hparams import api as hparams_api  # pylint: disable=import-outside-toplevel

        writer = tf.summary.create_file_writer(
            os.path.join(self.log_dir, f"trial_{trial.trial_id}", "hparams"))
        with writer.as_default():
            hparams_api.hparams(dict(record["hyperparameters"]), trial_id=trial.trial_id)
            for key in ("params", "binary_macs", "packed_bytes"):
                tf.summary.scalar(key, record[key], step=0)
            tf.summary.scalar("val_clean_accuracy", record["validation"]["clean_accuracy"],
                              step=0)
            tf.summary.scalar(OBJECTIVE, record["validation"]["adversarial_accuracy"], step=0)
        writer.close()

    # -- keras-tuner hooks
    def load_model(self, trial):
        return pipeline.load_model(self.model_path(trial.trial_id))

    def save_model(self, trial_id, model, step=0):
        pipeline.save_model(model, self.get_trial_dir(trial_id))

    def pre_create_trial(self):
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
            return
        if now - self._waiting_since > self.timeout_seconds:
            raise SearchTimeout(f"{self.tuner_id}: the oracle had no trial for this worker "
                                f"for {self.timeout_seconds:.0f} s; giving up.")
        time.sleep(self.poll_seconds)

    def on_trial_begin(self, trial):
        self._waiting_since = None
        super().on_trial_begin(trial)
        if self._is_worker():
            stop = threading.Event()
            thread = threading.Thread(target=self._beat, args=(trial.trial_id, stop),
                                      daemon=True, name=f"heartbeat-{trial.trial_id}")
            thread.start()
            self._heartbeat = (stop, thread)

    def _beat(self, trial_id, stop):
        while not stop.wait(self.heartbeat_seconds):
            try:
                self.oracle.get_trial(trial_id)
            except Exception as e:  # pylint: disable=broad-except  # grpc errors: chief gone
                print(f"tfdisc.tuning: heartbeat of trial {trial_id} failed: "
                      f"{type(e).__name__}", flush=True)

    def on_trial_end(self, trial):
        if self._heartbeat:
            self._heartbeat[0].set()
            self._heartbeat = None
        super().on_trial_end(trial)
        self.trials_run += 1
        self.progress(progress_line(trial, self._records.pop(trial.trial_id, None)))
        if trial.status != _Status.COMPLETED and not is_skipped(trial) and trial.message:
            self.progress(trial.message.rstrip())
        if self.stop_after and self.trials_run >= self.stop_after:
            raise _StopAfter()

    def search(self, *args, **kwargs):
        """Runs trials until the oracle stops (or ``stop_after``); returns the trials run."""
        from keras_tuner.src import config as kt_config  # pylint: disable=import-outside-toplevel

        debug, kt_config.DEBUG = kt_config.DEBUG, False  # our progress line replaces it
        try:
            super().search(*args, verbose=0, **kwargs)
        except _StopAfter:
            pass
        finally:
            kt_config.DEBUG = debug
        return self.trials_run


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
        from keras_tuner.src.distribute import oracle_client  # pylint: disable=import-outside-toplevel

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
