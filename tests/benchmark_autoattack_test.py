"""`tfdisc.benchmarks.autoattack`: its tfdisc side on a tiny model, and a clear error without
the reference (ART is a cross-check, never installed by tfdisc). No speed is asserted."""
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from tfdisc import layers
from tfdisc.benchmarks import autoattack as bench


def _model():
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([
        tf.keras.Input((4, 4, 1)), layers.BitDepthQuantization(2), tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(5)])


def test_tfdisc_side_records_cumulative_stages():
    model = _model()
    x = np.random.default_rng(0).uniform(size=(12, 4, 4, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), 1).astype(np.int64)  # all clean-correct
    robust, seconds = bench.run_tfdisc(model, x, y, 0.3, n_iter=5, n_queries=40)
    assert list(robust) == ["clean", "apgd_ce", "apgd_t", "square"]
    assert robust["clean"] == 1.0 and seconds > 0
    values = list(robust.values())
    assert all(a >= b for a, b in zip(values, values[1:]))  # each stage only removes examples


@pytest.mark.skipif(importlib.util.find_spec("art") is not None, reason="ART is installed")
def test_reference_without_art_says_how_to_get_it():
    x = np.zeros((2, 4, 4, 1), np.float32)
    with pytest.raises(ImportError, match="adversarial-robustness-toolbox.*--noreference"):
        bench.run_art(_model(), x, np.zeros(2, np.int64), 0.1, 2)


@pytest.mark.parametrize("text, value", [("0.1", 0.1), ("8/255", 8 / 255)])
def test_eps_flag_is_read_by_the_shared_parser(text, value):
    assert bench.results.parse_epsilon(text) == pytest.approx(value)


def test_importing_the_benchmark_defines_no_flags():
    """Its flags (batch_size, data_dir, ...) would clash with the experiment binaries' in one
    process: they are defined only when it runs as a binary."""
    from absl import flags  # pylint: disable=import-outside-toplevel
    assert "reference" not in flags.FLAGS and callable(bench.define_flags)
