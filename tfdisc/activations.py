"""Activation analysis (paper Fig. 6): L1 norms of hidden-layer outputs, clean vs adversarial.

``layer_norms`` computes, for every ε (0 = clean), the per-example L1 norm of
the named layers' outputs on inputs attacked with any registered attack
(gradient through the input quantizer, as the model's layer says);
``normalized_stats`` divides by the model's mean clean norm, so clean is
centred on 1 and models of different scale compare.
"""
import numpy as np
import tensorflow as tf

from tfdisc import attacks as attacks_lib
from tfdisc import results

__all__ = ["layer_norms", "normalized_stats", "summary"]


def layer_norms(model, x, y, epsilons, layer_names, *, attack="fgsm", batch_size=500,
                clip=(0.0, 1.0), **attack_params):
    """``{layer: {ε key: per-example L1 norms}}`` of the named layers' outputs.

    Args:
      model: Keras model returning logits.
      x, y: float test images in ``clip`` and their labels.
      epsilons: ε values; 0 (clean) is always included.
      layer_names: layers of ``model`` whose outputs are measured.
      attack: a name of ``tfdisc.attacks.available()``; ``attack_params`` its
        parameters (e.g. ``steps`` for PGD).

    Raises:
      ValueError: a layer the model does not have; as the attack.
    """
    names = [layer.name for layer in model.layers]
    missing = [n for n in layer_names if n not in names]
    if missing:
        raise ValueError(f"Model {model.name} has no layer(s) {missing}; layers: {names}.")
    attack = attacks_lib.get(attack)
    probe = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in layer_names])
    norms = {n: {} for n in layer_names}
    for eps in [0.0] + sorted(e for e in set(epsilons) if e > 0):
        per_layer = {n: [] for n in layer_names}
        for start in range(0, len(y), batch_size):
            xb = tf.constant(x[start:start + batch_size])
            yb = y[start:start + batch_size]
            if eps > 0:
                xb = attack(model, xb, yb, eps, clip=clip, **attack_params)
            outs = probe(xb, training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for n, out in zip(layer_names, outs):
                per_layer[n].append(tf.reduce_sum(
                    tf.abs(tf.reshape(out, [tf.shape(out)[0], -1])), axis=1).numpy())
        for n in layer_names:
            norms[n][results.epsilon_key(eps)] = np.concatenate(per_layer[n])
    return norms


def summary(values, scale):
    """Mean, spread and percentiles of ``values / scale``."""
    v = values / scale
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p5": float(np.percentile(v, 5)), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


def normalized_stats(norms):
    """Per layer: the mean clean L1 norm and the normalized norms and their summaries.

    Returns:
      ``(normalized, stats)``: ``{layer: {ε key: values / mean clean}}`` and
      ``{layer: {"mean_clean_l1": …, "normalized": {ε key: summary}}}``.
    """
    normalized, stats = {}, {}
    for layer, by_eps in norms.items():
        scale = float(by_eps["0"].mean()) or 1.0
        normalized[layer] = {k: v / scale for k, v in by_eps.items()}
        stats[layer] = {"mean_clean_l1": scale,
                        "normalized": {k: summary(v, scale) for k, v in by_eps.items()}}
    return normalized, stats
