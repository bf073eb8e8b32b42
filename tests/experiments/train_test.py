"""The generic binary (issue 27): any registered dataset runs with its entry's defaults."""
import gzip
import json
import os
import struct

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from tfdisc import data_formats, datasets
from tfdisc.experiments import cifar, imagenet, mnist, train


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with open(path, "wb") as f:
        f.write(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def tiny_digits(tmp_path):
    """A dataset registered for one test: 8x8 IDX files of 3 classes in tmp_path/data."""
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.RandomState(0)
    for prefix, n in (("train", 24), ("t10k", 8)):
        _write_idx(str(root / f"{prefix}-images-idx3-ubyte.gz"), rng.randint(0, 256, (n, 8, 8)))
        _write_idx(str(root / f"{prefix}-labels-idx1-ubyte.gz"), rng.randint(0, 3, n))
    datasets.register(datasets.Dataset(
        name="tiny_digits", shape=(8, 8, 1), num_classes=3, layouts=(data_formats.MnistFiles(),),
        split_sizes={"train": 24, "test": 8}, train_eps=0.2,
        run_defaults=dict(model="fcn2", epsilons=["0.05", "1/8"])))
    yield str(root)
    datasets.unregister("tiny_digits")


def test_a_registered_dataset_runs_with_no_script_of_its_own(tiny_digits, tmp_path):
    out = str(tmp_path / "run")
    with flagsaver.flagsaver(width=8, epochs=1, batch_size=8,
                             eval_batch_size=8, verbose="0", adv_train=True,
                             data_dir=tiny_digits, output_dir=out, save_model=False):
        train.run_with_defaults(["train"], "tiny_digits")  # main with --dataset=tiny_digits
        # Only flags left at their default take the entry's defaults.
        assert flags.FLAGS.epsilons == ["0.05", "1/8"] and flags.FLAGS.width == 8
    with open(os.path.join(out, "results.json")) as f:
        rec = json.load(f)
    assert (rec["dataset"], rec["model"]) == ("tiny_digits", "fcn2")
    assert list(rec["adversarial_accuracy"]) == ["0.05", "0.125"]
    assert rec["adv_train_params"]["eps"] == pytest.approx(0.2)


def test_dataset_flag_names_unknown_datasets():
    train.define_dataset_flag()
    with pytest.raises(flags.IllegalFlagValueError, match="bogus"):
        with flagsaver.flagsaver(dataset="bogus"):
            pass


def test_dataset_flag_is_checked_when_another_binary_defined_it_first():
    """tune and export define --dataset as an enum, whose choices absl checks only on a
    command line; in one process (pytest, a notebook) the first definition wins."""
    saved = flags.FLAGS["dataset"] if "dataset" in flags.FLAGS else None
    if saved is not None:
        delattr(flags.FLAGS, "dataset")
    flags.DEFINE_enum("dataset", None, ["mnist"], "As tune defines it.", allow_override=True)
    try:
        train.define_dataset_flag()
        with pytest.raises(flags.IllegalFlagValueError, match="bogus"):
            with flagsaver.flagsaver(dataset="bogus"):
                pass
    finally:
        delattr(flags.FLAGS, "dataset")
        if saved is not None:
            flags.FLAGS["dataset"] = saved


def test_per_dataset_binaries_take_their_defaults_from_the_registry():
    assert mnist.DEFAULTS == dict(model="fcn2", epsilons=["0.1", "0.2", "0.3"])
    assert cifar.DEFAULTS == dict(model="alexnet_cifar", precision="full",
                                  epsilons=["1/255", "2/255", "4/255", "8/255", "16/255",
                                            "32/255"])
    assert imagenet.DEFAULTS == train.defaults("imagenet2012")
    assert datasets.get("imagenet2012").top_k == (1, 5)
    # A binary's DEFAULTS are its own copy: editing them changes no other run.
    mnist.DEFAULTS["epsilons"].append("0.4")
    try:
        assert train.defaults("mnist")["epsilons"] == ["0.1", "0.2", "0.3"]
    finally:
        mnist.DEFAULTS["epsilons"].pop()
