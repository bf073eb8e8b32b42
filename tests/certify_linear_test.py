"""Linear bounds by back-substitution (issue 28, step 1): tfdisc.certify.linear."""
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import certify
from tfdisc.certify import linear
from tfdisc.layers import BitDepthQuantization

L = tf.keras.layers


def _randomize_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 2.0, c), rng.normal(0, 0.5, c),
                               rng.normal(0, 0.5, c), rng.uniform(0.2, 2.0, c)])


def _dense(seed):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([
        L.InputLayer((4, 4, 1)), BitDepthQuantization(2), L.Flatten(),
        L.Dense(24, activation="relu"), L.Dense(16, use_bias=False), L.BatchNormalization(),
        L.ReLU(), L.Dropout(0.5), L.Dense(12), L.Activation("relu"), L.Dense(4)])
    _randomize_bn(model, np.random.default_rng(seed))
    return model


def _conv(seed):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([
        L.InputLayer((6, 6, 1)), BitDepthQuantization(2),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.Conv2D(5, 3, strides=2, padding="valid", use_bias=False), L.BatchNormalization(),
        L.ReLU(), L.AveragePooling2D(2, strides=1, padding="same"),
        L.Conv2D(6, 2, padding="valid", activation="relu"), L.Flatten(), L.Dense(10, "relu"),
        L.Dense(3)])
    _randomize_bn(model, np.random.default_rng(seed))
    return model


def _conv_global(seed):
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Sequential([
        L.InputLayer((5, 5, 2)), BitDepthQuantization(2),
        L.Conv2D(6, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(),
        L.Reshape((6,)), L.Dense(8, activation="relu"), L.Dense(3)])


MODELS = {"dense": _dense, "conv": _conv, "conv_global": _conv_global}


def _tail(model, points):
    """The float32 model after its input quantizer, on points of the quantized box."""
    z = tf.constant(points, tf.float32)
    for layer in model.layers[1:]:
        z = layer(z)
    return z.numpy()


def _margins(z, y):
    return z[np.arange(len(y)), y][:, None] - z  # z_y − z_k


def _boxes(model, n, rng):
    shape = model.input_shape[1:]
    x = rng.random((n,) + shape).astype(np.float32)
    eps = rng.choice([0.02, 0.05, 0.1, 0.2], n)
    lower, upper = [], []
    for i in range(n):
        box = certify.input_box(model, x[i:i + 1], float(eps[i]))
        lower.append(box.lower)
        upper.append(box.upper)
    y = np.argmax(_tail(model, certify.input_box(model, x, 0.0).lower), axis=1)
    return np.concatenate(lower), np.concatenate(upper), y


def _pgd_min(model, lower, upper, y, rng, steps=30):
    """Smallest margin per (example, class) found by PGD inside the box, from random starts."""
    classes = model.output_shape[-1]
    best = np.full((len(y), classes), np.inf)
    lo, up = tf.constant(lower), tf.constant(upper)
    for k in range(classes):
        x = tf.constant(rng.uniform(lower, upper).astype(np.float32))
        step = (up - lo) / 8.0
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x)
                z = _tail_tensor(model, x)
                total = tf.reduce_sum(tf.gather(z, y, axis=1, batch_dims=1) - z[:, k])
            g = tape.gradient(total, x)
            x = tf.clip_by_value(x - step * tf.sign(g), lo, up)
            best[:, k] = np.minimum(best[:, k], _margins(_tail(model, x.numpy()), y)[:, k])
    return best


