"""Average pooling's interval rule covers the model's rounding in any summation order.

The window sum of mixed-sign inputs cancels: its float32 rounding error is bounded by
γ·Σ|x|, not by the magnitude of the average, which can be far smaller.
"""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfdisc.certify import rules


def _float32_averages(window):
    """The float32 average of ``window`` for every order of its sum."""
    out = set()
    for order in itertools.permutations(window):
        total = np.float32(0)
        for v in order:
            total = np.float32(total + np.float32(v))
        out.add(float(np.float32(total / np.float32(len(window)))))
    return out


@pytest.mark.parametrize("layer", [tf.keras.layers.AveragePooling2D(2),
                                   tf.keras.layers.GlobalAveragePooling2D()])
def test_average_pooling_bounds_hold_for_every_summation_order(layer):
    window = [1e8, 1.0, -1e8, 0.0]  # float32 averages 0 or 0.25, depending on the order
    averages = _float32_averages(window)
    assert len(averages) > 1  # the case really depends on the order
    x = tf.constant(np.array(window, np.float32).reshape(1, 2, 2, 1))
    layer.build(x.shape)
    rule = rules.lookup(layer)
    iv = rule.interval(layer, [rules.Interval(x, x)], rules.Context(True, False))
    lower, upper = float(tf.reduce_min(iv.lower)), float(tf.reduce_max(iv.upper))
    for avg in averages:
        assert lower <= avg <= upper, (lower, upper, sorted(averages))
