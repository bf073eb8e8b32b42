"""The trials of a capacity search: ``CapacityTuner`` builds, trains and measures each model.

keras-tuner 1.4.8 imports Keras 3 when it is installed and rejects tf-keras
models and histories (keras-team/keras-tuner#1039): its ``Tuner.run_trial``
type-checks the built model against Keras 3. ``CapacityTuner`` therefore
overrides ``run_trial``: it builds, trains and evaluates through
``tfdisc.pipeline`` and returns plain floats, so keras-tuner never touches a
model or a history; models are saved by the tuner itself
(``<trial dir>/model.keras``).

Rerunning a search on the same directory resumes it (keras-tuner's reload):
finished trials are not repeated, a trial that was running is retried.
"""
import dataclasses
import os
import threading
import time

import tensorflow as tf

import keras_tuner as kt

from tfdisc import pipeline, results
from tfdisc.tuning.objective import profile
from tfdisc.tuning.oracle import (OBJECTIVE, TRIAL_RECORD, BudgetExceeded, SearchTimeout,
                                  is_skipped, progress_line)

__all__ = ["CapacityTuner"]

_Status = kt.engine.trial.TrialStatus


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
