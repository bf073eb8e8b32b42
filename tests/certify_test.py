"""Tests of tfdisc.certify: reachable box, interval bounds, complete mode, search, IBP training."""
import numpy as np
import pytest
import tensorflow as tf
import larq as lq

from tfdisc import attacks, certify, data, models, quantize
from tfdisc.layers import BitDepthQuantization


def _quantizer_model(bits, value_range=(0.0, 1.0), shape=(4,), dtype="float32"):
    inputs = tf.keras.Input(shape, dtype=dtype)
    outputs = BitDepthQuantization(bits, value_range=value_range)(inputs)
    return tf.keras.Model(inputs, outputs)


def _layer_out(bits, value_range, x):
    return quantize.bit_depth(tf.constant(x), bits, value_range=value_range).numpy()


# --- reachable box ---------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)])
def test_box_at_eps_zero_is_the_layer_output_even_on_edges(bits, value_range):
    low, high = value_range
    x = (np.arange(256, dtype=np.float32) / 255.0 * (high - low) + low).astype(np.float32)
    box = certify.input_box(_quantizer_model(bits, value_range, (256,)), x[None], 0.0,
                            clip=value_range)
    expected = _layer_out(bits, value_range, x[None])
    assert np.all(box.lower <= expected) and np.all(expected <= box.upper)
    np.testing.assert_allclose(box.lower, expected, rtol=1e-6, atol=1e-6 * (high - low))
    np.testing.assert_array_equal(box.lo_bin, box.hi_bin)
    assert box.num_free()[0] == 0


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_box_contains_every_float32_image_in_the_ball(bits, value_range):
    rng = np.random.default_rng(bits)
    low, high = value_range
    # Pixels on the 8-bit grid (exact bin edges included) and random ones.
    x = np.concatenate([np.arange(256) / 255.0, rng.random(256)]) * (high - low) + low
    x = x.astype(np.float32)[None]
    model = _quantizer_model(bits, value_range, (512,))
    for eps in [1 / 255, 28 / 255, 0.1, 0.25 * (high - low) / 2]:
        box = certify.input_box(model, x, eps, clip=value_range)
        x64 = x.astype(np.float64)
        # Extreme float32 images of the ball, nudged to the float32 grid inside it.
        for real in (x64 - eps, x64 + eps):
            cand = np.clip(real, low, high).astype(np.float32)
            inside = np.abs(cand.astype(np.float64) - x64) <= eps
            cand = np.where(inside, cand, np.nextafter(cand, x))
            out = _layer_out(bits, value_range, cand)
            assert np.all(box.lower <= out) and np.all(out <= box.upper)
        for _ in range(5):
            cand = np.clip(x64 + rng.uniform(-eps, eps, x.shape), low, high).astype(np.float32)
            cand = np.where(np.abs(cand - x64) <= eps, cand, x)
            out = _layer_out(bits, value_range, cand)
            assert np.all(box.lower <= out) and np.all(out <= box.upper)


def test_box_is_exact_away_from_edges_and_widens_at_an_edge():
    model = _quantizer_model(2, shape=(3,))
    step = 64 / 255.0
    # 0 and 1 cannot move at 0.1 with 2 bits; 0.2 reaches the edge 64/255 only with eps > 0.051.
    x = np.array([[0.0, 1.0, 0.2]], np.float32)
    box = certify.input_box(model, x, 0.1)
    np.testing.assert_array_equal(box.lo_bin, [[0, 3, 0]])
    np.testing.assert_array_equal(box.hi_bin, [[0, 3, 1]])
    # ε landing exactly on the edge 64/255: the upper bin must be included (widened).
    x = np.array([[32 / 255.0]], np.float32)
    box = certify.input_box(_quantizer_model(2, shape=(1,)), x, 32 / 255.0)
    assert box.hi_bin[0, 0] == 1 and box.lo_bin[0, 0] == 0
    # ... and a realized image in the upper bin must exist and pass the layer.
    image = certify.realize(box, 0, np.array([1]))
    if image is not None:
        assert abs(float(image[0]) - float(x[0, 0])) <= 32 / 255.0
        assert _layer_out(2, (0.0, 1.0), image)[0] == box.table[1]
    del step


def test_box_of_integer_images_matches_enumeration():
    bits, value_range = 3, (0.0, 1.0)
    model = _quantizer_model(bits, value_range, (256,), dtype="uint8")
    x = np.arange(256, dtype=np.uint8)[None]
    with pytest.raises(TypeError, match="Integer images"):
        certify.input_box(_quantizer_model(bits, value_range, (256,)), x, 0.1)
    for eps in [0.0, 5 / 255, 0.1, 32 / 255]:
        box = certify.input_box(model, x, eps)
        e = eps * 255.0
        for i in range(256):
            reach = [j for j in range(256) if abs(j - i) <= e + 1e-9]
            outs = _layer_out(bits, value_range, np.array(reach, np.int32))
            assert box.lower[0, i] == outs.min() and box.upper[0, i] == outs.max(), (i, eps)


