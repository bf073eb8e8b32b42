"""The ε-ball holds exactly (issue 26): ``|x_adv − x| ≤ ε`` in exact real arithmetic.

The guarantee checked here (``tfdisc.projection``): for every element,
``|x_adv − x| ≤ ε`` with ``x_adv``, ``x`` and ε taken as the exact reals their
floats (and the Python float ε) denote, checked with ``fractions.Fraction``;
hence also the float32 check ``np.abs(x_adv - x) <= np.float32(eps)``. And
``x_adv`` lies in ``clip`` (exact reals). Before the fix PGD left pixels up to
2.4e-8 outside the ball, and ``project`` rounded ``x ± ε`` outwards.
"""
import functools
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfdisc import attacks, projection

from tests.testing_utils import CLASSES, SHAPE, small_model

CLIPS = [None, (0.0, 1.0), (0.0, 255.0), (-1.0, 1.0), (0.1, 0.9)]
EPS = st.one_of(st.sampled_from([0.0, 0.1, 0.3, 8 / 255, 2 / 255, 1.0, 16.0, 1e-39, 1e-45, 1e-7,
                                 3.4e38, 1e300]),
                st.floats(0.0, 300.0))


def assert_in_ball(x_adv, x, eps, clip):
    """The exact checks, element by element."""
    x_adv, x = np.asarray(x_adv), np.asarray(x)
    assert x_adv.dtype == x.dtype and x_adv.shape == x.shape
    # The float32 check of the issue (float32 arithmetic throughout).
    with np.errstate(over="ignore"):
        e = x.dtype.type(eps)
    assert np.all(np.abs(x_adv - x) <= e)
    # Exact real arithmetic, against the Python float ε itself.
    for a, b in zip(x_adv.ravel().tolist(), x.ravel().tolist()):
        assert abs(Fraction(a) - Fraction(b)) <= Fraction(eps), (a, b, eps)
        if clip is not None and clip[0] <= b <= clip[1]:
            assert Fraction(clip[0]) <= Fraction(a) <= Fraction(clip[1]), (a, b, clip)


@st.composite
def projection_cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float16, np.float64]))
    clip = draw(st.sampled_from(CLIPS))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    low, high = clip or draw(st.sampled_from([(0.0, 1.0), (-1e4, 1e4), (0.0, 1e-30)]))
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(low, high)))
    x = np.clip(x.astype(dtype), projection.round_up(low, dtype), projection.round_down(high, dtype))
    eps = draw(EPS)
    # Candidates: on, near and far beyond both bounds, or anywhere.
    offsets = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from(
        [-3.0, -1.0000001, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0000001, 3.0])))
    with np.errstate(over="ignore", invalid="ignore"):
        x_adv = (x.astype(np.float64) + offsets * eps).astype(dtype)
    x_adv = np.where(np.isfinite(x_adv), x_adv, x)
    return x_adv, x, eps, clip


class TestProject:
    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(projection_cases())
    @example((np.array([0.98], np.float32), np.array([0.9], np.float32), 0.08, (0.0, 1.0)))
    @example((np.array([200.1], np.float32), np.array([200.3], np.float32), 0.1, (0.0, 255.0)))
    @example((np.array([0.0], np.float32), np.array([1e-40], np.float32), 0.0, None))
    @example((np.array([0.0], np.float32), np.array([2e-38], np.float32), 1.5e-38, None))
    def test_exact_ball_and_clip(self, case):
        x_adv, x, eps, clip = case
        got = attacks.project(tf.constant(x_adv), tf.constant(x), eps, clip).numpy()
        assert_in_ball(got, x, eps, clip)
        # The same inside a tf.function (grappler may not reorder the exact sums).
        graph = tf.function(attacks.project)(tf.constant(x_adv), tf.constant(x), eps, clip)
        np.testing.assert_array_equal(graph.numpy(), got)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(projection_cases())
    @example((np.array([0.0]), np.array([1e-300]), 0.1, None))
    @example((np.array([0.0]), np.array([0.0]), 1e-300, None))
    def test_bounds_are_the_tightest(self, case):
        """Each bound is the float nearest ``x ± ε`` inside: one step further breaks the ball."""
        _, x, eps, clip = case
        low, high = (b.numpy() for b in projection.ball(tf.constant(x), eps, clip))
        assert_in_ball(low, x, eps, clip)
        assert_in_ball(high, x, eps, clip)
        tiny = 2.0**-960  # float64 only: an ε below it counts as 0, such pixels stay put
        e = Fraction(0 if x.dtype == np.float64 and eps < tiny else eps)
        for lo, hi, v in zip(low.ravel(), high.ravel(), x.ravel()):
            if x.dtype == np.float64 and 0 < abs(v) < tiny:
                assert lo == hi == v
                continue
            below = np.nextafter(lo, lo.dtype.type(-np.inf))
            above = np.nextafter(hi, hi.dtype.type(np.inf))
            assert (not np.isfinite(below) or Fraction(float(v)) - Fraction(float(below)) > e
                    or (clip is not None and float(below) < clip[0]))
            assert (not np.isfinite(above) or Fraction(float(above)) - Fraction(float(v)) > e
                    or (clip is not None and float(above) > clip[1]))

    def test_old_projection_broke_the_ball(self):
        """The issue's case: ``x − float32(ε)`` rounded in float32 lies outside the ball."""
        x = (np.arange(26, 256) / 255.0).astype(np.float32)
        old = x - np.float32(0.1)  # tf.clip_by_value's lower bound before the fix
        outside = [Fraction(float(a)) - Fraction(float(b)) > Fraction(0.1) for a, b in zip(x, old)]
        assert sum(outside) > 100  # the check below can fail
        got = attacks.project(tf.zeros_like(x), tf.constant(x), 0.1, (0.0, 1.0)).numpy()
        assert_in_ball(got, x, 0.1, (0.0, 1.0))
        assert np.all(got >= old)

    def test_clip_without_a_float_in_it(self):
        with pytest.raises(ValueError, match="contains no float32 value"):
            attacks.project(tf.constant([0.5]), tf.constant([0.5]), 0.1, (0.1, 0.1 + 1e-12))


