"""AutoAttack components (APGD-CE, APGD-T, Square, the ensemble) and the sign-gradient surrogates.

Tiny models, small budgets: ε-ball and clip, APGD's monotone best loss, the
ensemble against its components, Square without gradient, the analytic optimum
of a linear model, the surrogate's identical forward pass, bad input.
"""
import hypothesis
from hypothesis import strategies as st
import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import attacks, layers
from tfdisc.attacks import apgd, autoattack, losses, square, surrogate

SMALL = {"apgd_ce": {"n_iter": 10}, "apgd_t": {"n_iter": 10, "n_target_classes": 3},
         "square": {"n_queries": 100}, "autoattack": {"n_iter": 10, "n_target_classes": 3,
                                                     "n_queries": 100}}


def linear(shape, classes, seed, quantize_bits=None, head=None):
    """A linear model ``W x + b`` on inputs of ``shape`` (weights from ``seed``)."""
    rng = np.random.RandomState(seed)
    inp = tf.keras.Input(shape)
    h = inp if quantize_bits is None else layers.BitDepthQuantization(quantize_bits)(inp)
    h = tf.keras.layers.Flatten()(h)
    if head is not None:
        h = head(h)
    dense = tf.keras.layers.Dense(classes)
    out = dense(h)
    model = tf.keras.Model(inp, out)
    dim = int(np.prod(shape))
    dense.set_weights([rng.normal(0, 1, (dim, classes)).astype(np.float32),
                       rng.normal(0, 0.3, classes).astype(np.float32)])
    return model


def images(n, shape, seed, low=0.0, high=1.0):
    return np.random.RandomState(seed).uniform(low, high, (n,) + shape).astype(np.float32)


def predicted(model, x):
    return np.argmax(model(x, training=False).numpy(), -1)


def best_target_margins(model, x, y, eps):
    """Analytic optimum of ``z_k − z_y`` over the ε-ball ∩ [0, 1], for every class k ≠ y."""
    w, b = (v.numpy() for v in model.layers[-1].weights)
    flat = x.reshape(len(x), -1).astype(np.float64)
    out = np.full((len(x), w.shape[1]), -np.inf)
    for i in range(len(x)):
        for k in range(w.shape[1]):
            if k != y[i]:
                d = w[:, k] - w[:, y[i]]
                x_star = np.clip(flat[i] + eps * np.sign(d), 0.0, 1.0)
                out[i, k] = x_star @ d + b[k] - b[y[i]]
    return out


# ----------------------------------------------------------------- ε-ball and clip


@hypothesis.settings(max_examples=6, deadline=None, derandomize=True)
@hypothesis.given(name=st.sampled_from(sorted(SMALL)),
                  shape=st.sampled_from([(7,), (4, 4, 1), (3, 5, 2)]),
                  eps=st.sampled_from([0.0, 0.03, 0.25, 0.7]),
                  low=st.sampled_from([0.0, 0.4]), high=st.sampled_from([0.6, 1.0]))
def test_every_attack_stays_in_the_ball_and_clip(name, shape, eps, low, high):
    model = linear(shape, 4, seed=1)
    x = images(5, shape, seed=2, low=low, high=high)
    y = predicted(model, x)
    x_adv = attacks.get(name)(model, x, y, eps, **SMALL[name]).numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert np.all(np.abs(x_adv - x) <= np.float32(eps))
    assert np.all((x_adv >= 0.0) & (x_adv <= 1.0))


def test_square_with_a_quantizer_stays_in_the_ball_and_proposes_levels():
    model = linear((4, 4, 1), 4, seed=3, quantize_bits=2)
    assert square.quantizer_levels(model) is not None
    assert len(square.quantizer_levels(model)) == 4
    assert square.quantizer_levels(linear((4, 4, 1), 4, seed=3)) is None
    x = images(6, (4, 4, 1), seed=4)
    y = predicted(model, x)
    x_adv = attacks.get("square")(model, x, y, 0.3, n_queries=100).numpy()
    assert np.all(np.abs(x_adv - x) <= np.float32(0.3))
    assert np.all((x_adv >= 0.0) & (x_adv <= 1.0))


# ----------------------------------------------------------------- APGD


def test_apgd_checkpoints_are_the_papers():
    assert apgd.checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apgd_best_loss_never_ends_below_its_start(seed):
    """The attack maximizes: its best loss (minimized objective −loss) never ends worse."""
    inp = tf.keras.Input((6,))
    h = tf.keras.layers.Dense(8, activation="tanh")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(5)(h))
    x = tf.constant(images(16, (6,), seed=seed))
    y = tf.constant(predicted(model, x.numpy()), tf.int64)
    x_adv, fooled, x_best, loss_best, loss_start = apgd.run(
        model, x, y, tf.constant(0.1), (0.0, 1.0), losses.cross_entropy, n_iter=15, rho=0.75,
        seed=[seed, 0])
    assert np.all(loss_best.numpy() >= loss_start.numpy())
    np.testing.assert_allclose(losses.cross_entropy(model(x_best), y).numpy(),
                               loss_best.numpy(), rtol=1e-5)
    # The result: misclassified, else the best-loss point.
    wrong = predicted(model, x_adv.numpy()) != y.numpy()
    assert np.array_equal(wrong, fooled.numpy())
    assert np.array_equal(x_adv.numpy()[~wrong], x_best.numpy()[~wrong])


