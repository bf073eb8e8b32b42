"""Quiet start-up for tfdisc's command-line programs (``python -m tfdisc.…``).

TensorFlow's C++ runtime prints several lines on import and on first device
use (the CPU feature guard, the missing CUDA driver, oneDNN notices, the absl
log preamble). They are noise to someone running an experiment binary, so the
binaries hide them: stderr is silenced at the file-descriptor level while
TensorFlow imports and initialises its devices, and ``TF_CPP_MIN_LOG_LEVEL``
defaults to 2 (warnings and errors from later C++ code are still shown). If
the import fails, everything it printed is replayed.

Nothing is hidden when the user asks for output: ``TF_CPP_MIN_LOG_LEVEL`` set
in the environment, ``TFDISC_VERBOSE=1``, or absl's ``--verbosity``/``-v``
flag on the command line. Importing tfdisc as a library changes nothing.

A binary also prints each line of TensorFlow's Python logger once: TensorFlow
gives its logger a handler of its own unless the root logger has one when the
logger is first made, and absl's ``app.run`` adds its handler to the root
logger later, so every line (e.g. the collective ops' notices of a
multi-worker run) came out twice. absl's handler is installed before
TensorFlow is imported.
"""
import contextlib
import os
import sys
import tempfile

_ENV_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def running_tfdisc_binary(argv=None):
    """True if this process is ``python -m tfdisc.<module>``."""
    argv = list(getattr(sys, "orig_argv", []) if argv is None else argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[i + 1] == "tfdisc" or argv[i + 1].startswith("tfdisc.")
    return False


def wants_quiet(argv=None, environ=None):
    """Whether to hide TensorFlow's start-up lines (see the module docstring)."""
    environ = os.environ if environ is None else environ
    argv = list(getattr(sys, "orig_argv", []) if argv is None else argv)
    if not running_tfdisc_binary(argv) or "tensorflow" in sys.modules:
        return False
    if _ENV_LEVEL in environ or environ.get("TFDISC_VERBOSE", "").strip() not in ("", "0"):
        return False
    verbose_flags = ("--verbosity", "-v", "--v", "--stderrthreshold", "--logtostderr")
    return not any(a == f or a.startswith(f + "=") for a in argv for f in verbose_flags)


@contextlib.contextmanager
def _silenced_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Imports TensorFlow, quietly when running as a tfdisc binary."""
    if running_tfdisc_binary() and "tensorflow" not in sys.modules:
        from absl import logging  # pylint: disable=import-outside-toplevel

        logging.use_absl_handler()  # app.run would add it after TF made its own: lines twice
    if not wants_quiet():
        import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
        return
    os.environ[_ENV_LEVEL] = "2"
    with _silenced_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tf.config.list_physical_devices()  # device init logs (cuInit) happen here
