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