def test_box_rejects_bad_input():
    model = _quantizer_model(2)
    with pytest.raises(ValueError, match="eps"):
        certify.input_box(model, np.zeros((1, 4), np.float32), -0.1)
    with pytest.raises(TypeError, match="numeric"):
        certify.input_box(model, np.array([["a"] * 4]), 0.1)


# --- interval bounds -------------------------------------------------------------------------

@pytest.mark.parametrize("name", models.available())
@pytest.mark.parametrize("precision", models.PRECISIONS)
def test_every_zoo_model_is_supported(name, precision):
    kwargs = {"fcn1": dict(width=16), "fcn2": dict(width=16), "alexnet_cifar": dict(width=4),
              "cnn_small": dict(width=4), "resnet20": dict(width=4), "alexnet": dict(width=3, input_shape=(67, 67, 3))}[name]
    certify.check_model(models.build(name, precision=precision, input_bits=2, **kwargs))


def test_unsupported_layer_is_named():
    inputs = tf.keras.Input((4,))
    x = BitDepthQuantization(2)(inputs)
    x = tf.keras.layers.LayerNormalization(name="my_norm")(x)
    outputs = tf.keras.layers.Dense(3)(x)
    with pytest.raises(certify.UnsupportedLayerError, match="my_norm.*LayerNormalization"):
        certify.check_model(tf.keras.Model(inputs, outputs))


def _randomize_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 1, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n))
            if layer.gamma is not None:  # negative γ included
                layer.gamma.assign(rng.normal(0, 1, n))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0, 0.5, n))


@pytest.mark.parametrize("name,kwargs", [
    ("fcn2", dict(width=32, depth=3)),
    ("alexnet_cifar", dict(width=4, depth=1, input_shape=(8, 8, 3))),
    ("resnet20", dict(width=4, depth=8, input_shape=(8, 8, 3), num_classes=10)),
])
@pytest.mark.parametrize("precision", models.PRECISIONS)
def test_bounds_contain_sampled_outputs(name, kwargs, precision):
    rng = np.random.default_rng(0)
    model = models.build(name, precision=precision, input_bits=2, **kwargs)
    _randomize_bn(model, rng)
    shape = model.input_shape[1:]
    x = rng.random((4,) + shape).astype(np.float32)
    y = rng.integers(0, 10, 4)
    box = certify.input_box(model, x, 0.1)
    lo, hi = certify.logit_bounds(model, box.lower, box.upper)
    margin = certify.margin_upper(model, box.lower, box.upper, y).numpy()
    lo, hi = lo.numpy(), hi.numpy()
    samples = 16  # random corners and interior points of the box, in one batch
    bins = box.lo_bin[None] + np.floor(rng.random((samples,) + box.lo_bin.shape) * (
        box.hi_bin - box.lo_bin + 1)[None]).astype(np.int32)
    z = model(box.table[bins].reshape((-1,) + shape), training=False).numpy().reshape(
        samples, 4, -1)
    assert np.all(lo[None] <= z) and np.all(z <= hi[None])
    m = z - np.take_along_axis(z, np.broadcast_to(y[None, :, None], (samples, 4, 1)), axis=2)
    assert np.all(m <= margin[None])
    # The margin form is never looser than separate logit bounds.
    naive = hi - lo[np.arange(4), y][:, None]
    naive[np.arange(4), y] = 0.0
    assert np.all(margin <= naive + 1e-9)


def test_binary_conv_pads_with_pad_values_after_the_sign():
    inputs = tf.keras.Input((5, 5, 1))
    x = BitDepthQuantization(8)(inputs)
    outputs = lq.layers.QuantConv2D(1, 3, padding="same", pad_values=1.0,
                                    input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                    use_bias=False)(x)
    outputs = tf.keras.layers.Flatten()(outputs)
    model = tf.keras.Model(inputs, outputs)
    x = np.full((1, 5, 5, 1), 0.3, np.float32)
    box = certify.input_box(model, x, 0.0)
    lo, hi = certify.logit_bounds(model, box.lower, box.upper)
    z = model(x).numpy()
    # Exact up to the rounding allowance; padding with 0 instead of +1 would move edges by ≥ 1.
    np.testing.assert_allclose(lo.numpy(), z, atol=1e-2)
    np.testing.assert_allclose(hi.numpy(), z, atol=1e-2)


# --- trained models on real MNIST -------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = data.load_arrays("mnist", "train", data_dir=mnist_dir)
    xt, yt = data.load_arrays("mnist", "test", data_dir=mnist_dir)
    return (x[:4000].astype(np.float32) / 255.0, y[:4000],
            xt[:150].astype(np.float32) / 255.0, yt[:150])


