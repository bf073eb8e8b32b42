"""Custom bin edges of the input quantizer (issue 30): eq. 2 reproduced, bad edges refused, the
reachable box and certification exact under any edges, edges chosen from data."""
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfdisc import certify, data, layers, models, quantize
from tfdisc.convert import layers as packed_layers
from tests.testing_utils import box_points

INTENSITIES = np.arange(256)


def probe_floats():
    """Every k/255, points between and around them, random values, the ends, NaN and ±inf."""
    rng = np.random.default_rng(0)
    k = INTENSITIES / 255.0
    return np.concatenate([k, k + 0.4 / 255, k - 0.4 / 255, k + 1e-7, k - 1e-7,
                           rng.uniform(-0.1, 1.1, 4000), [0.0, 1.0, -5.0, 5.0, np.nan,
                                                          np.inf, -np.inf]]).astype(np.float32)


@pytest.mark.parametrize("bits", range(1, 9))
def test_eq2_edges_reproduce_eq2_bit_for_bit(bits):
    edges = quantize.eq2_edges(bits)
    x = probe_floats()
    for value_range, scale in (((0.0, 1.0), 1.0), ((-1.0, 1.0), 2.0), ((0.0, 255.0), 255.0)):
        xs = x * scale + value_range[0]
        for dtype in (tf.float32, tf.float64):
            want = quantize.bit_depth(tf.constant(xs, dtype), bits, value_range=value_range)
            got = quantize.bit_depth(tf.constant(xs, dtype), bits, value_range=value_range,
                                     edges=edges)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    ints = tf.constant(INTENSITIES, tf.uint8)
    np.testing.assert_array_equal(quantize.bit_depth(ints, bits, edges=edges).numpy(),
                                  quantize.bit_depth(ints, bits).numpy())
    # A layer given eq. 2's edges is the eq. 2 layer (same config as ever).
    layer = layers.BitDepthQuantization(bits, edges=list(edges))
    assert layer.edges is None and "edges" not in layer.get_config()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(bits=st.integers(1, 4), data=st.data())
def test_every_intensity_maps_to_the_middle_of_its_bin(bits, data):
    edges = sorted(data.draw(st.sets(st.integers(1, 255), min_size=2**bits - 1,
                                     max_size=2**bits - 1)))
    edges = [e - data.draw(st.sampled_from([0.0, 0.25, 0.5])) for e in edges]
    bounds = np.array([0.0] + edges + [256.0])
    bucket = np.searchsorted(bounds, INTENSITIES, side="right") - 1
    want = (bounds[bucket] + bounds[bucket + 1]) / 2.0
    got_int = quantize.bit_depth(tf.constant(INTENSITIES, tf.uint8), bits, edges=edges).numpy()
    np.testing.assert_allclose(got_int * 255.0, want, atol=1e-4)
    got = quantize.bit_depth(tf.constant(INTENSITIES / 255.0, tf.float32), bits,
                             edges=edges).numpy()
    np.testing.assert_allclose(got * 255.0, want, atol=1e-4)
    # Exact levels (no straight-through jitter): at most 2**bits, each its own fixed point.
    levels = np.unique(quantize.bit_depth(tf.constant(INTENSITIES / 255.0, tf.float32), bits,
                                          edges=edges, gradient="none").numpy())
    assert len(levels) <= 2**bits
    np.testing.assert_array_equal(quantize.bit_depth(tf.constant(levels), bits, edges=edges,
                                                     gradient="none").numpy(), levels)


