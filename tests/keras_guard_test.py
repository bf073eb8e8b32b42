"""`import tfdisc` selects legacy Keras, or explains why it cannot."""
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    environ.update(env, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, timeout=300, check=False)


def test_import_tfdisc_first_gives_legacy_keras_and_larq():
    result = run_python(
        "import tfdisc, tensorflow as tf, larq\n"
        "print(tf.keras.layers.Layer.__module__)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_keras3_already_loaded_is_a_clear_error():
    result = run_python(
        "import tensorflow as tf\n"
        "tf.keras.layers.Layer  # loads Keras 3\n"
        "import tfdisc\n")
    assert result.returncode != 0
    assert "Keras3Error" in result.stderr
    assert "TF_USE_LEGACY_KERAS=1" in result.stderr and "Import tfdisc before tensorflow" in result.stderr


def test_explicit_opt_out_is_overridden_with_a_warning():
    result = run_python("import tfdisc, tensorflow as tf\nprint(tf.keras.layers.Layer.__module__)",
                        TF_USE_LEGACY_KERAS="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")
    assert "overriding TF_USE_LEGACY_KERAS" in result.stderr


def test_tensorflow_imported_without_legacy_keras_is_a_clear_error():
    # Even before tf.keras is touched, TensorFlow has bound the tensorflow.keras
    # import path (which larq uses) to Keras 3.
    result = run_python("import tensorflow as tf\nimport tfdisc\n")
    assert result.returncode != 0
    assert "Keras3Error" in result.stderr and "Import tfdisc before tensorflow" in result.stderr


def test_tensorflow_imported_with_legacy_keras_is_fine():
    result = run_python("import tensorflow as tf\nimport tfdisc\n"
                        "print(tf.keras.layers.Layer.__module__)", TF_USE_LEGACY_KERAS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_lazy_submodules_do_not_load_the_op_library_on_import():
    result = run_python("import sys, tfdisc\n"
                        "assert 'tfdisc.ops' not in sys.modules\n"
                        "assert callable(tfdisc.convert.to_packed)\n"
                        "print(tfdisc.training.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tfdisc.training"
