"""activations binary (paper Fig. 6): trains tiny models or loads saved ones; json + png."""
import json
import os

import pytest
from absl.testing import flagsaver

from tfdisc.experiments import activations, mnist

TINY = dict(width=16, epochs=1, batch_size=64, eval_batch_size=64, test_limit=64, bits=8,
            epsilons=["0.1", "0.3"], verbose="0")


def test_trains_and_analyses(synthetic_mnist, tmp_path):
    with flagsaver.flagsaver(**TINY, models=["fcn2"], precisions=["full", "binary"],
                             model_dirs=[], data_dir=synthetic_mnist, output_dir=str(tmp_path)):
        record = activations.run(["activations"])
    assert os.path.isfile(tmp_path / "activations.png")
    with open(tmp_path / "activations.json") as f:
        assert json.load(f) == record
    assert [m["label"] for m in record["models"]] == ["fcn2 full 8b", "fcn2 binary 8b"]
    for m in record["models"]:
        assert m["gradient"] == "straight_through"
        for layer in ("dense_in", "dense_1"):
            stats = m["layers"][layer]["normalized"]
            assert set(stats) == {"0", "0.1", "0.3"}
            assert stats["0"]["mean"] == pytest.approx(1.0, abs=1e-4)


def test_loads_saved_models(synthetic_mnist, tmp_path):
    run_dir = str(tmp_path / "run")
    with flagsaver.flagsaver(model="fcn2", precision="binary", save_model=True,
                             data_dir=synthetic_mnist, output_dir=run_dir,
                             **{k: v for k, v in TINY.items() if k != "test_limit"}):
        mnist.main(["mnist"])
    with flagsaver.flagsaver(**TINY, model_dirs=[run_dir], layers=["dense_1"],
                             data_dir=synthetic_mnist, output_dir=str(tmp_path / "act")):
        record = activations.run(["activations"])
    assert record["models"][0]["precision"] == "binary"
    assert record["models"][0]["source"] == run_dir


def test_unknown_layer(synthetic_mnist, tmp_path):
    with flagsaver.flagsaver(**TINY, models=["fcn2"], precisions=["full"], model_dirs=[],
                             layers=["conv_9"], data_dir=synthetic_mnist,
                             output_dir=str(tmp_path)):
        with pytest.raises(ValueError, match="no layer"):
            activations.run(["activations"])
