"""Running past one process: tf.distribute strategies, the chief's role, and resumable training.

TensorFlow's own engine does the work; this module only chooses and checks it:

* ``make_strategy("none" | "mirrored" | "multi_worker")``: no strategy, a
  ``MirroredStrategy`` over the local devices, or a
  ``MultiWorkerMirroredStrategy`` whose cluster comes from ``TF_CONFIG`` (as
  TensorFlow documents it) with ring collectives, which work on CPU. A worker
  that cannot form the cluster is ended after ``connect_timeout`` seconds
  with a message naming the unreachable peers, instead of hanging (a watchdog
  process does it: the strategy's constructor blocks without a time limit),
  by SIGALRM: exit status ``CONNECT_TIMEOUT_EXIT`` (142 = 128 + SIGALRM, the
  "Alarm clock" of a shell; not 137, which reads as an out-of-memory kill);
  collectives get the same timeout afterwards.
* ``is_chief(kind)`` and ``worker_dir(output_dir, kind)``: under
  ``multi_worker`` only the chief writes results, the model and TensorBoard
  logs; the other workers write to scratch directories, as TensorFlow's
  multi-worker guide prescribes. Any other kind runs alone: a ``TF_CONFIG``
  left in the environment is ignored (with a warning), and the process writes
  to ``output_dir`` itself.
* ``backup_callbacks(backup_dir)``: Keras ``BackupAndRestore`` (model weights,
  optimizer state and so the learning-rate schedule position, epoch) and a
  ``ResumeLog`` that records whether, and from which epoch, a run resumed.
"""
import json
import os
import signal
import subprocess
import sys

from absl import logging
import tensorflow as tf

__all__ = ["CONNECT_TIMEOUT_EXIT", "DistributionError", "KINDS", "ResumeLog", "backup_callbacks",
           "cluster", "is_chief", "make_strategy", "num_workers", "worker_dir"]

KINDS = ("none", "mirrored", "multi_worker")

# Exit status of a worker that could not form the cluster within --connect_timeout.
CONNECT_TIMEOUT_EXIT = 128 + signal.SIGALRM


class DistributionError(RuntimeError):
    """A strategy cannot be set up (bad TF_CONFIG, unreachable peers)."""


def cluster():
    """``(cluster spec dict, task type, task index)`` from ``TF_CONFIG``, or ``({}, None, 0)``."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}, None, 0
    try:
        config = json.loads(raw)
        spec = config.get("cluster", {})
        task = config.get("task", {})
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as e:
        raise DistributionError(f"TF_CONFIG is not valid JSON of the documented form "
                                f"{{'cluster': {{...}}, 'task': {{'type': ..., 'index': ...}}}}: "
                                f"{e}") from None
    if spec and (kind not in spec or not 0 <= index < len(spec[kind])):
        raise DistributionError(f"TF_CONFIG task {kind}:{index} is not in its cluster {spec}.")
    return spec, kind, index


def num_workers():
    """Number of worker processes in ``TF_CONFIG`` (chief included); 1 without it."""
    spec, _, _ = cluster()
    return sum(len(spec.get(k, [])) for k in ("chief", "worker")) or 1


def is_chief(distribute="multi_worker"):
    """True for the process that writes results: the chief, or worker 0 if there is none.

    Only ``distribute="multi_worker"`` reads ``TF_CONFIG``; any other kind runs
    alone and is its own chief.
    """
    if distribute != "multi_worker":
        return True
    spec, kind, index = cluster()
    if not spec or kind is None:
        return True
    if "chief" in spec:
        return kind == "chief"
    return kind == "worker" and index == 0


def worker_dir(output_dir, distribute="multi_worker"):
    """``output_dir`` for the chief; a per-worker scratch directory under it for the others.

    A process not run with ``distribute="multi_worker"`` writes to ``output_dir``.
    """
    if is_chief(distribute):
        return output_dir
    _, kind, index = cluster()
    return os.path.join(output_dir, "workers", f"{kind}_{index}")


def make_strategy(kind, *, connect_timeout=120.0):
    """The strategy for ``kind`` (see ``KINDS``); None for ``"none"``.

    Raises:
      ValueError: unknown kind.
      DistributionError: ``multi_worker`` without a usable ``TF_CONFIG``, or
        peers unreachable within ``connect_timeout`` seconds.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown distribution {kind!r}; choose from {', '.join(KINDS)}.")
    if kind != "multi_worker":
        _warn_unused_tf_config(kind)
    if kind == "none":
        return None
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    spec, task, index = cluster()
    if not spec or task is None:
        raise DistributionError("--distribute=multi_worker needs TF_CONFIG with a cluster and "
                                "this process's task (see README 'Running on several machines').")
    # The strategy's constructor starts this task's server and then blocks, without a time
    # limit and holding the GIL, until every peer answers. A small watchdog process (no
    # TensorFlow) ends this process with a clear message if the cluster has not formed in time.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=connect_timeout)
    me = spec[task][index]
    peers = [a for members in spec.values() for a in members if a != me]
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), repr(float(connect_timeout)),
         f"{task}:{index} ({me})"] + peers, stdin=subprocess.PIPE)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except Exception as e:  # pylint: disable=broad-except
        raise DistributionError(f"MultiWorkerMirroredStrategy could not start: {e}") from None
    finally:
        watchdog.stdin.close()  # EOF: the watchdog leaves quietly
        watchdog.wait()
    return strategy


