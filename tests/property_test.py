"""Property-based tests (hypothesis) of the quantizer and the attacks.

Loader round trips live in tests/data_property_test.py.
"""
import functools

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfdisc import attacks, evaluate, projection, quantize

from tests.testing_utils import CLASSES, SHAPE, small_model

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

bits_st = st.integers(1, 8)
range_st = st.tuples(st.floats(-100, 100), st.floats(1e-2, 200)).map(
    lambda t: (t[0], t[0] + t[1]))


def _levels(bits, value_range):
    low, high = value_range
    step = 256.0 / 2**bits
    return low + (np.arange(2**bits) * step + step / 2.0) * (high - low) / 255.0


def _ulps(value_range, n=4):
    """``n`` float32 ulps at the range's magnitude: the resolution of float32 images there."""
    return n * float(np.spacing(np.float32(max(abs(value_range[0]), abs(value_range[1])))))


@st.composite
def images(draw, dtype=np.float32):
    bits = draw(bits_st)
    value_range = draw(range_st)
    unit = draw(hnp.arrays(np.float64, draw(st.integers(1, 40)),
                           elements=st.floats(0.0, 1.0)))
    x = (value_range[0] + unit * (value_range[1] - value_range[0])).astype(dtype)
    x = np.clip(x, dtype(value_range[0]), dtype(value_range[1]))
    return bits, value_range, x


class TestQuantizer:
    @SETTINGS
    @given(images())
    @example((1, (64.0, 64.01171875), np.array([64.0], np.float32)))  # float32 ulp > 1e-4·width
    def test_outputs_are_levels_of_their_bin(self, case):
        bits, value_range, x = case
        q = quantize.bit_depth(x, bits, value_range=value_range).numpy().astype(np.float64)
        levels = _levels(bits, value_range)
        width = value_range[1] - value_range[0]
        tol = 1e-4 * width + _ulps(value_range)
        nearest = np.abs(q[:, None] - levels[None, :]).min(axis=1)
        np.testing.assert_array_less(nearest, tol)
        # Each output is the level of the bin its input falls in: within half a bin of it.
        half_bin = 128.0 / 2**bits / 255.0 * width
        np.testing.assert_array_less(np.abs(q - x), half_bin * (1 + 1e-3) + tol)

    @SETTINGS
    @given(images())
    def test_monotone(self, case):
        bits, value_range, x = case
        x = np.sort(x)
        q = quantize.bit_depth(x, bits, value_range=value_range).numpy()
        assert np.all(np.diff(q) >= -(1e-6 * (value_range[1] - value_range[0])
                                      + _ulps(value_range)))

    @SETTINGS
    @given(images())
    def test_idempotent(self, case):
        bits, value_range, x = case
        q = quantize.bit_depth(x, bits, value_range=value_range)
        np.testing.assert_allclose(quantize.bit_depth(q, bits, value_range=value_range), q,
                                   rtol=0, atol=1e-5 * (value_range[1] - value_range[0])
                                   + _ulps(value_range))

    @SETTINGS
    @given(bits_st, hnp.arrays(np.uint8, st.integers(1, 50)),
           st.sampled_from([np.float16, np.float32, np.float64]))
    def test_every_dtype_agrees_with_the_integer_reference(self, bits, pixels, dtype):
        step = 256 // 2**bits
        expected = ((pixels.astype(np.int64) // step) * step + step / 2.0) / 255.0
        np.testing.assert_allclose(quantize.bit_depth(pixels, bits), expected, atol=1e-6)
        floats = (pixels.astype(np.float64) / 255.0).astype(dtype)
        tol = 2e-3 if dtype == np.float16 else 1e-6
        np.testing.assert_allclose(quantize.bit_depth(floats, bits).numpy().astype(np.float64),
                                   expected, atol=tol)


@functools.lru_cache(maxsize=None)
def _model(bits):
    return small_model(bits=bits, seed=bits)


@st.composite
def attack_cases(draw):
    n = draw(st.integers(1, 6))
    low = draw(st.floats(-1.0, 0.5))
    high = low + draw(st.floats(0.1, 2.0))
    unit = draw(hnp.arrays(np.float64, (n,) + SHAPE, elements=st.floats(0.0, 1.0)))
    # Inside the clip range in exact reals (np.float32(low) may lie below low).
    x = np.clip((low + unit * (high - low)).astype(np.float32),
                projection.round_up(low, np.float32), projection.round_down(high, np.float32))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, CLASSES - 1)))
    eps = draw(st.floats(0.0, 0.6))
    return x, y, eps, (low, high)


class TestAttacks:
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(attack_cases(), st.sampled_from(["fgsm", "pgd", "rfgsm"]), st.sampled_from([2, 8]))
    def test_eps_ball_and_clip_always_hold(self, case, name, bits):
        x, y, eps, clip = case
        params = {"steps": 3} if name == "pgd" else {}
        x_adv = attacks.get(name)(_model(bits), x, y, eps, clip=clip, **params).numpy()
        # No tolerance (issue 26). float64 rounding is monotone, so a result inside the
        # exact ball never fails here; tests/attacks_projection_test.py checks exactly.
        assert np.max(np.abs(x_adv.astype(np.float64) - x.astype(np.float64))) <= eps
        assert np.all(np.abs(x_adv - x) <= np.float32(eps))
        assert x_adv.min() >= clip[0] and x_adv.max() <= clip[1]

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(0, CLASSES - 1)),
           st.integers(0, 2**16))
    def test_label_forms_give_the_same_accuracy(self, y, seed):
        x = np.random.RandomState(seed).uniform(0, 1, (len(y),) + SHAPE).astype(np.float32)
        model = _model(8)
        forms = [y, y[:, None], y.astype(np.int32), np.eye(CLASSES, dtype=np.float32)[y]]
        accs = [evaluate.robustness(model, tf.data.Dataset.from_tensor_slices((x, f)).batch(7),
                                    [0.1]) for f in forms]
        assert all(a == accs[0] for a in accs)