def test_apgd_reaches_the_linear_optimum_of_a_binary_model():
    """Two classes: CE is monotone in the margin, whose maximum over the box is analytic."""
    model = linear((10,), 2, seed=5)
    x = images(12, (10,), seed=6)
    y = predicted(model, x)
    x_t, y_t = tf.constant(x), tf.constant(y, tf.int64)
    *_, loss_best, _ = apgd.run(model, x_t, y_t, tf.constant(0.05), (0.0, 1.0),
                                losses.cross_entropy, n_iter=30, rho=0.75, seed=[0, 0])
    margin = best_target_margins(model, x, y, 0.05).max(axis=1)
    optimum = np.log1p(np.exp(margin))  # CE of two classes at margin z_k − z_y
    np.testing.assert_allclose(loss_best.numpy(), optimum, rtol=1e-4)


@pytest.mark.parametrize("name", ["apgd_ce", "apgd_t", "square", "autoattack"])
def test_attacks_break_exactly_the_breakable_examples_of_a_linear_model(name):
    model = linear((3, 3, 1), 4, seed=7)
    x = images(40, (3, 3, 1), seed=8)
    y = predicted(model, x)
    eps = 0.15
    margins = best_target_margins(model, x, y, eps).max(axis=1)
    clear = np.abs(margins) > 0.05  # no near-ties
    params = dict(SMALL[name], **({"n_queries": 1000} if "n_queries" in SMALL[name] else {}))
    x_adv = attacks.get(name)(model, x, y, eps, **params).numpy()
    broken = predicted(model, x_adv) != y
    assert 0 < np.sum(margins[clear] > 0) < np.sum(clear)  # the test has both kinds
    assert np.array_equal(broken[clear], margins[clear] > 0)


# ----------------------------------------------------------------- the ensemble


def test_ensemble_accuracy_is_at_most_each_components():
    model = linear((3, 3, 1), 4, seed=9)
    x = tf.constant(images(40, (3, 3, 1), seed=10))
    y = tf.constant(predicted(model, x.numpy()) ^ (np.arange(40) % 7 == 0), tf.int64)
    eps = tf.constant(0.1)
    x_adv, robust = autoattack.stages(model, x, y, eps, (0.0, 1.0), 10, 3, 300, 0, "ste")
    order = ["clean", "apgd_ce", "apgd_t", "square"]
    assert list(robust) == order
    for before, after in zip(order, order[1:]):
        assert np.all(robust[before].numpy() >= robust[after].numpy())
    final = np.mean(predicted(model, x_adv.numpy()) == y.numpy())
    assert final == np.mean(robust["square"].numpy())
    for name in ("apgd_ce", "apgd_t", "square"):
        alone = attacks.get(name)(model, x, y, 0.1, **SMALL[name]).numpy()
        assert final <= np.mean(predicted(model, alone) == y.numpy())


def test_autoattack_skips_apgd_t_below_four_classes():
    model = linear((5,), 3, seed=11)
    assert autoattack.components(model) == ("apgd_ce", "square")
    x = images(6, (5,), seed=12)
    x_adv = attacks.get("autoattack")(model, x, predicted(model, x), 0.1,
                                      **SMALL["autoattack"]).numpy()
    assert np.all(np.abs(x_adv - x) <= np.float32(0.1))


# ----------------------------------------------------------------- Square uses no gradient


@tf.custom_gradient
def _no_gradient(x):
    def grad(_):
        raise RuntimeError("this model has no gradient")
    return tf.identity(x), grad


def test_square_attacks_a_model_whose_gradient_raises():
    head = tf.keras.layers.Lambda(_no_gradient)
    model = linear((3, 3, 1), 4, seed=7, head=head)
    x = images(40, (3, 3, 1), seed=8)
    y = predicted(model, x)
    with pytest.raises(RuntimeError, match="no gradient"):
        attacks.get("apgd_ce")(model, x, y, 0.15, n_iter=2)
    margins = best_target_margins(model, x, y, 0.15).max(axis=1)
    x_adv = attacks.get("square")(model, x, y, 0.15, n_queries=1000).numpy()
    broken = predicted(model, x_adv) != y
    clear = np.abs(margins) > 0.05
    assert np.sum(broken) > 0
    assert np.array_equal(broken[clear], margins[clear] > 0)
    assert not attacks.get("square").uses_gradient


# ----------------------------------------------------------------- sign-gradient surrogates


def bnn():
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((6,))
    h = tf.keras.layers.Dense(8, kernel_initializer="ones")(inp)  # pre-activations: 6·x̄
    h = lq.layers.QuantDense(4, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                             kernel_constraint="weight_clip")(h)
    return tf.keras.Model(inp, h)


