"""AutoAttack in the sweeps (issue 29): per-component records, the distributed sweep, progress,
and every attack's own loss in results.json.

Tiny linear models whose breakable examples every attack breaks exactly (no near ties), so the
single-device and the distributed sweep must agree although the replicas draw other random
starts than the whole batch does.
"""
import logging

import numpy as np
import pytest
import tensorflow as tf

from tfdisc import attacks, evaluate, layers, results

EPS = 0.15
# Small budgets; enough for the exact optimum of a linear model (see attacks_auto_test).
AA = {"n_iter": 10, "n_target_classes": 3, "n_queries": 1000}
FAST = {"n_iter": 10, "n_target_classes": 1, "n_queries": 100}  # smaller graphs to trace


def linear(classes=4, seed=7, bits=None):
    """``W x + b`` on 3×3×1 inputs, optionally behind an input quantizer."""
    rng = np.random.RandomState(seed)
    inp = tf.keras.Input((3, 3, 1))
    h = inp if bits is None else layers.BitDepthQuantization(bits)(inp)
    dense = tf.keras.layers.Dense(classes)
    model = tf.keras.Model(inp, dense(tf.keras.layers.Flatten()(h)))
    dense.set_weights([rng.normal(0, 1, (9, classes)).astype(np.float32),
                       rng.normal(0, 0.3, classes).astype(np.float32)])
    return model


def clear_examples(model, n, seed=8, eps=EPS, gap=0.05):
    """``n`` images labelled as predicted whose best adversarial margin is ≥ ``gap`` from 0,
    the best margin over the ε-ball ∩ [0, 1] being analytic for a linear model."""
    w, b = (v.numpy() for v in model.layers[-1].weights)
    x = np.random.RandomState(seed).uniform(0, 1, (8 * n, 3, 3, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), -1)
    flat = x.reshape(len(x), -1).astype(np.float64)
    best = np.full(len(x), -np.inf)
    for k in range(w.shape[1]):
        d = w[:, k][None, :] - w.T[y]  # [N, 9]
        x_star = np.clip(flat + eps * np.sign(d), 0.0, 1.0)
        margin = np.sum(x_star * d, 1) + b[k] - b[y]
        best = np.where(y != k, np.maximum(best, margin), best)
    keep = np.flatnonzero(np.abs(best) > gap)[:n]
    assert len(keep) == n and 0 < np.sum(best[keep] > 0) < n  # both kinds of example
    return x[keep], y[keep].astype(np.int64)


def dataset(x, y, batch=16):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def test_sweep_records_each_component_and_the_ensemble_on_the_same_images():
    model = linear()
    x, y = clear_examples(model, 40)
    y = y.copy()
    y[::9] = (y[::9] + 1) % 4  # a few examples misclassified clean
    result = evaluate.sweep(model, dataset(x, y), [0.05, EPS], "autoattack", **AA)
    stages = result["stages"]
    assert list(stages) == ["apgd_ce", "apgd_t", "square"]  # in the order they ran
    for eps in (0.05, EPS):
        after = [stages[name][eps] for name in stages]
        assert after == sorted(after, reverse=True)  # each component only breaks more
        assert result["top1"][eps] <= min(after)  # the ensemble ≤ each component
        assert result["top1"][eps] == pytest.approx(after[-1])  # the last one is the ensemble
        assert after[0] <= result["top1"][0.0]
    for name in stages:
        assert stages[name][0.0] == result["top1"][0.0]
    # APGD-CE alone: the first stage is its own accuracy on those images.
    alone = attacks.get("apgd_ce")(model, x, y, EPS, n_iter=AA["n_iter"]).numpy()
    assert stages["apgd_ce"][EPS] == np.mean(np.argmax(model(alone).numpy(), -1) == y)

    record = evaluate.attack_record("autoattack", model, **AA)
    entry = results.attack_entry(record, result, [0.05, EPS])
    assert list(entry["components"]) == ["apgd_ce", "apgd_t", "square"]
    for name, part in entry["components"].items():
        assert part["examples"] == 40 and part["clean_accuracy"] == result["top1"][0.0]
        assert part["adversarial_accuracy"] == {"0.05": stages[name][0.05],
                                                "0.15": stages[name][EPS]}
        assert entry["adversarial_accuracy"]["0.15"] <= part["adversarial_accuracy"]["0.15"]
    assert "cumulative" in entry["components_meaning"]
    assert results.check_attacks({"autoattack": entry}) == []


def test_autoattack_record_states_budgets_sign_gradient_quantizer_gradient_and_losses():
    model = linear(bits=2)
    record = evaluate.attack_record("autoattack", model, sign_gradient="tanh")
    assert record["gradient"] == "straight_through"  # through the input quantizer
    assert record["sign_gradient"] == "tanh"
    assert (record["n_iter"], record["n_queries"], record["n_target_classes"]) == (100, 5000, 9)
    assert record["n_restarts"] == 1 and record["sequence"] == ["apgd_ce", "apgd_t", "square"]
    assert set(record["loss"]) == {"apgd_ce", "apgd_t", "square"}
    assert "DLR" in record["loss"]["apgd_t"] and "no gradient" in record["loss"]["square"]


