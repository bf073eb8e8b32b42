"""Bad input to tfdisc.certify (issue 26): a clear error, never a false certificate.

A certificate is a proof about the model at inference on the images given: it
must not be issued for images outside the range it is computed for, for layers
fixed in training mode, for layers it cannot bound, or on misread labels.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import certify
from tfdisc.layers import BitDepthQuantization

_LIGHT = dict(search=False, complete_max_free=0)


def _model(value_range=(0.0, 1.0), shape=(4,), classes=3, middle=None, seed=0,
           dtype="float32"):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape, dtype=dtype)
    x = BitDepthQuantization(2, value_range=value_range)(inputs)
    if middle is not None:
        x = middle(x)
    if len(shape) > 1:
        x = tf.keras.layers.Flatten()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(classes, name="logits")(x))


def _batches(x, y, batch=2):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


# --- images outside the range the certificate is computed for ---------------------------------

def test_images_outside_clip_are_refused_not_certified():
    # The case: a model on [-1, 1], x = -0.45, the default clip (0, 1), ε = 0.1. The
    # box [max(x - ε, 0), min(x + ε, 1)] is empty, so everything came back `certified`.
    model = _model(value_range=(-1.0, 1.0))
    x = np.full((2, 4), -0.45, np.float32)
    with pytest.raises(ValueError, match="outside the clip range"):
        certify.certify(model, x, [0, 1], 0.1)
    with pytest.raises(ValueError, match="outside the clip range"):
        certify.input_box(model, x, 0.1)
    with pytest.raises(ValueError, match="outside the clip range"):
        certify.quantized_search(model, x, [0, 1], 0.1)
    # With the model's own range as clip the same images are certified soundly.
    cert = certify.certify(model, x, [0, 1], 0.1, clip=(-1.0, 1.0))
    assert set(cert.status) <= set(certify.STATUSES)


def test_images_on_the_0_255_scale_are_refused_as_by_the_attacks():
    model = _model()
    x = np.random.default_rng(0).integers(0, 256, (4, 4)).astype(np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"outside the clip range.*uint8 / 255"):
        certify.certify(model, x, y, 0.1)
    with pytest.raises(ValueError, match="outside the clip range"):
        certify.robustness(model, _batches(x, y), [0.1])
    with pytest.raises(ValueError, match="outside the clip range"):
        certify.sweep(model, _batches(x, y), [0.1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused(bad):
    x = np.full((2, 4), 0.5, np.float32)
    x[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        certify.certify(_model(), x, [0, 1], 0.1, **_LIGHT)
    with pytest.raises(ValueError, match="NaN or infinite"):
        certify.certify(_model(), x, [0, 1], 0.1, clip=None, **_LIGHT)


def test_integer_images_outside_8_bits_and_wrong_shapes_are_refused():
    model = _model(dtype="int32")
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        certify.certify(model, np.full((1, 4), 300, np.int32), [0], 0.1)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        certify.certify(model, np.full((1, 4), -5, np.int32), [0], 0.1)
    with pytest.raises(ValueError, match="shape"):
        certify.certify(model, np.zeros((1, 5), np.int32), [0], 0.1)
    with pytest.raises(ValueError, match="shape"):
        certify.certify(_model(), np.zeros((1, 5), np.float32), [0], 0.1)


# --- labels, as the attacks read them ---------------------------------------------------------

@pytest.mark.parametrize("labels,match", [
    (np.array([3.7, 1.0]), "integer labels"),           # was truncated to 3
    (np.array([10, 1]), r"lie in \[0, 3\)"),             # was an IndexError
    (np.array([-1, 1]), r"lie in \[0, 3\)"),             # was an IndexError (or class 2)
    (np.array([0, 1, 2]), "2 examples but `y` has 3"),
    (np.array([[0.5, 0.5, 0.0], [0, 1, 0]], np.float32), "not one-hot"),
])
def test_bad_labels_are_refused(labels, match):
    x = np.full((2, 4), 0.5, np.float32)
    for fn in (lambda: certify.certify(_model(), x, labels, 0.1, **_LIGHT),
               lambda: certify.exhaustive(_model(), x, labels, 0.1),
               lambda: certify.quantized_search(_model(), x, labels, 0.1)):
        with pytest.raises(ValueError, match=match):
            fn()


def test_column_and_one_hot_labels_mean_what_the_attacks_read():
    model = _model()
    x = np.random.default_rng(1).random((6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    want = certify.certify(model, x, y, 0.1, **_LIGHT).status
    for form in (y[:, None], np.eye(3, dtype=np.float32)[y]):
        np.testing.assert_array_equal(certify.certify(model, x, form, 0.1, **_LIGHT).status, want)


# --- layers the certificate cannot bound ------------------------------------------------------

@pytest.mark.parametrize("layer", [
    tf.keras.layers.Dropout(0.5, name="drop"),
    tf.keras.layers.BatchNormalization(name="bn"),
    tf.keras.layers.GaussianNoise(0.3, name="noise"),
])
def test_layers_called_in_training_mode_are_refused(layer):
    model = _model(middle=lambda t: layer(t, training=True))
    x = np.full((2, 4), 0.5, np.float32)
    cls = type(layer).__name__
    pattern = f"{layer.name}.*{cls}.*training=True"
    with pytest.raises(certify.UnsupportedLayerError, match=pattern):
        certify.certify(model, x, [0, 1], 0.1)
    with pytest.raises(certify.UnsupportedLayerError, match=pattern):
        certify.check_model(model)
    with pytest.raises(certify.UnsupportedLayerError, match=pattern):
        certify.CertifiedTraining(model, 0.1)
    # training=False, or no flag, is inference: supported.
    certify.check_model(_model(middle=lambda t: type(layer).from_config(
        {**layer.get_config(), "name": "ok"})(t, training=False)))


class _Doubler(tf.keras.layers.Layer):
    def call(self, inputs):
        return 2.0 * inputs


class _NegDense(tf.keras.layers.Dense):
    """A Dense subclass whose call is not Dense's: the Dense rule would bound the wrong map."""

    def call(self, inputs):
        return -super().call(inputs)


