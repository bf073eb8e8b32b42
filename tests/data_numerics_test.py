"""Issue 26, flags/data/training numerics/distribution: bad numbers and bad data give clear
errors, never a silent wrong answer, a hang or a run recorded as normal."""
import gzip
import json
import logging
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from tfdisc import data, distribution, pipeline, results, training


# ------------------------------------------------------------------ epsilons

@pytest.mark.parametrize("text", ["1e400", "1e999999999", "inf", "nan", "-inf", "1" * 400 + "/1"])
def test_parse_epsilon_refuses_non_finite_values_with_a_value_error(text):
    # 1e400 raised a raw OverflowError; 1e999999999 made Fraction build 10**999999999 (a hang).
    with pytest.raises(ValueError, match="finite|Bad epsilon"):
        results.parse_epsilon(text)


def test_parse_epsilon_still_reads_numbers_and_fractions():
    assert results.parse_epsilon("0.1") == 0.1
    assert results.parse_epsilon(" 8/255 ") == 8 / 255
    assert results.parse_epsilon("3e-1") == 0.3


# ------------------------------------------------------------------ from_arrays scaling

def _first_images(ds):
    return next(iter(ds))[0].numpy()


def test_from_arrays_does_not_scale_float_images_in_unit_range_twice():
    x = np.linspace(0, 1, 4 * 2 * 2).reshape(4, 2, 2, 1).astype(np.float32)
    out = _first_images(data.from_arrays(x, np.arange(4), batch_size=4))
    np.testing.assert_allclose(out, x)  # max pixel was 1/255 = 0.0039 before the fix


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32, np.float64])
def test_from_arrays_scales_0_255_images_once(dtype):
    x = np.array([0, 51, 255, 128]).reshape(4, 1, 1, 1).astype(dtype)
    out = _first_images(data.from_arrays(x, np.arange(4), batch_size=4))
    np.testing.assert_allclose(out.ravel(), [0, 0.2, 1.0, 128 / 255], rtol=1e-6)
    assert out.dtype == np.float32


def test_from_arrays_value_range_resolves_dark_0_255_float_images():
    x = np.full((2, 1, 1, 1), 1.0, np.float32)  # pixel value 1 of 255: looks like [0, 1]
    assert _first_images(data.from_arrays(x, np.arange(2)))[0, 0, 0, 0] == 1.0
    out = _first_images(data.from_arrays(x, np.arange(2), value_range=(0, 255)))
    np.testing.assert_allclose(out, 1 / 255)


@pytest.mark.parametrize("x, kwargs, match", [
    (np.full((2, 1, 1, 1), -0.5, np.float32), {}, "outside"),
    (np.full((2, 1, 1, 1), 300.0, np.float32), {}, "outside"),
    (np.full((2, 1, 1, 1), np.nan, np.float32), {}, "NaN"),
    (np.full((2, 1, 1, 1), 2.0, np.float32), {"value_range": (0, 1)}, "given"),
    (np.zeros((2, 1, 1, 1), np.float32), {"value_range": (0, 2)}, "value_range"),
])
def test_from_arrays_refuses_images_outside_every_range(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.from_arrays(x, np.arange(2), **kwargs)


def test_to_float_refuses_float_images():
    with pytest.raises(TypeError, match="value_range"):
        data.to_float(np.zeros((1, 2, 2, 1), np.float32))
    np.testing.assert_allclose(data.to_float(np.full((1,), 255, np.uint8)).numpy(), [1.0])


# ------------------------------------------------------------------ batch sizes

def test_a_batch_larger_than_the_data_is_one_batch_of_all_of_it():
    # tf.data reserved memory for the whole batch: --batch_size=1000000000 ran for minutes.
    x, y = np.zeros((5, 2, 2, 1), np.uint8), np.arange(5)
    batches = list(data.from_arrays(x, y, batch_size=10 ** 9))
    assert [len(b[1]) for b in batches] == [5]
    with pytest.raises(ValueError, match="no batch"):
        data.from_arrays(x, y, batch_size=6, drop_remainder=True)


# ------------------------------------------------------------------ IDX shapes

def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                    *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_images_of_another_size_are_refused_naming_the_file(tmp_path):
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((6, 32, 32)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(6))
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz.*\(32, 32, 1\).*"
                                             r"\(28, 28, 1\)"):
        data.load_arrays("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(data.DataError, match="shape"):
        data.load_arrays("fashion_mnist", "test", data_dir=str(tmp_path))


# ------------------------------------------------------------------ learning rate, NaN loss

@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1.0])
def test_config_refuses_a_non_finite_learning_rate(lr):
    with pytest.raises(ValueError, match="learning_rate"):
        pipeline.Config(dataset="mnist", learning_rate=lr)


