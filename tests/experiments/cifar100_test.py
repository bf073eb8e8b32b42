"""cifar100 binary: one tiny epoch on synthetic CIFAR100 python batches."""
import json
import os

from absl.testing import flagsaver

from tfdisc.experiments import cifar100


def test_one_tiny_epoch(synthetic_cifar100, tmp_path):
    params = {**cifar100.DEFAULTS, "width": 4, "depth": 8, "epochs": 1, "batch_size": 50,
              "eval_batch_size": 50, "verbose": "0", "bits": 2, "epsilons": ["16/255"],
              "data_dir": synthetic_cifar100, "output_dir": str(tmp_path), "save_model": False}
    with flagsaver.flagsaver(**params):
        cifar100.main(["cifar100"])
    with open(os.path.join(tmp_path, "results.json")) as f:
        rec = json.load(f)
    assert (rec["dataset"], rec["model"], rec["precision"]) == ("cifar100", "resnet20", "xnor")
    assert rec["data"]["train_examples"] == 200 and rec["data"]["test_examples"] == 100
    assert list(rec["adversarial_accuracy"]) == ["0.0627451"]