def _warn_unused_tf_config(kind):
    try:
        _, task, index = cluster()
    except DistributionError:
        task, index = "?", "?"
    if task is not None:
        logging.warning("TF_CONFIG is set (task %s:%s) but the run is not multi_worker "
                        "(--distribute=%s): TF_CONFIG is ignored; this process runs alone and "
                        "writes its own results. Unset TF_CONFIG, or pass "
                        "--distribute=multi_worker to join the cluster.", task, index, kind)


# Run as `python -c _WATCHDOG PARENT_PID TIMEOUT WHO PEER...`: waits for EOF on stdin (the
# strategy is up) or the timeout; on timeout, names the unreachable peers and ends the parent
# with SIGALRM (exit status CONNECT_TIMEOUT_EXIT), or SIGKILL if SIGALRM has not ended it.
_WATCHDOG = """
import os, select, signal, socket, sys, time
parent, timeout, who, peers = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if ready:
    sys.exit(0)
def reachable(addr):
    host, _, port = addr.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
        return True
    except (OSError, ValueError):
        return False
silent = [a for a in peers if not reachable(a)]
sys.stderr.write(
    f"tfdisc: worker {who} could not form the cluster within {timeout:g} s; peer(s) not "
    f"reachable: {', '.join(silent) or 'none'} (of {', '.join(peers)}). Start every worker "
    "listed in TF_CONFIG (same cluster, each with its own task), check the addresses and ports, "
    "or raise --connect_timeout.\\n")
sys.stderr.flush()
os.kill(parent, signal.SIGALRM)
for _ in range(50):
    time.sleep(0.1)
    try:
        os.kill(parent, 0)
    except OSError:
        sys.exit(0)
os.kill(parent, signal.SIGKILL)
"""


class ResumeLog(tf.keras.callbacks.Callback):
    """Records the first epoch a ``fit`` runs: above 0 means BackupAndRestore resumed it."""

    def __init__(self):
        super().__init__()
        self.resumed_from_epoch = None
        self._seen = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._seen:
            self._seen = True
            if epoch > 0:
                self.resumed_from_epoch = int(epoch)
                # Printed once: tf's logger would repeat it (its own handler and absl's).
                print(f"Resumed from the backup: continuing at epoch {epoch + 1}.", flush=True)


def backup_callbacks(backup_dir, delete_checkpoint=True):
    """``[BackupAndRestore(backup_dir), ResumeLog()]``: resumable training and its record.

    ``delete_checkpoint=False`` keeps the backup after training, e.g. until the
    run's results are written (``tfdisc.run_dir.discard_backup``).
    """
    return [tf.keras.callbacks.BackupAndRestore(backup_dir, save_freq="epoch",
                                                delete_checkpoint=delete_checkpoint), ResumeLog()]
