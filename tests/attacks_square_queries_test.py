"""Square queries the model only where it can still learn something (issue 29, speed).

A counting layer inside the model adds up the examples it sees in every query: Square must
query only the examples it has not broken yet, and, behind an input quantizer, only proposals
that quantize differently from the current point. Neither shortcut changes the result.
"""
import numpy as np
import tensorflow as tf

from tfdisc import attacks, layers
from tfdisc.attacks import square


class Count(tf.keras.layers.Layer):
    """Identity that adds the batch size of every call to ``seen``."""

    def build(self, input_shape):
        self.seen = self.add_weight("seen", shape=(), dtype=tf.int64, initializer="zeros",
                                    trainable=False)

    def call(self, x):
        self.seen.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return tf.identity(x)


def counted(bits=None, seed=0, branch=False):
    """``W q(x) + b`` on 4×4×1 inputs with 4 classes, a ``Count`` after the (optional)
    quantizer; ``branch``: the raw input also feeds the output (so it bypasses ``q``)."""
    rng = np.random.RandomState(seed)
    inp = tf.keras.Input((4, 4, 1))
    h = inp if bits is None else layers.BitDepthQuantization(bits)(inp)
    count = Count()
    dense = tf.keras.layers.Dense(4)
    out = dense(tf.keras.layers.Flatten()(count(h)))
    if branch:
        out = tf.keras.layers.Add()([out, tf.keras.layers.Dense(4)(
            tf.keras.layers.Flatten()(inp))])
    model = tf.keras.Model(inp, out)
    dense.set_weights([rng.normal(0, 1, (16, 4)).astype(np.float32),
                       rng.normal(0, 0.3, 4).astype(np.float32)])
    return model, count


def predicted(model, x):
    return np.argmax(model(x, training=False).numpy(), -1)


def test_square_stops_querying_the_examples_it_broke():
    model, count = counted()
    x = np.random.RandomState(1).uniform(0, 1, (20, 4, 4, 1)).astype(np.float32)
    y = predicted(model, x)
    y[:10] = (y[:10] + 1) % 4  # half of them misclassified from the start
    count.seen.assign(0)
    x_adv = attacks.get("square")(model, x, y, 0.01, n_queries=50).numpy()
    # Start, 49 queries and the final check; before the fix every query saw all 20 examples.
    queried = int(count.seen.numpy()) - 2 * 20
    assert 0 < queried <= 49 * 10
    assert np.all(np.abs(x_adv - x) <= np.float32(0.01))


def test_behind_a_quantizer_square_skips_proposals_that_quantize_alike():
    model, count = counted(bits=1)
    assert square.sole_input_quantizer(model) is model.layers[1]
    # Pixels far from the 1-bit threshold 0.5: no proposal within ε = 0.05 can flip one.
    x = np.random.RandomState(2).choice([0.1, 0.9], (12, 4, 4, 1)).astype(np.float32)
    y = predicted(model, x)
    count.seen.assign(0)
    x_adv = attacks.get("square")(model, x, y, 0.05, n_queries=40).numpy()
    assert int(count.seen.numpy()) == 2 * 12  # the start and the final check only
    assert np.array_equal(predicted(model, x_adv), y)  # nothing reachable changes a logit


def test_square_still_breaks_through_a_quantizer():
    """Pixels next to the threshold: the skipped proposals are never the useful ones."""
    model, count = counted(bits=1, seed=3)
    rng = np.random.RandomState(4)
    x = (0.5 + rng.choice([-0.02, 0.02], (30, 4, 4, 1))).astype(np.float32)
    y = predicted(model, x)
    x_adv = attacks.get("square")(model, x, y, 0.05, n_queries=300).numpy()
    assert np.sum(predicted(model, x_adv) != y) > 0
    assert int(count.seen.numpy()) < 2 * 30 + 299 * 30


def test_a_quantizer_the_input_bypasses_is_not_used_to_skip():
    model, _ = counted(bits=1, branch=True)
    assert square.sole_input_quantizer(model) is None
    plain, _ = counted()
    assert square.sole_input_quantizer(plain) is None
    seq = tf.keras.Sequential([tf.keras.Input((4, 4, 1)), layers.BitDepthQuantization(2),
                               tf.keras.layers.Flatten(), tf.keras.layers.Dense(3)])
    assert square.sole_input_quantizer(seq) is seq.layers[0]


class RejectEmpty(tf.keras.layers.Layer):
    """Identity that fails on an empty batch, as some Keras layers do (a Conv2D followed by
    batch norm did in a model loaded from .keras: the conv passes 0 images through unchanged)."""

    def call(self, x):
        tf.debugging.assert_positive(tf.shape(x)[0], message="empty batch")
        return tf.identity(x)


def test_square_never_queries_an_empty_batch():
    """Behind a quantizer, an iteration whose proposals all quantize alike asks the model
    nothing: no call on 0 examples (which crashed Square on alexnet_cifar)."""
    inp = tf.keras.Input((4, 4, 1))
    h = RejectEmpty()(layers.BitDepthQuantization(2)(inp))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(h)))
    x = np.full((3, 4, 4, 1), 0.375, np.float32)  # bin centres: ε = 0.01 reaches no other bin
    y = predicted(model, x)
    x_adv = attacks.get("square")(model, x, y, 0.01, n_queries=20)
    np.testing.assert_array_equal(predicted(model, x_adv), y)