def _train(mnist, precision, bits, eps, width=48, depth=2, epochs=2, seed=0):
    tf.keras.utils.set_random_seed(seed)
    x, y, _, _ = mnist
    model = models.build("fcn2", precision=precision, input_bits=bits, width=width, depth=depth)
    trainer = certify.CertifiedTraining(model, eps, ramp_start=10, ramp_steps=40)
    trainer.compile(tf.keras.optimizers.Adam(2e-3))
    history = trainer.fit(x, y, batch_size=100, epochs=epochs, verbose=0)
    return model, history


@pytest.fixture(scope="module")
def trained(mnist):
    out = {}
    for precision, bits in [("full", 2), ("binary", 2), ("full", 8), ("binary", 8)]:
        out[(precision, bits)] = _train(mnist, precision, bits, 0.1)[0]
    return out


def test_certified_training_reaches_verified_examples(mnist):
    _, history = _train(mnist, "full", 2, 0.1, epochs=2)
    verified = history.history["ibp_verified"]
    assert history.history["eps"][-1] > 0.05
    assert verified[-1] > 0.3  # IBP-verified fraction of training batches at the ramped ε


def test_certified_training_rejects_bad_arguments():
    model = models.build("fcn2", width=8, depth=1)
    with pytest.raises(ValueError, match="eps"):
        certify.CertifiedTraining(model, -1.0)
    with pytest.raises(ValueError, match="kappa_end"):
        certify.CertifiedTraining(model, 0.1, kappa_end=2.0)


@pytest.mark.parametrize("key", [("full", 2), ("binary", 2), ("full", 8), ("binary", 8)])
def test_certified_examples_survive_pgd_search_and_transfer(trained, mnist, key):
    model = trained[key]
    _, _, x, y = mnist
    eps = 0.1
    # BNNs go to the exact verifier (auto); half a second per example keeps the 8-bit one short.
    cert = certify.certify(model, x, y, eps, complete_max_free=8, max_nodes=64,
                           search_params=dict(iterations=10), time_limit=0.5)
    certified = cert.status == "certified"
    assert certified.sum() >= 10, cert.counts()
    assert cert.counts()["counterexample"] > 0  # the test must have something to break
    broken = np.zeros(len(y), bool)
    for restart in range(3):
        tf.random.set_seed(restart)
        x_adv = attacks.pgd(model, x, y, eps, step_size=attacks.default_step_size(eps, 10),
                            steps=10, random_start=True)
        broken |= model(x_adv).numpy().argmax(1) != y
    x_q = certify.quantized_search(model, x, y, eps, restarts=1, iterations=10)
    broken |= model(x_q).numpy().argmax(1) != y
    source = trained[("binary" if key[0] == "full" else "full", key[1])]
    x_t = attacks.pgd(source, x, y, eps, step_size=attacks.default_step_size(eps, 10), steps=10)
    broken |= model(x_t).numpy().argmax(1) != y
    assert not np.any(certified & broken)
    assert broken.sum() > 0  # the attacks do work on this model
    # Every counterexample is a real misclassified image in the ball.
    for index, image in cert.counterexamples.items():
        assert np.max(np.abs(image.astype(np.float64) - x[index])) <= eps
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert model(image[None]).numpy().argmax() != y[index]


def test_search_returns_valid_images_without_gradients(trained, mnist):
    model = trained[("full", 2)]
    _, _, x, y = mnist
    eps = 0.2
    x_adv = certify.quantized_search(model, x[:100], y[:100], eps, iterations=10)
    assert certify.quantized_search.uses_gradient is False
    assert np.max(np.abs(x_adv.astype(np.float64) - x[:100])) <= eps
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    changed = np.any(x_adv != x[:100], axis=(1, 2, 3))
    pred = model(x_adv).numpy().argmax(1)
    assert np.all(pred[changed] != y[:100][changed])
    assert np.mean(pred != y[:100]) > np.mean(model(x[:100]).numpy().argmax(1) != y[:100])
    with pytest.raises(ValueError, match="iterations"):
        certify.quantized_search(model, x[:2], y[:2], eps, iterations=0)


