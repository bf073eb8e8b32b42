"""Paper eq. 2, checked against an independent integer computation."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdisc import layers, quantize

INTENSITIES = np.arange(256)


def eq2_reference(intensity, bits):
    """Eq. 2 in exact integer/half-integer arithmetic, on the 0-255 scale."""
    step = 2 ** (8 - bits)  # 256 / 2**bits
    return (intensity // step) * step + step / 2


@pytest.mark.parametrize("bits", range(1, 9))
class TestEquation2:
    def test_float_inputs_all_intensities(self, bits):
        x = tf.constant(INTENSITIES / 255.0, tf.float32)
        got = quantize.bit_depth(x, bits).numpy() * 255.0
        np.testing.assert_allclose(got, eq2_reference(INTENSITIES, bits), atol=1e-3)

    def test_uint8_inputs_all_intensities(self, bits):
        got = quantize.bit_depth(tf.constant(INTENSITIES, tf.uint8), bits).numpy() * 255.0
        np.testing.assert_allclose(got, eq2_reference(INTENSITIES, bits), atol=1e-3)

    def test_number_of_levels(self, bits):
        got = quantize.bit_depth(tf.constant(INTENSITIES / 255.0, tf.float32), bits).numpy()
        assert len(np.unique(np.round(got * 255 * 2))) == 2 ** bits

    def test_other_value_range(self, bits):
        x = INTENSITIES / 255.0 * 2.0 - 1.0
        got = quantize.bit_depth(tf.constant(x, tf.float32), bits, value_range=(-1.0, 1.0))
        expected = eq2_reference(INTENSITIES, bits) / 255.0 * 2.0 - 1.0
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_two_bit_levels_match_paper():
    # δ = 2: s = 64, levels 32, 96, 160, 224.
    got = quantize.bit_depth(tf.constant([0.0, 63 / 255, 64 / 255, 0.5, 128 / 255, 1.0]), 2).numpy() * 255
    np.testing.assert_allclose(got, [32, 32, 96, 96, 160, 224], atol=1e-3)


def test_values_between_intensities_use_floor():
    # 63.9/255 lies in bin 0 at 2 bits; 64.2/255 in bin 1.
    got = quantize.bit_depth(tf.constant([63.9 / 255, 64.2 / 255]), 2).numpy() * 255
    np.testing.assert_allclose(got, [32, 96], atol=1e-3)


def test_inputs_outside_range_are_clipped():
    got = quantize.bit_depth(tf.constant([-0.5, 1.7]), 2).numpy() * 255
    np.testing.assert_allclose(got, [32, 224], atol=1e-3)
    got = quantize.bit_depth(tf.constant([-3, 300], tf.int32), 2).numpy() * 255
    np.testing.assert_allclose(got, [32, 224], atol=1e-3)


def test_float64_keeps_dtype():
    assert quantize.bit_depth(tf.constant([0.5], tf.float64), 3).dtype == tf.float64


class TestGradient:
    def _grad(self, x, gradient):
        x = tf.constant(x, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = quantize.bit_depth(x, 2, gradient=gradient)
            loss = tf.reduce_sum(y * tf.constant([1.0, -2.0, 3.0, 4.0]))
        return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()

    def test_straight_through_passes_gradient_inside_range(self):
        np.testing.assert_allclose(self._grad([0.1, 0.4, 0.7, 0.99], "straight_through"),
                                   [1.0, -2.0, 3.0, 4.0])

    def test_straight_through_is_zero_outside_range(self):
        np.testing.assert_allclose(self._grad([-0.1, 0.4, 1.5, 0.5], "straight_through"),
                                   [0.0, -2.0, 0.0, 4.0])

    def test_none_is_true_zero_gradient(self):
        np.testing.assert_array_equal(self._grad([0.1, 0.4, 0.7, 0.99], "none"), np.zeros(4))

    def test_forward_values_do_not_depend_on_gradient_mode(self):
        x = tf.random.uniform([100], seed=1)
        np.testing.assert_array_equal(quantize.bit_depth(x, 3, gradient="none").numpy(),
                                      quantize.bit_depth(x, 3).numpy())


class TestBadInput:
    @pytest.mark.parametrize("bits", [0, 9, -1, 2.5, "2", None, True])
    def test_bits_out_of_range(self, bits):
        with pytest.raises(ValueError, match=r"`bits` must be an integer in \[1, 8\]"):
            quantize.bit_depth(tf.constant([0.5]), bits)

    def test_integral_float_bits_accepted(self):
        np.testing.assert_allclose(quantize.bit_depth(tf.constant([0.5]), 2.0).numpy() * 255,
                                   [96], atol=1e-3)

    def test_bool_input(self):
        with pytest.raises(TypeError, match="numeric"):
            quantize.bit_depth(tf.constant([True]), 2)

    def test_string_input(self):
        with pytest.raises(TypeError, match="numeric"):
            quantize.bit_depth(tf.constant(["a"]), 2)

    @pytest.mark.parametrize("value_range", [(1.0, 0.0), (0.0,), "ab", None])
    def test_bad_value_range(self, value_range):
        with pytest.raises(ValueError, match="value_range"):
            quantize.bit_depth(tf.constant([0.5]), 2, value_range=value_range)

    def test_bad_gradient(self):
        with pytest.raises(ValueError, match="gradient"):
            quantize.bit_depth(tf.constant([0.5]), 2, gradient="identity")


class TestUnrepresentableValueRange:
    """Issue 26: ``bit_depth(value_range=(0, 1e-39))`` returned NaN; refuse such ranges."""

    BAD = [(0.0, 1e-39), (0.0, 1e-37), (1e10, 1e10 + 1), (1e10, 1e10 + 2000),
           (-3e38, 3e38), (0.0, 1e39), (0.0, 3.4e38), (0, 10**400)]

    @pytest.mark.parametrize("value_range", BAD)
    def test_bit_depth_refuses(self, value_range):
        with pytest.raises(ValueError, match="value_range"):
            quantize.bit_depth(tf.constant([0.0, 1e-40, 0.5]), 2, value_range=value_range)

    @pytest.mark.parametrize("value_range", BAD)
    def test_layer_refuses(self, value_range):
        with pytest.raises(ValueError, match="value_range"):
            layers.BitDepthQuantization(2, value_range=value_range)

    @settings(max_examples=200, deadline=None)
    @given(st.floats(-3.5e38, 3.5e38), st.floats(1e-45, 7e38),
           st.sampled_from([1, 2, 8]), st.sampled_from(["float", "uint8"]))
    def test_accepted_ranges_never_give_nan_or_inf(self, low, width, bits, kind):
        """Every range ``check_value_range`` accepts quantizes to finite levels in range."""
        value_range = (low, low + width)
        try:
            low, high = quantize.check_value_range(value_range)
        except ValueError as err:
            assert "value_range" in str(err)
            return
        if kind == "uint8":
            x = tf.constant([0, 1, 127, 128, 254, 255], tf.uint8)
        else:
            x = tf.constant(np.float32([low, high, np.nan, np.inf, -np.inf,
                                        low + 0.3 * (high - low)]))
        q = quantize.bit_depth(x, bits, value_range=value_range).numpy()
        assert np.all(np.isfinite(q))
        assert np.all(q >= np.float32(low)) and np.all(np.diff(np.sort(q)) >= 0)