@pytest.mark.parametrize("name", attacks.available())
def test_every_attack_states_its_own_loss(name):
    record = evaluate.attack_record(name, linear())
    assert record["loss"] and "not stated" not in str(record["loss"])
    if name in ("fgsm", "pgd", "rfgsm", "apgd_ce"):
        assert record["loss"] == "sparse softmax cross-entropy, true labels"
    elif name in ("square", "quantized_search"):
        assert record["loss"].startswith("margin") and record["gradient"] == "not used"
    elif name == "apgd_t":
        assert "DLR" in record["loss"]


def test_a_broken_malformed_components_block_is_refused():
    entry = {"adversarial_accuracy": {"0.1": 0.5}, "components": {"apgd_ce": {
        "adversarial_accuracy": {"0.1": 50.0}}}}  # a percentage
    with pytest.raises(ValueError, match=r"attacks\.autoattack\.components\.apgd_ce"):
        results.check_attacks({"autoattack": entry})
    with pytest.raises(ValueError, match="components"):
        results.check_attacks({"autoattack": {"adversarial_accuracy": {}, "components": [1]}})


def test_transfer_records_no_components():
    """The components' masks are the source model's: they say nothing about the target."""
    model, target = linear(), linear(seed=9)
    x, y = clear_examples(model, 16)
    result = evaluate.sweep(target, dataset(x, y), [EPS], "autoattack", attack_model=model,
                            **FAST)
    assert "stages" not in result


def test_three_classes_record_two_components():
    model = linear(classes=3, seed=11)
    x = np.random.RandomState(0).uniform(0, 1, (12, 3, 3, 1)).astype(np.float32)
    y = np.argmax(model(x).numpy(), -1)
    result = evaluate.sweep(model, dataset(x, y), [EPS], "autoattack", **AA)
    assert list(result["stages"]) == ["apgd_ce", "square"]


def test_distributed_sweep_matches_the_single_device_sweep(distribute_scope):
    strategy = distribute_scope
    model = linear()  # built inside the strategy's scope when there is one
    x, y = clear_examples(model, 24)
    single = evaluate.sweep(model, dataset(x, y), [EPS], "autoattack", **FAST)
    split = evaluate.sweep(model, dataset(x, y), [EPS], "autoattack", strategy=strategy, **FAST)
    assert split["examples"] == single["examples"] == 24
    assert split["top1"] == single["top1"]
    assert split["stages"] == single["stages"]
    assert 0.0 < single["top1"][EPS] < single["top1"][0.0]  # the attack did something


def test_sweep_logs_its_progress_per_batch(caplog):
    model = linear()
    x, y = clear_examples(model, 16)
    with caplog.at_level(logging.INFO, logger="absl"):
        evaluate.sweep(model, dataset(x, y, batch=8), [EPS], "square", n_queries=50)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sweep square")]
    assert "sweep square: batch 1/2, 8 examples" in lines[0]
    assert "sweep square: 16 examples in 2 batch(es)" in lines[-1]


def test_graph_stages_of_a_single_attack_is_refused():
    with pytest.raises(ValueError, match="not an ensemble"):
        attacks.get("pgd").graph_stages(linear(), tf.zeros([1, 3, 3, 1]),
                                        tf.zeros([1], tf.int64), 0.1, (0.0, 1.0))
    assert attacks.get("pgd").stage_names(linear()) == ()


def test_register_refuses_stages_without_their_names():
    with pytest.raises(ValueError, match="go together"):
        attacks.register("half_ensemble", stages=lambda *a, **k: None)(lambda *a: None)
    assert "half_ensemble" not in attacks.available()


def test_run_records_components_also_when_the_test_set_is_cut_into_prefixes():
    """A run with --pgd_test_limit evaluates every attack on prefixes and merges the parts."""
    from tfdisc import pipeline, run_config  # pylint: disable=import-outside-toplevel

    model = linear()
    x, y = clear_examples(model, 24)
    cfg = run_config.Config(dataset="mnist", epsilons=(EPS,), attacks=("autoattack", "pgd"),
                            attack_params={"autoattack": FAST}, attack_limits={"pgd": 8},
                            eval_batch_size=8)
    entry = pipeline.evaluate_attacks(model, cfg, x, y)["autoattack"]
    whole = evaluate.sweep(model, dataset(x, y, batch=8), [EPS], "autoattack", **FAST)
    assert entry["examples"] == 24 and "8" in entry["prefixes"]
    for name in ("apgd_ce", "apgd_t", "square"):
        assert entry["components"][name]["adversarial_accuracy"]["0.15"] == pytest.approx(
            whole["stages"][name][EPS])
    assert entry["adversarial_accuracy"]["0.15"] == pytest.approx(whole["top1"][EPS])
