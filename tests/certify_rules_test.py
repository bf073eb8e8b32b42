"""Bound rules (issue 27): one rule per layer class in a registry a user can extend."""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import certify
from tfdisc.certify import rules
from tfdisc.layers import BitDepthQuantization


def _model(middle, seed=0, last=None):
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((6,))
    x = BitDepthQuantization(2)(inputs)
    x = tf.keras.layers.Dense(8, name="hidden")(x)
    x = middle(x)
    last = last or tf.keras.layers.Dense(3, name="logits")
    return tf.keras.Model(inputs, last(x))


def _data(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6)).astype(np.float32), rng.integers(0, 3, n)


class _CountingMonotoneRule(rules.BoundRule):
    """A user's rule for a non-decreasing layer: both ends through the layer."""

    def __init__(self):
        self.calls = 0

    def interval(self, layer, inputs, ctx):
        self.calls += 1
        return inputs[0].map(layer)


def test_a_registered_rule_certifies_a_custom_layer_as_the_built_in_one():
    class MyReLU(tf.keras.layers.Layer):  # user code: a monotone activation layer
        def call(self, inputs):
            return tf.nn.relu(inputs)

    builtin = _model(lambda t: tf.keras.layers.ReLU(name="act")(t))
    custom = _model(lambda t: MyReLU(name="act")(t))
    custom.set_weights(builtin.get_weights())
    x, y = _data()
    with pytest.raises(certify.UnsupportedLayerError, match="act.*MyReLU.*user code"):
        certify.certify(custom, x, y, 0.1)

    rule = _CountingMonotoneRule()
    certify.register_rule(MyReLU, rule)
    assert rules.registered(MyReLU) is rule
    want = certify.certify(builtin, x, y, 0.1)
    got = certify.certify(custom, x, y, 0.1)
    assert rule.calls > 0
    np.testing.assert_array_equal(got.status, want.status)
    box = certify.input_box(builtin, x, 0.1)
    for exact in (True, False):
        np.testing.assert_array_equal(
            certify.margin_upper(custom, box.lower, box.upper, y, exact=exact).numpy(),
            certify.margin_upper(builtin, box.lower, box.upper, y, exact=exact).numpy())
    calls = rule.calls
    certify.logit_bounds(custom, box.lower, box.upper)
    assert rule.calls == calls + 1

    # A subclass that keeps MyReLU's call uses its rule; one with its own call is refused.
    class Kept(MyReLU):
        pass

    class Overridden(MyReLU):
        def call(self, inputs):
            return -super().call(inputs)

    certify.check_model(_model(lambda t: Kept(name="kept")(t)))
    with pytest.raises(certify.UnsupportedLayerError, match="over.*Overridden.*user code"):
        certify.check_model(_model(lambda t: Overridden(name="over")(t)))


class _NegDense(tf.keras.layers.Dense):
    def call(self, inputs):
        return -super().call(inputs)


class _NegDenseRule(rules.BoundRule):
    """``−(W·x + b)``: Dense's interval with the ends negated and swapped."""

    def interval(self, layer, inputs, ctx):
        iv = ctx.affine(inputs[0], lambda t, w: tf.tensordot(t, w, 1), layer.kernel, layer.bias,
                        int(layer.kernel.shape[0]))
        return rules.Interval(-iv.upper, -iv.lower)


def test_a_rule_for_a_dense_subclass_replaces_dense_rule_and_its_margin_form():
    neg = _model(lambda t: t, last=_NegDense(3, name="logits"))
    x, y = _data()
    with pytest.raises(certify.UnsupportedLayerError, match="logits.*_NegDense.*user code"):
        certify.check_model(neg)
    certify.register_rule(_NegDense, _NegDenseRule())
    plain = _model(lambda t: t)
    plain.get_layer("logits").set_weights([-w for w in neg.get_layer("logits").get_weights()])
    plain.get_layer("hidden").set_weights(neg.get_layer("hidden").get_weights())
    box = certify.input_box(neg, x, 0.1)
    lo, hi = certify.logit_bounds(neg, box.lower, box.upper)
    want_lo, want_hi = certify.logit_bounds(plain, box.lower, box.upper)
    np.testing.assert_array_equal(lo.numpy(), want_lo.numpy())  # negation is exact in float
    np.testing.assert_array_equal(hi.numpy(), want_hi.numpy())
    # Dense's margin form (which would bound +W·x) is not used: the margin is the logit form.
    margin = certify.margin_upper(neg, box.lower, box.upper, y).numpy()
    naive = hi.numpy() - lo.numpy()[np.arange(len(y)), y][:, None]
    naive[np.arange(len(y)), y] = 0.0
    np.testing.assert_array_equal(margin, naive)
    z = neg(x, training=False).numpy()  # and it holds the model's outputs
    assert np.all(z - z[np.arange(len(y)), y][:, None] <= margin)


