"""cifar binary: one tiny epoch on a synthetic CIFAR10 JPEG archive (the shared data's format)."""
import json
import os

import pytest
from absl.testing import flagsaver

from tfdisc.experiments import cifar


def test_one_tiny_epoch(synthetic_cifar10, tmp_path):
    params = {**cifar.DEFAULTS, "width": 4, "epochs": 1, "batch_size": 20, "eval_batch_size": 30,
              "verbose": "0", "attack": ["fgsm", "pgd"], "pgd_steps": 1, "bits": 2,
              "precision": "binary", "adv_train": True, "data_dir": synthetic_cifar10,
              "output_dir": str(tmp_path), "save_model": False}
    with flagsaver.flagsaver(**params):
        cifar.main(["cifar"])
    with open(os.path.join(tmp_path, "results.json")) as f:
        rec = json.load(f)
    assert (rec["dataset"], rec["model"], rec["precision"], rec["bits"]) == (
        "cifar10", "alexnet_cifar", "binary", 2)
    assert rec["data"]["train_examples"] == 60 and rec["data"]["test_examples"] == 30
    assert rec["adv_train_params"]["eps"] == pytest.approx(8 / 255)
    assert list(rec["adversarial_accuracy"]) == ["0.003921569", "0.007843137", "0.01568627",
                                                 "0.03137255", "0.0627451", "0.1254902"]
    assert set(rec["attacks"]) == {"fgsm", "pgd"}
