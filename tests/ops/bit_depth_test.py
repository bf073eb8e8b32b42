"""tfdisc.ops.bit_depth: the same float32 values as tfdisc.quantize.bit_depth, bit for bit."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tfdisc.ops as ops
from tfdisc import quantize

RANGES = [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-0.1, 0.7), (-100.0, 37.25)]


def _want(x, bits, value_range, straight_through, graph=False):
    gradient = "straight_through" if straight_through else "none"
    fn = lambda v: quantize.bit_depth(v, bits, value_range=value_range, gradient=gradient)
    if graph:
        fn = tf.function(fn)
    return fn(tf.constant(x)).numpy()


def _cases(bits, value_range, rng):
    """Random values in and around the range, the 256 input levels, every bin
    edge and its float32 neighbours, and the special values."""
    low, high = value_range
    span = high - low
    edges = np.float32(low + span * np.arange(257) * (256 / 2**bits) / 255.0)
    return np.concatenate([
        rng.uniform(low - 0.2 * span, high + 0.2 * span, 3000),
        low + span * np.arange(256) / 255.0,
        edges, np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf)),
        [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, low, high],
    ]).astype(np.float32)


def _assert_same_bits(got, want):
    assert got.dtype == np.float32 and got.shape == want.shape
    diff = np.flatnonzero(got.view(np.int32) != want.view(np.int32))
    assert diff.size == 0, f"{diff.size} values differ, e.g. {got.flat[diff[0]]!r} vs {want.flat[diff[0]]!r}"


@pytest.mark.parametrize("straight_through", [True, False])
@pytest.mark.parametrize("value_range", RANGES)
@pytest.mark.parametrize("bits", range(1, 9))
def test_same_bits_as_quantize(bits, value_range, straight_through):
    x = _cases(bits, value_range, np.random.default_rng(bits))
    got = ops.bit_depth(x, bits, value_range=value_range,
                        straight_through=straight_through).numpy()
    _assert_same_bits(got, _want(x, bits, value_range, straight_through))
    _assert_same_bits(got, _want(x, bits, value_range, straight_through, graph=True))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bits=st.integers(1, 8),
       value_range=st.tuples(st.floats(-100, 100), st.floats(1e-2, 200)).map(
           lambda t: (t[0], t[0] + t[1])),
       x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=7),
                    elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       straight_through=st.booleans())
def test_property_same_bits_as_quantize(bits, value_range, x, straight_through):
    got = ops.bit_depth(x, bits, value_range=value_range,
                        straight_through=straight_through).numpy()
    _assert_same_bits(got, _want(x, bits, value_range, straight_through))


def test_shapes_and_empty():
    assert ops.bit_depth(np.zeros((0, 3), np.float32), 2).shape == (0, 3)
    assert ops.bit_depth(np.float32(0.3), 2).shape == ()
    # A length that is not a multiple of 4 (the SIMD loop's tail).
    x = np.linspace(-0.1, 1.1, 4 * 1000 + 3, dtype=np.float32)
    _assert_same_bits(ops.bit_depth(x, 3).numpy(), _want(x, 3, (0.0, 1.0), True))


def test_bad_input():
    x = np.zeros((2, 2), np.float32)
    for bits in (0, 9, 2.5, True):
        with pytest.raises(ValueError, match="bits"):
            ops.bit_depth(x, bits)
    with pytest.raises(ValueError, match="value_range"):
        ops.bit_depth(x, 2, value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="value_range"):
        ops.bit_depth(x, 2, value_range=(0.0, np.inf))
    with pytest.raises(TypeError, match="float32"):
        ops.bit_depth(np.zeros((2, 2), np.uint8), 2)
    with pytest.raises(TypeError, match="float32"):
        ops.bit_depth(np.zeros((2, 2), np.float64), 2)


def test_op_checks_its_attributes():
    """The raw op refuses what the Python wrapper would never pass."""
    raw = ops.library().tfdisc_bit_depth
    x = tf.zeros((2,))
    good = dict(bits=2, low=0.0, high=1.0, scale=255.0, unscale=1 / 255.0)
    for bad, match in ((dict(bits=0), "bits"), (dict(bits=9), "bits"),
                       (dict(low=1.0), "low < high"), (dict(high=float("inf")), "finite"),
                       (dict(scale=0.0), "scale"), (dict(unscale=-1.0), "scale")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            raw(x, **{**good, **bad})


# Issue 26: value ranges float32 cannot quantize. (0, 1e-39) gave NaN.
UNREPRESENTABLE = [(0.0, 1e-39), (0.0, 1e-37), (1e10, 1e10 + 1), (1e10, 1e10 + 2000),
                   (-3e38, 3e38), (0.0, 1e39), (0.0, 3.4e38)]


@pytest.mark.parametrize("value_range", UNREPRESENTABLE)
def test_unrepresentable_value_range_is_refused(value_range):
    with pytest.raises(ValueError, match="cannot be quantized in float32"):
        ops.bit_depth(np.zeros((2, 2), np.float32), 2, value_range=value_range)


def test_straight_through_must_be_a_bool():
    with pytest.raises(ValueError, match="straight_through"):
        ops.bit_depth(np.zeros((2,), np.float32), 2, straight_through="no")


def test_op_refuses_a_range_float32_cannot_carry():
    """The raw op's own check, for callers that bypass the wrapper."""
    raw = ops.library().tfdisc_bit_depth
    x = tf.zeros((2,))
    # Refused by the older checks: a subnormal high arrives as 0 (low == high);
    # 255 / 1e-37 overflows to an infinite scale.
    for low, high in [(0.0, 1e-39), (0.0, 1e-37)]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match="bit_depth: (the value range|scale and unscale)"):
            raw(x, bits=2, low=low, high=high, scale=255.0 / high, unscale=high / 255.0)
    # Refused by the new one: the highest level overflows; the lowest level's
    # offset (unscale / 2) is subnormal (the op would flush it to 0).
    for low, high, scale, unscale in [(0.0, 3.4e38, 255.0 / 3.4e38, 3.4e38 / 255.0),
                                      (0.0, 1e-30, 2.55e32, 1.5e-38)]:
        with pytest.raises(tf.errors.InvalidArgumentError, match="cannot be quantized"):
            raw(x, bits=2, low=low, high=high, scale=scale, unscale=unscale)
    # A narrow but representable range still runs.
    assert np.all(np.isfinite(raw(x, bits=2, low=0.0, high=1e-30, scale=2.55e32,
                                  unscale=1e-30 / 255.0).numpy()))