def test_dense_subclass_keeping_dense_call_uses_dense_rule():
    class Plain(tf.keras.layers.Dense):
        pass

    assert rules.lookup(Plain(2)) is rules.registered(tf.keras.layers.Dense)
    assert rules.lookup(tf.keras.layers.Conv2DTranspose(2, 2)) is None  # refused, not Conv2D's
    assert rules.lookup(tf.keras.layers.LayerNormalization()) is None


def test_register_rule_refuses_what_is_not_a_layer_class_or_a_rule():
    with pytest.raises(TypeError, match="Keras layer class"):
        certify.register_rule(tf.keras.layers.Dense(2), _CountingMonotoneRule())
    with pytest.raises(TypeError, match="Keras layer class"):
        certify.register_rule(int, _CountingMonotoneRule())
    with pytest.raises(TypeError, match="BoundRule instance"):
        certify.register_rule(tf.keras.layers.Layer, lambda layer, inputs, ctx: inputs[0])
    with pytest.raises(TypeError, match="BoundRule instance"):
        certify.register_rule(tf.keras.layers.Layer, _CountingMonotoneRule)  # the class


def test_linear_and_encode_are_declared_and_name_the_layer():
    layer = tf.keras.layers.Dense(2, name="fc")
    rule = rules.lookup(layer)
    with pytest.raises(NotImplementedError, match="`encode`.*'fc' \\(Dense\\)"):
        rule.encode(layer, [], None)
    pool = tf.keras.layers.MaxPooling2D(name="pool")  # no linear rule (Dense has one: issue 28)
    with pytest.raises(NotImplementedError, match="`linear`.*'pool' \\(MaxPooling2D\\)"):
        rules.lookup(pool).linear(pool, [], None)
    with pytest.raises(NotImplementedError, match="`interval`.*'fc'"):
        rules.BoundRule().interval(layer, [], None)


def test_every_layer_type_has_one_rule():
    k = tf.keras.layers
    import larq as lq  # pylint: disable=import-outside-toplevel

    for cls in (k.Dense, lq.layers.QuantDense, k.Conv2D, lq.layers.QuantConv2D,
                k.BatchNormalization, k.Activation, k.ReLU, k.MaxPooling2D, k.AveragePooling2D,
                k.GlobalMaxPooling2D, k.GlobalAveragePooling2D, k.Flatten, k.Reshape, k.Add,
                k.Dropout, k.SpatialDropout2D, k.GaussianNoise, BitDepthQuantization):
        assert isinstance(rules.registered(cls), rules.BoundRule), cls


def _linear(x):  # a user function that merely shares Keras's name
    return -x


_linear.__name__ = "linear"


def test_output_dense_with_a_user_function_named_linear_is_refused_by_margin_upper():
    # Before, the margin form of the output Dense checked the activation's name only and
    # bounded W·x + b, not −(W·x + b) (check_model refused it; margin_upper alone did not).
    model = _model(lambda t: t, last=tf.keras.layers.Dense(3, activation=_linear, name="logits"))
    x, y = _data()
    box = certify.input_box(model, x, 0.1)
    with pytest.raises(certify.UnsupportedLayerError, match="logits.*Dense.*activation 'linear'"):
        certify.margin_upper(model, box.lower, box.upper, y)
    with pytest.raises(certify.UnsupportedLayerError, match="logits.*Dense.*activation 'linear'"):
        certify.check_model(model)