def test_complete_mode_agrees_with_exhaustive_enumeration(mnist, mnist_dir):
    model, _ = _train(mnist, "full", 2, 0.0, width=32, depth=3, epochs=1)  # not trained for IBP
    x, y = data.load_arrays("mnist", "test", data_dir=mnist_dir)
    x, y = x[:1000].astype(np.float32) / 255.0, y[:1000]
    eps = 0.05
    box = certify.input_box(model, x, eps)
    small = np.nonzero(box.num_free() <= 8)[0][:30]
    assert len(small) >= 10
    cert = certify.certify(model, x[small], y[small], eps, complete_max_free=8, max_nodes=1024,
                           enumerate_max=0, search=False, method="branch")
    assert not np.any(cert.status == "unknown"), cert.counts()
    truth = certify.exhaustive(model, x[small], y[small], eps)
    np.testing.assert_array_equal(cert.status == "certified", truth)
    branched = cert.decided_by == "branch"
    assert branched.sum() >= 3  # the bounds alone do not decide these: branching does
    # The same examples decided by checking every point of their boxes.
    enum = certify.certify(model, x[small], y[small], eps, complete_max_free=8, max_nodes=256,
                           search=False, method="branch")
    assert np.sum(enum.decided_by == "enumeration") >= 3
    np.testing.assert_array_equal(enum.status == "certified", truth)
    # And by the ReLU MILP (the default for this model), on real MNIST images.
    milp = certify.certify(model, x[small], y[small], eps, enumerate_max=0, search=False)
    assert milp.method == "exact" and not np.any(milp.status == "unknown"), milp.counts()
    assert np.sum(milp.decided_by == "exact") >= 3
    np.testing.assert_array_equal(milp.status == "certified", truth)


def test_certified_accuracy_api_matches_per_example_status(trained, mnist):
    model = trained[("binary", 2)]
    _, _, x, y = mnist
    ds = data.from_arrays((x[:120] * 255).round().astype(np.uint8), y[:120], batch_size=60)
    acc, certs = certify.robustness(model, ds, [0.0, 0.1], return_examples=True, search=False,
                                    complete_max_free=0)
    assert set(acc) == {0.0, 0.1}
    status0 = np.concatenate([c.status for c in certs[0.0]])
    clean = np.mean(model(tf.constant(x[:120])).numpy().argmax(1) == y[:120])
    assert acc[0.0] == pytest.approx(clean, abs=1 / 120)  # ε = 0 reproduces clean accuracy
    assert acc[0.1] <= acc[0.0]
    assert np.mean(status0 == "certified") == acc[0.0]


def test_integer_images_certify_end_to_end():
    rng = np.random.default_rng(1)
    inputs = tf.keras.Input((12,), dtype="uint8")
    x = BitDepthQuantization(2)(inputs)
    x = tf.keras.layers.Dense(16, activation="relu")(x)
    outputs = tf.keras.layers.Dense(3)(x)
    model = tf.keras.Model(inputs, outputs)
    images = rng.integers(0, 256, (40, 12)).astype(np.uint8)
    labels = model(images).numpy().argmax(1)
    cert = certify.certify(model, images, labels, 8 / 255, complete_max_free=12)
    assert cert.counts()["unknown"] == 0
    truth = certify.exhaustive(model, images, labels, 8 / 255)
    np.testing.assert_array_equal(cert.status == "certified", truth)
    for index, image in cert.counterexamples.items():
        assert image.dtype == np.uint8 and np.max(np.abs(image.astype(int) - images[index])) <= 8
        assert model(image[None]).numpy().argmax() != labels[index]


def test_images_with_no_free_pixel_are_decided_by_evaluation():
    """Black and white pixels cannot move under 2-bit input at ε=0.1: the box is one point.

    (A real MNIST test image, 9051, has no free pixel at ε=0.1; the complete mode crashed on it.)
    """
    rng = np.random.default_rng(3)
    inputs = tf.keras.Input((12,))
    x = BitDepthQuantization(2)(inputs)
    x = tf.keras.layers.Dense(16, activation="relu")(x)
    outputs = tf.keras.layers.Dense(3)(x)
    model = tf.keras.Model(inputs, outputs)
    images = rng.integers(0, 2, (30, 12)).astype(np.float32)  # only 0 and 1 pixels
    labels = model(images).numpy().argmax(1)
    wrong = (labels + 1) % 3
    for y, want in ((labels, "certified"), (wrong, "counterexample")):
        cert = certify.certify(model, images, y, 0.1, complete_max_free=4, search=False)
        assert cert.counts()["unknown"] == 0
        assert np.all(cert.status == want)
        truth = certify.exhaustive(model, images, y, 0.1)
        np.testing.assert_array_equal(cert.status == "certified", truth)
    # Exact ties between logits 0 and 1: the bounds cannot certify label 0, so the complete
    # mode evaluates the one point (this crashed when no pixel was free).
    kernel, bias = model.layers[-1].get_weights()
    kernel[:, 1], bias[1] = kernel[:, 0], bias[0]
    model.layers[-1].set_weights([kernel, bias + np.array([0, 0, -100], np.float32)])
    cert = certify.certify(model, images, np.zeros(len(images), np.int64), 0.1,
                           complete_max_free=4, search=False)
    assert np.all(cert.status == "unknown") and np.all(cert.nodes == 1)
