"""Helpers shared by the test modules (import them from here, not from other tests)."""
import pickle
import struct

import numpy as np
import tensorflow as tf

from tfdisc import models

SHAPE = (8, 8, 1)
CLASSES = 3


def synthetic(n, seed):
    """Three classes of 8×8 images: bright top, bright bottom, bright left half; noisy."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, CLASSES, size=n)
    x = rng.uniform(0.0, 0.6, size=(n,) + SHAPE)
    x[y == 0, :4] += 0.25
    x[y == 1, 4:] += 0.25
    x[y == 2, :, :4] += 0.25
    return np.clip(x, 0.0, 1.0).astype("float32"), y.astype("int64")


def small_model(precision="full", bits=8, gradient="straight_through", train=True, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = models.build("fcn2", precision=precision, input_bits=bits, num_classes=CLASSES,
                         input_shape=SHAPE, width=32, depth=2, gradient=gradient)
    if train:
        x, y = synthetic(512, seed)
        model.compile(tf.keras.optimizers.Adam(1e-2),
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      ["accuracy"])
        model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


def tiny_fcn2(precision, seed, *, depth=3, width=12, classes=3, mean_sd=1.0, beta_sd=None):
    """An untrained 2-bit fcn2 on 3×4 images (≤ 4^12 reachable inputs, so every box can be
    enumerated) with random batch-norm statistics, so units of every kind occur; and its rng."""
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = models.build("fcn2", precision=precision, input_bits=2, width=width, depth=depth,
                         input_shape=(3, 4, 1), num_classes=classes)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, mean_sd, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n))
            if beta_sd is not None and layer.beta is not None:
                layer.beta.assign(rng.normal(0, beta_sd, n))
    return model, rng


def box_points(box, r, most=None):
    """The quantized inputs (flat bins) of example ``r``'s box: all, or about ``most`` of them
    evenly spaced."""
    lo, hi = box.lo_bin[r].reshape(-1), box.hi_bin[r].reshape(-1)
    free = np.nonzero(hi > lo)[0]
    grid = np.indices(hi[free] - lo[free] + 1).reshape(len(free), -1).T
    for g in grid if most is None else grid[:: max(1, len(grid) // most)]:
        bins = lo.copy()
        bins[free] = lo[free] + g
        yield bins


class Py2StylePickler(pickle._Pickler):  # pylint: disable=protected-access
    """Writes str and bytes as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), protocol 2.

    The official CIFAR python batches were written this way by Python 2's cPickle:
    a dict of str keys, a list of int labels and a uint8 numpy array.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # pylint: disable=protected-access

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def random_batch_norms(model, seed):
    """Random batch-norm statistics (some gammas negative, variances ≥ 0.5), so the folded
    thresholds of a packed model are not the trivial ones of a fresh model."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            weights = []
            for w in layer.weights:
                name = w.name.split("/")[-1].split(":")[0]
                v = rng.standard_normal(w.shape).astype(np.float32)
                weights.append(np.abs(v) + 0.5 if name == "moving_variance" else v)
            layer.set_weights(weights)
