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

Distributed search (chief/workers over keras-tuner's own oracle service) is
``tfdisc.tuning_oracle``; its names are re-exported here.

Rerunning a search on the same directory resumes it (keras-tuner's reload):
finished trials are not repeated, a trial that was running is retried.
"""
import dataclasses
import os
import re
import threading
import time
from typing import Tuple

import larq as lq
import numpy as np
import tensorflow as tf

import keras_tuner as kt

from tfdisc import attacks as attacks_lib
from tfdisc import data as data_lib
from tfdisc import evaluate, models, pipeline, results
from tfdisc.tuning_oracle import (OBJECTIVE, TRIAL_RECORD, TUNERS, BudgetExceeded,  # noqa: F401
                                  Distributed, SearchStopped, SearchTimeout,
                                  describe_attempts, is_skipped, make_oracle, progress_line,
                                  read_trial_record, serve)

__all__ = ["BudgetExceeded", "CapacityTuner", "Distributed", "IntRange", "OBJECTIVE",
           "Objective", "SearchStopped", "SearchTimeout", "Space", "TUNERS", "TRIAL_RECORD",
           "describe_attempts", "is_skipped", "make_oracle", "parse_int_space", "profile",
           "progress_line", "read_trial_record", "serve", "split_validation"]

_Status = kt.engine.trial.TrialStatus



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

    def grid_size(self):
        """The number of distinct trials (hyperparameter combinations) the space holds."""
        return int(np.prod([len(v.values() if isinstance(v, IntRange) else v) for v in (
            self.width, self.depth, self.bits, self.precision)]))

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
        self._reloaded = False
        super().__init__(oracle, hypermodel=None, **kwargs)
        # keras-tuner reloads only if this process's own tuner file exists: a chief resuming
        # a local search (or the reverse) would start a fresh oracle over the old trials.
        if not self._reloaded and not self._is_worker() and os.path.exists(
                os.path.join(self.project_dir, "oracle.json")):
            self.oracle.reload()
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
        # pylint: disable-next=import-outside-toplevel
        from tensorboard.plugins.hparams import api as hparams_api

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

    def reload(self):
        super().reload()
        self._reloaded = True

    def save(self):
        """keras-tuner's save, atomically (a kill while writing leaves the old file)."""
        if not self._is_worker():
            self.oracle.save()
        results.write_json(self._get_tuner_fname(), self.get_state())

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
        self.progress(progress_line(trial, self._records.pop(trial.trial_id, None),
                                    getattr(self.oracle, "attempts", {}).get(trial.trial_id)))
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