def input_gradient(model, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(model(x) * tf.constant([1.0, -2.0, 3.0, -4.0]))
    return out, tape.gradient(out, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


@pytest.mark.parametrize("mode", ["identity", "tanh", "hardtanh:100"])
def test_sign_surrogate_keeps_the_forward_pass_and_passes_gradient_beyond_one(mode):
    model = bnn()
    x = np.full((3, 6), 0.9, np.float32) * np.array([[1.0], [-1.0], [0.5]], np.float32)
    pre = model.layers[1](tf.constant(x)).numpy()
    assert np.all(np.abs(pre) > 1.0)  # every pre-activation outside [−1, 1]
    out_ste, grad_ste = input_gradient(model, x)
    assert np.all(grad_ste.numpy() == 0.0)  # larq's ste_sign: no gradient there
    quantizer = model.layers[2].input_quantizer
    plain = model(x).numpy()
    with surrogate.sign_gradient(model, mode) as swapped:
        assert swapped == 1
        np.testing.assert_array_equal(model(x).numpy(), plain)
        out, grad = input_gradient(model, x)
    assert model.layers[2].input_quantizer is quantizer  # undone
    assert out.numpy() == out_ste.numpy()
    np.testing.assert_array_equal(model(x).numpy(), plain)
    assert np.any(grad.numpy() != 0.0)


def test_sign_surrogate_forward_is_bit_identical_on_many_inputs():
    model = bnn()
    x = np.random.RandomState(0).normal(0, 3, (64, 6)).astype(np.float32)
    plain = model(x).numpy()
    for mode in ("identity", "tanh", "hardtanh:2"):
        with surrogate.sign_gradient(model, mode):
            np.testing.assert_array_equal(model(x).numpy(), plain)


def test_apgd_takes_a_sign_gradient_and_records_it():
    model = bnn()
    x = np.random.RandomState(1).uniform(0, 1, (8, 6)).astype(np.float32)
    y = predicted(model, x)
    attack = attacks.get("apgd_ce")
    x_adv = attack(model, x, y, 0.2, n_iter=5, sign_gradient="identity").numpy()
    assert np.all(np.abs(x_adv - x) <= np.float32(0.2))
    assert attack.describe(attack.check_params(sign_gradient="tanh"))["sign_gradient"] == "tanh"
    assert attacks.get("autoattack").check_params()["sign_gradient"] == "ste"


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", sorted(SMALL))
def test_negative_eps_is_refused(name):
    model = linear((4,), 4, seed=0)
    with pytest.raises(ValueError, match="eps"):
        attacks.get(name)(model, images(2, (4,), 0), [0, 1], -0.1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_labels_out_of_range_are_refused(name):
    model = linear((4,), 4, seed=0)
    with pytest.raises(ValueError, match=r"Labels must lie in \[0, 4\)"):
        attacks.get(name)(model, images(2, (4,), 0), [0, 4], 0.1)


@pytest.mark.parametrize("classes", [2, 3])
def test_apgd_t_needs_four_classes(classes):
    model = linear((4,), classes, seed=0)
    with pytest.raises(ValueError, match="at least 4 classes.*apgd_ce"):
        attacks.get("apgd_t")(model, images(2, (4,), 0), [0, 1], 0.1, n_iter=2)


def test_dlr_needs_three_classes():
    with pytest.raises(ValueError, match="at least 3 classes"):
        losses.check_classes(2, losses.DLR_CLASSES, "dlr")


@pytest.mark.parametrize("name", ["apgd_ce", "square", "autoattack", "pgd"])
def test_a_model_without_logits_is_refused(name):
    inp = tf.keras.Input((4,))
    softmax = tf.keras.Model(inp, tf.keras.layers.Dense(3, activation="softmax")(inp))
    with pytest.raises(ValueError, match="need logits"):
        attacks.get(name)(softmax, images(2, (4,), 0), [0, 1], 0.1)
    layer = tf.keras.Model(inp, tf.keras.layers.Softmax()(tf.keras.layers.Dense(3)(inp)))
    with pytest.raises(ValueError, match="need logits"):
        attacks.get(name)(layer, images(2, (4,), 0), [0, 1], 0.1)


@pytest.mark.parametrize("name, params, match", [
    ("apgd_ce", {"n_iter": 0}, "n_iter"), ("apgd_ce", {"rho": 1.5}, "rho"),
    ("apgd_ce", {"sign_gradient": "relu"}, "sign_gradient"),
    ("apgd_ce", {"sign_gradient": "hardtanh:-1"}, "sign_gradient"),
    ("apgd_t", {"n_target_classes": 0}, "n_target_classes"),
    ("square", {"p_init": 0.0}, "p_init"), ("square", {"n_queries": 1.5}, "n_queries"),
    ("autoattack", {"seed": -1}, "seed"), ("square", {"steps": 3}, "no parameter"),
])
def test_bad_parameters_are_refused(name, params, match):
    with pytest.raises(ValueError, match=match):
        attacks.get(name).check_params(**params)
