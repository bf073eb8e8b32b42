"""The attacks' adversarial images as the certifier's candidate counterexamples (issue 28).

An attack's success counts as a counterexample only if the image, moved into the ball by
at most float rounding, is misclassified by the model; certified examples never change.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfdisc import attacks, certify, data, evaluate, models
from tfdisc.certify import box as box_lib
from tfdisc.certify import candidates as candidates_lib


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    x, y = data.load_arrays("mnist", "train", data_dir=mnist_dir)
    xt, yt = data.load_arrays("mnist", "test", data_dir=mnist_dir)
    return (x[:3000].astype(np.float32) / 255.0, y[:3000],
            xt[:120].astype(np.float32) / 255.0, yt[:120])


@pytest.fixture(scope="module")
def model(mnist):
    tf.keras.utils.set_random_seed(0)
    x, y, _, _ = mnist
    net = models.build("fcn2", precision="full", input_bits=2, width=32, depth=2)
    net.compile(tf.keras.optimizers.Adam(2e-3),
                tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, batch_size=100, epochs=2, verbose=0)
    return net


def _pgd(model, x, y, eps):
    tf.random.set_seed(1)
    return attacks.pgd(model, x, y, eps, step_size=attacks.default_step_size(eps, 10), steps=10,
                       random_start=True).numpy()


def test_into_ball_moves_rounding_excess_inside_and_refuses_the_rest(model, mnist):
    _, _, x, y = mnist
    eps = 0.1
    box = certify.input_box(model, x[:4], eps)
    inside = np.clip(x[0] + np.float32(eps), 0, 1).astype(np.float32)
    # One ulp above x + ε (float rounding of the attack's step): moved inside, pixel by pixel.
    over = np.nextafter(inside, np.float32(2.0))
    moved = box_lib.into_ball(box, 0, over)
    assert moved is not None and moved.dtype == np.float32
    assert np.all(np.abs(moved.astype(np.float64) - x[0]) <= eps)
    assert moved.min() >= 0.0 and moved.max() <= 1.0
    assert np.max(np.abs(moved.astype(np.float64) - over)) < 1e-6
    # Twice ε, NaN, another shape or dtype: no candidate.
    assert box_lib.into_ball(box, 0, np.clip(x[0] + 2 * eps, 0, 1).astype(np.float32)) is None
    assert box_lib.into_ball(box, 0, np.full_like(x[0], np.nan)) is None
    assert box_lib.into_ball(box, 0, x[0][..., 0]) is None
    assert box_lib.into_ball(box, 0, x[0].astype(np.float64)) is None
    # An image below the clip range by more than rounding is refused.
    assert x[0].min() == 0.0 and box_lib.into_ball(box, 0, x[0] - np.float32(0.05)) is None


def test_attack_images_decide_examples_and_only_real_counterexamples(model, mnist):
    _, _, x, y = mnist
    eps = 0.2
    x_adv = _pgd(model, x, y, eps)
    broken = model(x_adv).numpy().argmax(1) != y
    assert broken.sum() >= 10  # the test needs counterexamples to find
    base = certify.certify(model, x, y, eps, search=False, method="branch", complete_max_free=0)
    cert = certify.certify(model, x, y, eps, search=False, method="branch", complete_max_free=0,
                           candidates={"pgd": x_adv})
    by_attack = cert.decided_by == "attack:pgd"
    assert by_attack.sum() >= 5
    # The candidates decide exactly the open examples the attack broke; nothing certified moves.
    np.testing.assert_array_equal(by_attack, broken & (base.status == "unknown"))
    np.testing.assert_array_equal(cert.status == "certified", base.status == "certified")
    assert not np.any((base.status == "certified") & broken)
    for r in np.nonzero(by_attack)[0]:
        image = cert.counterexamples[r]
        assert np.max(np.abs(image.astype(np.float64) - x[r])) <= eps
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert model(image[None]).numpy().argmax() != y[r]
    # Images from a larger ball are not this ε's counterexamples.
    far = _pgd(model, x, y, 0.4)
    wide = certify.certify(model, x, y, eps, search=False, method="branch", complete_max_free=0,
                           candidates={"pgd_0.4": far})
    assert not np.any(wide.decided_by == "attack:pgd_0.4")
    # Clean images as candidates decide nothing beyond the clean errors.
    same = certify.certify(model, x, y, eps, search=False, method="branch", complete_max_free=0,
                           candidates={"clean": x})
    np.testing.assert_array_equal(same.status, base.status)


def test_sweep_takes_candidates_per_eps_over_a_prefix(model, mnist):
    _, _, x, y = mnist
    epsilons = [0.1, 0.2]
    ds = data.from_arrays(x, y, batch_size=50)
    swept = evaluate.sweep(model, ds, epsilons, "pgd", keep_adversarial=70, steps=5)
    adv = swept["adversarial"]
    assert sorted(adv) == epsilons and all(a.shape == (70,) + x.shape[1:] for a in adv.values())
    for e, images in adv.items():
        assert np.max(np.abs(images.astype(np.float64) - x[:70])) <= e + 1e-6
    record = certify.sweep(model, ds, epsilons, search=False, method="branch",
                           complete_max_free=0, candidates={"pgd": adv})
    assert record["method"]["candidates"] == ["pgd"]
    for e in epsilons:
        counts = record["decided_by"][e]
        assert sum(counts.values()) == len(y)
        broken = model(adv[e]).numpy().argmax(1) != y[:70]
        open_before = certify.certify(model, x[:70], y[:70], e, search=False, method="branch",
                                      complete_max_free=0).status == "unknown"
        assert counts.get("attack:pgd", 0) == int(np.sum(broken & open_before))
        # The certifier's counterexamples bound robust accuracy at least as tightly as PGD on
        # the images it covered.
        assert record["status_counts"][e]["counterexample"] >= int(broken.sum())


def test_keep_adversarial_matches_the_attack_accuracy(model, mnist):
    _, _, x, y = mnist
    ds = data.from_arrays(x, y, batch_size=40)
    for attack in ("fgsm", "pgd"):
        swept = evaluate.sweep(model, ds, [0.1], attack, keep_adversarial=len(y),
                               **({"steps": 3} if attack == "pgd" else {}))
        images = swept["adversarial"][0.1]
        acc = np.mean(model(images).numpy().argmax(1) == y)
        assert acc == pytest.approx(swept["top1"][0.1], abs=1.0 / len(y) + 1e-9), attack
    assert "adversarial" not in evaluate.sweep(model, ds, [0.1], "fgsm")
    with pytest.raises(ValueError, match="keep_adversarial"):
        evaluate.sweep(model, ds, [0.1], "fgsm", keep_adversarial=-1)
    with pytest.raises(ValueError, match="keep_adversarial"):
        evaluate.sweep(model, ds, [0.1], "fgsm", keep_adversarial=True)


def test_bad_candidates_are_refused_by_name(model, mnist):
    _, _, x, y = mnist
    with pytest.raises(ValueError, match="candidates"):
        certify.certify(model, x[:4], y[:4], 0.1, candidates=[x[:4]])
    with pytest.raises(ValueError, match=r"candidates\['a'\].*shaped"):
        certify.certify(model, x[:4], y[:4], 0.1, candidates={"a": x[:3]})
    with pytest.raises(ValueError, match=r"candidates\['a'\].*dtype"):
        certify.certify(model, x[:4], y[:4], 0.1, candidates={"a": x[:4].astype(np.float64)})
    ds = data.from_arrays(x[:4], y[:4], batch_size=4)
    with pytest.raises(ValueError, match="candidates"):
        certify.sweep(model, ds, [0.1], candidates={"a": x[:4]})
    with pytest.raises(ValueError, match="candidates"):
        certify.sweep(model, ds, [0.1], candidates={"a": {-0.1: x[:4]}})


def test_for_batch_pads_a_prefix_with_the_clean_images():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    cands = {"a": {0.1: np.full((4, 2), -1.0, np.float32)}}
    first = candidates_lib.for_batch(cands, 0.1, 0, x[:3])["a"]
    np.testing.assert_array_equal(first, np.full((3, 2), -1.0))
    second = candidates_lib.for_batch(cands, 0.1, 3, x[3:])["a"]
    np.testing.assert_array_equal(second[0], [-1.0, -1.0])
    np.testing.assert_array_equal(second[1:], x[4:])
    assert candidates_lib.for_batch(cands, 0.1, 4, x[4:]) == {}
    assert candidates_lib.for_batch(cands, 0.2, 0, x[:3]) == {}
