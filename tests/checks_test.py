"""tfdisc.checks (the shared argument checks) and tfdisc.quantize.bin_width."""
import numpy as np
import pytest
import tensorflow as tf

import tfdisc  # noqa: F401  (selects legacy Keras)
from tfdisc import attacks, checks, layers, quantize
from tfdisc.certify import box as box_lib

from import_graph_test import ROOT, import_graph


def test_checks_is_a_base_module():
    """checks imports no tfdisc module that could import the attacks or certify back."""
    _, edges = import_graph(ROOT, "tfdisc")
    assert set(edges.get("tfdisc.checks", {})) <= {"tfdisc.quantize", "tfdisc.projection"}


def test_attacks_holds_only_the_attacks():
    assert not [name for name in vars(attacks) if name.startswith("check_")]
    assert not [name for name in attacks.__all__ if name.startswith("check_")]
    assert {"check_eps", "check_clip", "check_labels", "check_images", "check_steps",
            "check_step_size", "check_alpha", "check_inputs", "num_classes"} <= set(checks.__all__)


@pytest.mark.parametrize("call, message", [
    (lambda: checks.check_eps(-1), "`eps` must be a finite non-negative number, got -1."),
    (lambda: checks.check_eps("0.1", "train_eps"),
     "`train_eps` must be a non-negative number, got '0.1'."),
    (lambda: checks.check_clip((1, 0)), "`clip` must have low < high, got (1, 0)."),
    (lambda: checks.check_clip(3), "`clip` must be None or a pair (low, high), got 3."),
    (lambda: checks.check_steps(0), "`steps` must be an integer ≥ 1, got 0."),
    (lambda: checks.check_step_size(0.0), "`step_size` must be a finite number > 0, got 0.0."),
    (lambda: checks.check_alpha(0.5, 0.1), "`alpha` must be in [0, eps] = [0, 0.1], got 0.5."),
    (lambda: checks.check_labels(np.array([0.5, 1.0], np.float32)),
     "`y` must be integer labels of shape [N] or [N, 1], or one-hot floats of shape "
     "[N, classes], got float32 of shape (2,)."),
    (lambda: checks.check_labels([0, 3], num_classes=3),
     "Labels must lie in [0, 3) for a model with 3 classes, got labels in [0, 3]."),
    (lambda: checks.check_images(np.full((1, 2), 2.0, np.float32), (0.0, 1.0)),
     "`x` has pixels in [2, 2], outside the clip range [0, 1]"),
])
def test_messages_unchanged(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_check_inputs_and_num_classes():
    model = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(3)])
    assert checks.num_classes(model) == 3
    x, y = checks.check_inputs(model, np.zeros((2, 2), np.float32), [[0], [2]])
    assert x.shape == (2, 2) and y.numpy().tolist() == [0, 2]
    with pytest.raises(ValueError, match="but the model expects"):
        checks.check_inputs(model, np.zeros((2, 5), np.float32), [0, 2])


@pytest.mark.parametrize("bits", range(1, 9))
def test_bin_width_is_the_step_of_eq_2(bits):
    width = quantize.bin_width(bits)
    assert isinstance(width, int) and width == 256 / 2**bits
    # Every bin of the quantizer's integer path spans `width` intensities.
    quantized = quantize.bit_depth(tf.range(256), bits, value_range=(0.0, 255.0)).numpy()
    _, counts = np.unique(quantized, return_counts=True)
    assert counts.tolist() == [width] * 2**bits
    # The certifier's levels (which use bin_width) are the quantizer's distinct outputs.
    layer = layers.BitDepthQuantization(bits, value_range=(0.0, 1.0))
    expected = np.unique(quantize.bit_depth(tf.range(256), bits).numpy())
    np.testing.assert_array_equal(box_lib.levels(layer, integer=True), expected)


@pytest.mark.parametrize("bits", [0, 9, 2.5, "4", True])
def test_bin_width_refuses_bad_bits(bits):
    with pytest.raises(ValueError, match=r"`bits` must be an integer in \[1, 8\]"):
        quantize.bin_width(bits)