def _relu(x):  # a user function that merely shares Keras's name
    return -tf.nn.relu(x)


_relu.__name__ = "relu"


def _seq(t, *layers):
    for layer in layers:
        t = layer(t)
    return t


_UNSUPPORTED = {  # name: (input shape, middle of the model, class named in the error)
    "conv1d": ((4, 2), lambda t: tf.keras.layers.Conv1D(2, 2, name="conv1d")(t), "Conv1D"),
    "lstm": ((4, 2), lambda t: tf.keras.layers.LSTM(2, name="lstm")(t), "LSTM"),
    "gru": ((4, 2), lambda t: tf.keras.layers.GRU(2, name="gru")(t), "GRU"),
    "rnn": ((4, 2), lambda t: tf.keras.layers.SimpleRNN(2, name="rnn")(t), "SimpleRNN"),
    "norm": ((4,), lambda t: tf.keras.layers.LayerNormalization(name="norm")(t),
             "LayerNormalization"),
    "attention": ((4, 2), lambda t: tf.keras.layers.Attention(name="attention")([t, t]),
                  "Attention"),
    "concat": ((4,), lambda t: tf.keras.layers.Concatenate(name="concat")([t, t]),
               "Concatenate"),
    "multiply": ((4,), lambda t: tf.keras.layers.Multiply(name="multiply")([t, t]), "Multiply"),
    "depthwise": ((4, 4, 1), lambda t: tf.keras.layers.DepthwiseConv2D(2, name="depthwise")(t),
                  "DepthwiseConv2D"),
    "upsample": ((4, 4, 1), lambda t: tf.keras.layers.UpSampling2D(name="upsample")(t),
                 "UpSampling2D"),
    "custom": ((4,), lambda t: _Doubler(name="custom")(t), "_Doubler"),
    "subclass": ((4,), lambda t: _NegDense(4, name="subclass")(t), "_NegDense"),
    "op": ((4,), lambda t: t * 2.0, "TFOpLambda"),
    "slice": ((4,), lambda t: t[:, :2], "SlicingOpLambda"),
    "activation": ((4,), lambda t: tf.keras.layers.Dense(4, activation=_relu,
                                                         name="activation")(t), "Dense"),
    "softmax": ((4,), lambda t: tf.keras.layers.Activation("softmax", name="softmax")(t),
                "Activation"),
    "nested": ((4,), lambda t: tf.keras.Sequential([tf.keras.layers.Dense(4)],
                                                   name="nested")(t), "Sequential"),
}


@pytest.mark.parametrize("name", sorted(_UNSUPPORTED))
def test_unsupported_layers_raise_unsupported_layer_error_before_tracing(name):
    shape, middle, cls = _UNSUPPORTED[name]
    model = _model(shape=shape, middle=middle)
    x = np.full((2,) + shape, 0.5, np.float32)
    pattern = cls if name in ("op", "slice") else f"{name}.*{cls}"
    # Not an autograph StagingError: the documented error, naming the layer and its class.
    with pytest.raises(certify.UnsupportedLayerError, match=pattern):
        certify.certify(model, x, [0, 1], 0.1)
    with pytest.raises(certify.UnsupportedLayerError, match=pattern):
        certify.robustness(model, _batches(x, np.array([0, 1])), [0.1])


def test_mixed_precision_models_are_refused():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _model()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    x = np.full((2, 4), 0.5, np.float32)
    with pytest.raises(certify.UnsupportedLayerError, match="logits.*Dense.*float16"):
        certify.certify(model, x, [0, 1], 0.1)
    with pytest.raises(certify.UnsupportedLayerError, match="float16"):
        certify.CertifiedTraining(model, 0.1)