def test_config_refuses_an_infinite_connect_timeout():
    with pytest.raises(ValueError, match="connect_timeout"):
        pipeline.Config(dataset="mnist", connect_timeout=float("inf"))


def test_a_nan_loss_stops_fit_with_a_clear_error():
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2)])
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.array([[0.0, 1.0], [np.nan, 0.0]], np.float32)
    with pytest.raises(training.NonFiniteLossError, match="in epoch 1: training diverged.*lower"):
        model.fit(x, np.array([0, 1]), batch_size=1, epochs=2, verbose=0, shuffle=False,
                  callbacks=[training.StopOnNonFiniteLoss(hint="lower it")])


def test_a_diverging_run_is_not_recorded(mnist_dir, tmp_path):
    # lr 1e38 is finite but sends the weights to inf at once: the loss turns NaN.
    cfg = pipeline.Config(dataset="mnist", width=8, epochs=1, batch_size=64, train_limit=256,
                          test_limit=32, learning_rate=1e38, data_dir=mnist_dir, verbose="0")
    with pytest.raises(training.NonFiniteLossError, match="diverged.*learning rate"):
        pipeline.run(cfg, str(tmp_path), callbacks=[])
    assert not os.path.exists(tmp_path / "results.json")
    assert not os.path.exists(tmp_path / "model.keras")


# ------------------------------------------------------------------ TF_CONFIG without --distribute

_WORKER_1 = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                        "task": {"type": "worker", "index": 1}})


def test_tf_config_is_ignored_by_a_run_that_is_not_multi_worker(monkeypatch, caplog):
    monkeypatch.setenv("TF_CONFIG", _WORKER_1)
    assert not distribution.is_chief()  # a multi-worker run would be worker 1 ...
    assert distribution.worker_dir("out") == os.path.join("out", "workers", "worker_1")
    for kind in ("none", "mirrored"):  # ... any other run is alone, so its own chief
        assert distribution.is_chief(kind)
        assert distribution.worker_dir("out", kind) == "out"
    with caplog.at_level(logging.WARNING):
        assert distribution.make_strategy("none") is None
    assert "TF_CONFIG is set (task worker:1)" in caplog.text


def test_a_plain_run_with_a_worker_tf_config_writes_to_its_output_dir(mnist_dir, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _WORKER_1)
    cfg = pipeline.Config(dataset="mnist", width=8, epochs=1, batch_size=64, train_limit=128,
                          test_limit=32, epsilons=(0.1,), data_dir=mnist_dir, verbose="0",
                          save_model=False)
    pipeline.run(cfg, str(tmp_path), callbacks=[])
    assert os.path.isfile(tmp_path / "results.json")
    assert not os.path.exists(tmp_path / "workers")


def test_a_stray_tf_config_that_is_not_valid_json_does_not_stop_a_plain_run(monkeypatch, caplog):
    # A plain run used to read TF_CONFIG for its output directory, and failed on a bad one.
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert distribution.is_chief("none") and distribution.worker_dir("out", "none") == "out"
    with caplog.at_level(logging.WARNING):
        distribution.make_strategy("none")
    assert "TF_CONFIG is set" in caplog.text
    with pytest.raises(distribution.DistributionError, match="not valid JSON"):
        distribution.is_chief("multi_worker")


def test_connect_timeout_exit_status_is_not_an_out_of_memory_kill():
    assert distribution.CONNECT_TIMEOUT_EXIT == 142 != 137