@pytest.mark.parametrize("edges, message", [
    ([192, 64, 128], "increasing, got 192.0 before 64.0"),
    ([64, 64, 128], "duplicate edge 64.0"),
    ([0, 64, 128], r"\(0, 255\]"),
    ([64, 128, 256], r"\(0, 255\]"),
    ([-3, 64, 128], r"\(0, 255\]"),
    ([64, float("nan"), 128], r"\(0, 255\]"),
    ([64, 128], "must hold 3 edge"),
    ([64, 128, 160, 192], "must hold 3 edge"),
    ("64,128,192", "sequence of 3 numbers"),
    ([64, "a", 128], "must hold numbers"),
    ([64, True, 128], "must hold numbers"),
])
def test_bad_edges_are_refused_with_the_problem_named(edges, message):
    for call in (lambda: quantize.check_edges(edges, 2),
                 lambda: quantize.bit_depth(tf.zeros([3]), 2, edges=edges),
                 lambda: layers.BitDepthQuantization(2, edges=edges),
                 lambda: models.build("fcn2", input_bits=2, input_edges=edges, width=4, depth=1)):
        with pytest.raises(ValueError, match=message):
            call()


def test_layer_with_custom_edges_saves_loads_and_says_which_quantizer(tmp_path):
    model = models.build("fcn2", input_bits=1, input_edges=[100.5], width=8, depth=1,
                         input_shape=(4, 4, 1), num_classes=3)
    layer = model.layers[1]
    assert layer.describe() == {"name": "custom_edges", "bits": 1, "edges": [100.5]}
    assert layers.BitDepthQuantization(1).describe() == {"name": "eq2", "bits": 1}
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path, compile=False, safe_mode=True)
    assert loaded.layers[1].edges == (100.5,)
    x = np.random.default_rng(1).uniform(0, 1, (16, 4, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    q = layer(tf.constant([[100.0 / 255, 101.0 / 255]])).numpy() * 255
    np.testing.assert_allclose(q, [[50.25, 178.25]], atol=1e-4)


def test_packed_quantizer_keeps_custom_edges():
    plain = layers.BitDepthQuantization(2, edges=[40, 128, 200])
    packed = packed_layers.PackedBitDepthQuantization.from_config(plain.get_config())
    x = tf.constant(probe_floats())
    np.testing.assert_array_equal(packed(x).numpy(), plain(x).numpy())


def test_straight_through_gradient_with_custom_edges():
    x = tf.constant([0.2, 0.5, 0.9])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = quantize.bit_depth(x, 1, edges=[100])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [1.0, 1.0, 1.0])


def _edge_model(seed, edges, bits):
    tf.keras.utils.set_random_seed(seed)
    return models.build("fcn2", input_bits=bits, input_edges=edges, width=12, depth=2,
                        input_shape=(3, 4, 1), num_classes=3)


@pytest.mark.parametrize("bits, edges", [(1, [77.5]), (2, [30, 101.25, 140])])
def test_reachable_box_and_realized_images_under_custom_edges(bits, edges):
    model = _edge_model(0, edges, bits)
    layer = model.layers[1]
    rng = np.random.default_rng(bits)
    x = rng.uniform(0, 1, (6, 3, 4, 1)).astype(np.float32)
    x[0, 0, :2, 0] = [77.5 / 255, 30 / 255]  # pixels exactly on an edge
    for eps in (0.0, 0.05, 0.2):
        box = certify.input_box(model, x, eps)
        grid = np.linspace(-1, 1, 4001)
        for r in range(len(x)):
            pts = np.clip(x[r].reshape(-1)[:, None].astype(np.float64) + eps * grid, 0, 1)
            q = layer.quantize(tf.constant(pts.astype(np.float32)), gradient="none").numpy()
            for p in range(pts.shape[0]):
                reach = set(np.round(q[p] * 255, 3))
                lo, hi = box.lo_bin[r].reshape(-1)[p], box.hi_bin[r].reshape(-1)[p]
                assert reach <= set(np.round(box.table[lo:hi + 1] * 255, 3))
                assert len(reach) == hi - lo + 1  # no level the ball cannot reach
            for bins in (box.lo_bin[r], box.hi_bin[r]):
                image = certify.realize(box, r, bins)
                assert image is not None
                assert np.all(np.abs(image.astype(np.float64) - x[r]) <= eps)
                np.testing.assert_array_equal(
                    layer.quantize(tf.constant(image), gradient="none").numpy(), box.table[bins])


def test_certificates_match_enumeration_under_custom_edges():
    """Every status on a tiny model with a custom 1-bit edge agrees with enumerating the box."""
    model = _edge_model(3, [90.0], 1)
    x = np.random.default_rng(3).uniform(0, 1, (12, 3, 4, 1)).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(1)
    y[:3] = (y[:3] + 1) % 3  # a few clean errors too
    eps = 0.15
    cert = certify.certify(model, x, y, eps, method="branch")
    box = certify.input_box(model, x, eps)
    for r, status in enumerate(cert.status):
        points = np.stack([box.table[b].reshape(x.shape[1:]) for b in box_points(box, r)])
        wrong = model.predict(points, verbose=0).argmax(1) != y[r]
        if status == "certified":
            assert not wrong.any()
        elif status == "counterexample":
            assert wrong.any()


def test_edges_from_data_move_away_from_crowded_intensities():
    # Pixels crowd at 128 (eq. 2's 1-bit edge) and at 0/255: the edge moves to the emptiest
    # place within 64..192 where ±eps covers the fewest pixels.
    rng = np.random.default_rng(0)
    images = np.concatenate([np.full(500, 128), np.zeros(4000), np.full(4000, 255),
                             rng.integers(60, 110, 300)]).astype(np.uint8)
    edge, = quantize.edges_from_data(images, 1, 10 / 255)
    assert 64 < edge < 192 and abs(edge - 128) > 10 and not 50 <= edge <= 120
    free = np.sum(np.abs(images.astype(float) - edge) <= 10)
    assert free < np.sum(np.abs(images.astype(float) - 128) <= 10)
    # Floats on the value range give the same edges; eq. 2's where nothing is crowded.
    assert quantize.edges_from_data(images / 255.0, 1, 10 / 255) == (edge,)
    assert quantize.edges_from_data(np.zeros(10, np.uint8), 2, 0.05) == quantize.eq2_edges(2)
    edges = quantize.edges_from_data(rng.integers(0, 256, 5000).astype(np.uint8), 3, 0.02)
    assert quantize.check_edges(edges, 3) == edges


def test_edges_from_data_on_mnist_one_bit(mnist_dir):
    x, _ = data.load_arrays("mnist", "train", data_dir=mnist_dir)
    x = x[:2000]
    edge, = quantize.edges_from_data(x, 1, 0.3)
    assert 64 < edge < 192
    free = lambda e: np.mean(np.sum(np.abs(x.reshape(len(x), -1) / 255.0 - e / 255.0) <= 0.3, 1))  # noqa: E731
    assert free(edge) <= free(128.0)


@pytest.mark.parametrize("images, eps, message", [
    (np.zeros(0, np.uint8), 0.1, "empty"),
    (np.zeros(4, np.uint8), -0.1, "eps"),
    (np.zeros(4, np.uint8), float("nan"), "eps"),
    (np.array(["a"]), 0.1, "numeric"),
])
def test_edges_from_data_refuses_bad_input(images, eps, message):
    with pytest.raises(ValueError, match=message):
        quantize.edges_from_data(images, 1, eps)


def test_exported_model_keeps_custom_edges(tmp_path):
    """SavedModel and stock TFLite (builtin ops only) quantize with the custom edges, float32 and
    uint8 signatures alike: the certified model is the deployed model."""
    from tfdisc import export  # pylint: disable=import-outside-toplevel
    model = models.build("fcn2", input_bits=2, input_edges=[40, 128.5, 200], width=8, depth=1,
                         input_shape=(4, 4, 1), num_classes=3)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 4, 4, 1)).astype(np.uint8)
    for dtype in ("float32", "uint8"):
        paths = export.export(model, str(tmp_path / dtype), ["saved_model", "tflite"],
                              input_dtype=dtype)
        for name, diff in export.compare(model, paths, pixels).items():
            assert diff["argmax_agreement"] == 1.0, name
            assert diff["max_logit_diff"] < 1e-5, name