def _tail_tensor(model, x):
    for layer in model.layers[1:]:
        x = layer(x)
    return x


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("intermediate", [True, False])
def test_crown_is_sound_against_sampling_corners_and_pgd(name, intermediate):
    rng = np.random.default_rng(0)
    model = MODELS[name](1)
    lower, upper, y = _boxes(model, 12, rng)
    bound = linear.margin_lower(model, lower, upper, y, intermediate=intermediate)
    found = _pgd_min(model, lower, upper, y, rng)
    for _ in range(20):  # random points and random corners of each box, float32 model
        pts = rng.uniform(lower, upper).astype(np.float32)
        corners = np.where(rng.random(lower.shape) < 0.5, lower, upper)
        for p in (pts, corners):
            found = np.minimum(found, _margins(_tail(model, p), y))
    assert np.all(bound <= found), np.max(bound - found)
    assert np.all(bound[np.arange(len(y)), y] == 0.0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_crown_is_tighter_than_ibp_on_average_and_margin_upper_never_looser(name):
    rng = np.random.default_rng(1)
    model = MODELS[name](2)
    lower, upper, y = _boxes(model, 16, rng)
    crown = linear.margin_lower(model, lower, upper, y)
    ibp = -certify.margin_upper(model, lower, upper, y).numpy()
    off = np.ones_like(crown, bool)
    off[np.arange(len(y)), y] = False
    assert np.mean(crown[off] >= ibp[off]) >= 0.75
    assert np.mean(crown[off] - ibp[off]) > 0.0
    best = linear.margin_upper(model, lower, upper, y)
    np.testing.assert_array_equal(best, np.minimum(-crown, -ibp))


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_rounding_allowance_makes_point_boxes_sound_for_the_float32_model(name):
    # On a single quantized input (ε = 0) the linear bound is the real-arithmetic margin less
    # the allowance; the float32 model rounds either way, so without the allowance some
    # bounds exceed the model's own margin.
    rng = np.random.default_rng(3)
    model = MODELS[name](4)
    for layer in model.layers:  # large weights: large rounding
        if layer.weights and not isinstance(layer, L.BatchNormalization):
            layer.set_weights([w * 30.0 for w in layer.get_weights()])
    x = rng.random((300,) + model.input_shape[1:]).astype(np.float32)
    box = certify.input_box(model, x, 0.0)  # the level ± the quantizer's float jitter
    z = model(x).numpy()
    y = np.argmax(z, axis=1)
    assert np.all(linear.margin_lower(model, box.lower, box.upper, y) <= _margins(z, y))
    point = box.lower  # a box of one float32 point
    bound = linear.margin_lower(model, point, point, y)
    assert np.all(bound <= _margins(_tail(model, point), y))


def test_layers_without_a_linear_rule_fall_back_to_interval_bounds():
    tf.keras.utils.set_random_seed(5)
    pooled = tf.keras.Sequential([
        L.InputLayer((4, 4, 1)), BitDepthQuantization(2), L.Conv2D(3, 3, activation="relu"),
        L.MaxPooling2D(2), L.Flatten(), L.Dense(3)])
    binary = tf.keras.Sequential([
        L.InputLayer((6,)), BitDepthQuantization(2), L.Dense(5),
        lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
        L.Dense(3)])
    inputs = tf.keras.Input((6,))
    h = L.Dense(6)(BitDepthQuantization(2)(inputs))
    residual = tf.keras.Model(inputs, L.Dense(3)(L.Add()([h, L.ReLU()(h)])))
    rng = np.random.default_rng(5)
    for model, match in ((pooled, "max_pooling2d.*MaxPooling2D"),
                         (binary, "quant_dense.*QuantDense"), (residual, "chain of layers")):
        x = rng.random((4,) + model.input_shape[1:]).astype(np.float32)
        y = np.array([0, 1, 2, 0])
        box = certify.input_box(model, x, 0.05)
        with pytest.raises(NotImplementedError, match=match):
            linear.margin_lower(model, box.lower, box.upper, y)
        assert not linear.supports(model)
        np.testing.assert_array_equal(linear.margin_upper(model, box.lower, box.upper, y),
                                      certify.margin_upper(model, box.lower, box.upper, y))
    assert linear.supports(_dense(0))


def test_bad_boxes_and_labels_get_clear_errors():
    model = _dense(0)
    x = np.random.default_rng(0).random((2, 4, 4, 1)).astype(np.float32)
    box = certify.input_box(model, x, 0.1)
    with pytest.raises(ValueError, match="empty box"):
        linear.margin_lower(model, box.upper + 0.5, box.lower, [0, 1])
    with pytest.raises(ValueError, match="finite"):
        linear.margin_lower(model, np.full_like(box.lower, np.nan), box.upper, [0, 1])
    with pytest.raises(ValueError, match="one shape"):
        linear.margin_lower(model, box.lower, box.upper[:1], [0, 1])
    with pytest.raises(ValueError):
        linear.margin_lower(model, box.lower, box.upper, [0, 7])
    with pytest.raises(ValueError, match="max_rows"):
        linear.margin_lower(model, box.lower, box.upper, [0, 1], max_rows=-1)
    with pytest.raises(TypeError, match="Keras model"):
        linear.margin_lower("model", box.lower, box.upper, [0, 1])


def test_crown_is_sound_where_it_is_nearly_tight_on_a_dense_grid():
    # A 2-input ReLU net without quantizer on small boxes: the bound is close to the true
    # minimum (a 61×61 grid), so a relaxation on the wrong side of an unstable ReLU shows.
    tf.keras.utils.set_random_seed(7)
    model = tf.keras.Sequential([L.InputLayer((2,)), L.Dense(12, activation="relu"),
                                 L.Dense(12, activation="relu"), L.Dense(3)])
    rng = np.random.default_rng(7)
    for layer in model.layers:  # centred biases: units that change sign inside the boxes
        w, b = layer.get_weights()
        layer.set_weights([w, -0.5 * w.sum(axis=0) + rng.normal(0, 0.05, b.shape)])
    centre = rng.uniform(0.2, 0.8, (40, 2)).astype(np.float32)
    radius = rng.uniform(0.02, 0.2, (40, 1)).astype(np.float32)
    lower, upper = np.clip(centre - radius, 0, 1), np.clip(centre + radius, 0, 1)
    y = np.argmax(model(centre).numpy(), axis=1)
    bound = linear.margin_lower(model, lower, upper, y)
    t = np.linspace(0.0, 1.0, 61, dtype=np.float32)
    grid = np.stack(np.meshgrid(t, t), -1).reshape(-1, 2)
    for i in range(len(y)):
        pts = (lower[i] + grid * (upper[i] - lower[i])).astype(np.float32)
        found = _margins(model(pts).numpy(), np.full(len(pts), y[i])).min(axis=0)
        assert np.all(bound[i] <= found), (i, bound[i] - found)
    ibp = -certify.margin_upper(model, lower, upper, y).numpy()
    assert np.mean(bound - ibp) > 0.0