def test_subclassed_models_are_refused():
    class Net(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tf.keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    net = Net()
    net(tf.zeros((1, 4)))
    with pytest.raises((certify.UnsupportedLayerError, TypeError), match="functional"):
        certify.check_model(net)


# --- datasets and ε grids -----------------------------------------------------------------------

def test_datasets_must_yield_image_label_pairs():
    model = _model()
    x, y = np.full((4, 4), 0.5, np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"\(images, labels\) batches"):
        certify.robustness(model, (x, y), [0.1])  # a tuple of arrays, not a dataset
    with pytest.raises(ValueError, match=r"\(images, labels\) batches.*3 parts"):
        certify.robustness(model, tf.data.Dataset.from_tensor_slices((x, y, y)).batch(2), [0.1])
    with pytest.raises(ValueError, match="no examples"):
        certify.robustness(model, _batches(x, y).take(0), [0.1])
    one = certify.robustness(model, _batches(x, y), 0.1, **_LIGHT)
    assert one == certify.robustness(model, _batches(x, y), [0.1], **_LIGHT)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), 1e400, "0.1", True])
def test_bad_eps_is_refused(eps):
    with pytest.raises(ValueError, match="eps"):
        certify.certify(_model(), np.full((1, 4), 0.5, np.float32), [0], eps)


# --- certified training ------------------------------------------------------------------------

def _fit(labels, x, epochs=1, **kwargs):
    model = _model(seed=3)
    trainer = certify.CertifiedTraining(model, 0.1, ramp_steps=2, **kwargs)
    trainer.compile(tf.keras.optimizers.SGD(0.1))
    history = trainer.fit(x, labels, batch_size=4, epochs=epochs, shuffle=False, verbose=0)
    return history.history


def test_certified_training_accepts_column_and_one_hot_labels_as_the_attacks_do():
    x = np.random.default_rng(2).random((8, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    want = _fit(y, x)
    for form in (y[:, None], np.eye(3, dtype=np.float32)[y]):
        got = _fit(form, x)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
        np.testing.assert_allclose(got["ibp_verified"], want["ibp_verified"])


@pytest.mark.parametrize("labels,error,match", [
    (np.array([0, 1, 2, 3.7] * 2), ValueError, "integer labels"),
    (np.array([0, 1, 2, 10] * 2), tf.errors.InvalidArgumentError, r"lie in \[0, 3\)"),
    (np.array([0, 1, 2, -1] * 2), tf.errors.InvalidArgumentError, r"lie in \[0, 3\)"),
    (np.tile(np.array([[0.5, 0.5, 0.0]], np.float32), (8, 1)), tf.errors.InvalidArgumentError,
     "one-hot"),
])
def test_certified_training_refuses_bad_labels(labels, error, match):
    x = np.random.default_rng(2).random((8, 4)).astype(np.float32)
    with pytest.raises(error, match=match):
        _fit(labels, x)


def test_certified_training_refuses_images_it_cannot_box():
    y = np.zeros(8, np.int64)
    rng = np.random.default_rng(2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the clip range"):
        _fit(y, (rng.random((8, 4)) * 255).astype(np.float32))
    with pytest.raises(TypeError, match="float images"):
        _fit(y, rng.integers(0, 256, (8, 4)).astype(np.uint8))
    nan = rng.random((8, 4)).astype(np.float32)
    nan[3, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
        _fit(y, nan)
    with pytest.raises(ValueError, match="sample weights"):
        model = _model()
        trainer = certify.CertifiedTraining(model, 0.1)
        trainer.compile(tf.keras.optimizers.SGD(0.1))
        trainer.fit(rng.random((8, 4)).astype(np.float32), y, sample_weight=np.ones(8),
                    verbose=0)


def test_the_box_always_holds_the_clean_image():
    # Pixels within rounding tolerance of clip pass the image check; the box must still hold
    # them (it was [x, clip_high], empty, for x just above clip_high).
    x = np.array([[1.0 + 4e-7, -4e-7, 0.5]], np.float32)
    lo, hi = certify.box.interval(x, 0.0, clip=(0.0, 1.0))
    assert np.all(lo.numpy() <= x) and np.all(x <= hi.numpy())
    box = certify.input_box(_model(shape=(3,)), x, 0.0)
    assert np.all(box.lo_bin <= box.hi_bin)


@pytest.mark.parametrize("params,match", [
    ({"iteration": 5}, "Unknown quantized_search parameter"),
    ({"iterations": 0}, "iterations"),
    ({"candidates": 2.5}, "candidates"),
    ("fast", "search_params"),
])
def test_bad_search_params_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        certify.certify(_model(), np.full((1, 4), 0.5, np.float32), [0], 0.1,
                        search_params=params)


def test_the_binaries_certify_step_gets_the_same_checks():
    from types import SimpleNamespace

    from tfdisc import pipeline

    cfg = SimpleNamespace(certify_limit=None, eval_batch_size=2, epsilons=(0.1,),
                          certify_method="auto", certify_solver="milp", certify_time_limit=10.0)
    x, y = np.full((4, 4), 0.5, np.float32), np.zeros(4, np.int64)
    model = _model(middle=lambda t: tf.keras.layers.Dropout(0.5, name="drop")(t, training=True))
    with pytest.raises(certify.UnsupportedLayerError, match="drop.*training=True"):
        pipeline.certify_test_set(model, cfg, x, y)
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        pipeline.certify_test_set(_model(), cfg, x, y + 3)
