"""imagenet binary: one tiny epoch on a synthetic image-folder tree; top-1 and top-5."""
import json
import os

from absl.testing import flagsaver

from tfdisc.experiments import imagenet


def test_one_tiny_epoch_with_top5(synthetic_imagenet, tmp_path):
    params = {**imagenet.DEFAULTS, "width": 3, "depth": 1, "epochs": 1, "batch_size": 12,
              "eval_batch_size": 12, "verbose": "0", "bits": 2, "epsilons": ["8/255"],
              "data_dir": synthetic_imagenet, "output_dir": str(tmp_path), "save_model": False}
    with flagsaver.flagsaver(**params):
        imagenet.main(["imagenet"])
    with open(os.path.join(tmp_path, "results.json")) as f:
        rec = json.load(f)
    assert (rec["dataset"], rec["model"], rec["precision"]) == ("imagenet2012", "alexnet", "xnor")
    assert rec["data"]["train_examples"] == 24 and rec["data"]["test_examples"] == 12
    top5 = rec["top5"]
    assert top5["clean_accuracy"] >= rec["clean_accuracy"]
    assert top5["adversarial_accuracy"]["0.03137255"] >= rec["adversarial_accuracy"]["0.03137255"]