@functools.lru_cache(maxsize=None)
def _any_size_model():
    """A tiny untrained model taking images of any height and width."""
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((None, None, 2))
    hidden = tf.keras.layers.Conv2D(4, 2, padding="same", activation="relu")(inputs)
    outputs = tf.keras.layers.Dense(CLASSES)(tf.keras.layers.GlobalAveragePooling2D()(hidden))
    return tf.keras.Model(inputs, outputs)


@st.composite
def attack_cases(draw):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    clip = draw(st.sampled_from([(0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)]))
    unit = draw(hnp.arrays(np.float64, (n, h, w, 2), elements=st.floats(0.0, 1.0)))
    x = np.clip((clip[0] + unit * (clip[1] - clip[0])).astype(np.float32), clip[0], clip[1])
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, CLASSES - 1)))
    eps = draw(st.one_of(st.sampled_from([0.1, 0.3, 8 / 255, 2.0, 16.0]),
                         st.floats(0.0, 0.5 * (clip[1] - clip[0]))))
    return x, y, eps, clip


class TestAttacks:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(attack_cases(), st.sampled_from(["fgsm", "rfgsm", "pgd"]))
    def test_every_attack_stays_in_the_exact_ball(self, case, name):
        x, y, eps, clip = case
        params = {"steps": 4, "step_size": 0.7 * eps + 1e-3} if name == "pgd" else {}
        x_adv = attacks.get(name)(_any_size_model(), x, y, eps, clip=clip, **params).numpy()
        assert_in_ball(x_adv, x, eps, clip)

    @pytest.mark.parametrize("clip", [(0.0, 1.0), (0.0, 255.0)])
    def test_pgd_many_images(self, clip):
        """The issue's measurement: PGD on many images, none outside the exact ball."""
        rng = np.random.RandomState(0)
        scale = clip[1]
        x = (rng.randint(0, 256, (64,) + SHAPE) / 255.0 * scale).astype(np.float32)
        y = rng.randint(0, CLASSES, 64)
        eps = 0.1003 * scale  # x ± ε is not a float32 for these x
        x_adv = attacks.pgd(_fcn(clip), x, y, eps, step_size=0.03 * scale, steps=5,
                            clip=clip).numpy()
        assert_in_ball(x_adv, x, eps, clip)

    def test_quantized_search_is_projected(self):
        x = np.random.RandomState(1).uniform(0, 1, (4,) + SHAPE).astype(np.float32)
        y = np.arange(4) % CLASSES
        x_adv = attacks.get("quantized_search")(_fcn((0.0, 1.0), bits=2), x, y, 0.1,
                                                iterations=3).numpy()
        assert_in_ball(x_adv, x, 0.1, (0.0, 1.0))


@functools.lru_cache(maxsize=None)
def _fcn(clip, bits=8):
    model = small_model(bits=bits, train=False)
    if clip == (0.0, 1.0):
        return model
    # The same architecture on the 0–255 scale.
    scaled = tf.keras.Sequential([tf.keras.layers.Rescaling(1 / 255.0, input_shape=SHAPE), model])
    return scaled
