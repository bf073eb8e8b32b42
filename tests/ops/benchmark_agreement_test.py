"""tfdisc.benchmarks.agreement: larq vs packed argmax agreement, with ties traced (issue 31)."""
import json

import numpy as np
import pytest
import tensorflow as tf

import tfdisc
from tfdisc import data as data_lib
from tfdisc.benchmarks import agreement
from tests.testing_utils import random_batch_norms


def _bnn(seed, trained_looking=True):
    tf.keras.utils.set_random_seed(seed)
    model = tfdisc.models.build("alexnet_cifar", precision="binary", input_bits=2, width=8,
                                depth=1)
    if trained_looking:
        random_batch_norms(model, seed)
    return model


@pytest.fixture(scope="module")
def cifar_images(cifar10_dir):
    x, y = data_lib.load_arrays("cifar10", "test", data_dir=cifar10_dir)
    return data_lib.to_float(x[:48]), np.asarray(y[:48]).reshape(-1)


def test_packed_agrees_with_larq_on_real_images_and_records_every_field(cifar_images):
    x, y = cifar_images
    rec = agreement.compare(_bnn(3), x, y, batch=16)
    assert rec["images"] == 48
    assert rec["agreement_fused"] == 1.0 and rec["agreement_unfolded"] == 1.0
    assert rec["disagreements"] == 0 and rec["cases"] == []
    assert rec["accuracy_larq"] == rec["accuracy_packed"]


def test_an_untrained_bnn_has_exact_ties(cifar_images):
    """Fresh batch norms are the identity (up to 1/sqrt(1 + ε)): a binary layer's input is
    an integer dot product, often exactly 0, so the tie ratio is 0 on some image."""
    x, _ = cifar_images
    ratios, where = agreement.tie_ratios(_bnn(4, trained_looking=False), x, 16)
    assert np.min(ratios) == 0.0
    assert all(name for name in where)
    trained, _ = agreement.tie_ratios(_bnn(4), x, 16)
    assert np.median(trained) > agreement.TIE_ULPS  # random statistics: ties are rare


def test_a_disagreement_is_traced_to_the_near_tie_it_comes_from(cifar_images, monkeypatch):
    """A packed model that flips one image's answer: the disagreement is reported, and it is
    traced to a tie only if that image has a near-tie and the unfolded model agrees."""
    x, y = cifar_images
    model = _bnn(5)
    real_to_packed = agreement.convert.to_packed

    def flipping(m, **kwargs):
        packed = real_to_packed(m, **kwargs)
        if kwargs:  # the unfolded per-layer model stays honest
            return packed
        calls = {"n": 0}

        def call(images, training=False):
            logits = packed(images, training=training).numpy()
            if calls["n"] == 0:  # the first image of the first batch: another class wins
                logits[0, (logits[0].argmax() + 1) % logits.shape[1]] += 1e6
            calls["n"] += 1
            return logits

        return call

    monkeypatch.setattr(agreement.convert, "to_packed", flipping)
    rec = agreement.compare(model, x, y, batch=16)
    assert rec["disagreements"] == 1 and rec["cases"][0]["image"] == 0
    case = rec["cases"][0]
    assert case["unfolded_agrees"] is True
    assert case["traced_to_tie"] == (case["smallest_presign_in_roundoff_units"]
                                     <= agreement.TIE_ULPS)


def test_the_binary_writes_its_record_and_refuses_bad_input(cifar10_dir, tmp_path):
    model = _bnn(6)
    path = tmp_path / "run" / "model.keras"
    path.parent.mkdir()
    model.save(path)
    out = tmp_path / "agreement.json"
    rec = agreement.run(str(path), data_dir=cifar10_dir, limit=20, batch=10, output=str(out))
    assert json.loads(out.read_text()) == json.loads(json.dumps(rec))
    assert rec["images"] == 20 and rec["model"] == "run" and rec["agreement_fused"] == 1.0
    assert rec["dataset"] == "cifar10 test, first 20 images"
    with pytest.raises(ValueError, match="--limit"):
        agreement.run(str(path), data_dir=cifar10_dir, limit=0)
    with pytest.raises(Exception, match="missing.keras"):
        agreement.run(str(tmp_path / "missing.keras"), data_dir=cifar10_dir)
    with pytest.raises(Exception, match="mnist"):
        agreement.run(str(path), dataset="mnist", data_dir=cifar10_dir)
    fcn = tfdisc.models.build("fcn2", precision="full", input_bits=2, width=8, depth=1)
    with pytest.raises(ValueError, match="no larq layer with a sign"):
        agreement.tie_ratios(fcn, np.zeros((2, 28, 28, 1), np.float32), 2)
