"""R-FGSM adversarial training as a Keras model wrapper (``train_step`` override).

``AdversarialTraining(model, eps)`` wraps any zoo model (full, binary or xnor):
each training batch has a fraction ``adv_ratio`` of its examples replaced by
R-FGSM examples crafted on the fly against the current weights (gradient
through the input quantizer, straight-through unless the layer says
otherwise), the rest stay clean (Kurakin et al. 2017 mix; half and half by
default). Compile and fit the wrapper like any Keras model; save, evaluate and
attack ``wrapper.inner`` (the wrapped model itself).

Example:
  >>> model = tfdisc.models.build("fcn2", precision="binary", input_bits=2)
  >>> trainer = AdversarialTraining(model, eps=0.3)
  >>> trainer.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
  ...                 ["accuracy"])
  >>> trainer.fit(ds_train, epochs=10)
  >>> tfdisc.evaluate.robustness(model, ds_test, [0.1, 0.2, 0.3])

References:
  Paper sec. IV (R-FGSM adversarial training, ε = 0.3 MNIST, 8/255 CIFAR10,
  α = ε/2); Tramèr et al., arXiv:1705.07204; Kurakin et al., arXiv:1611.01236.
"""
import math
import numbers

import tensorflow as tf

from tfdisc import attacks as attacks_lib
from tfdisc import checks as checks_lib
from tfdisc import datasets

__all__ = ["AdversarialTraining", "CERTIFIED_TRAIN_MIXES", "DEFAULT_TRAIN_EPS", "NonFiniteLossError",
           "RfgsmAdversary", "StopOnNonFiniteLoss", "adversarial_eps"]

# What the κ term of certified training weighs: the clean images (Gowal et al. 2018), or
# RfgsmAdversary's (MTL-IBP) — the binaries' --certified_train_mix.
CERTIFIED_TRAIN_MIXES = ("clean", "adversarial")

# Paper sec. IV: ε used to make training adversaries ({dataset: ε}, from each dataset's
# entry in tfdisc.datasets: 0.3 for MNIST, 8/255 for CIFAR and ImageNet).
DEFAULT_TRAIN_EPS = datasets.TRAIN_EPS


def adversarial_eps(dataset, eps=None):
    """``eps`` if given, else the paper's training ε for ``dataset`` (8/255 if unknown)."""
    if eps is not None:
        return checks_lib.check_eps(eps, "train_eps")
    return DEFAULT_TRAIN_EPS.get(dataset, datasets.DEFAULT_TRAIN_EPS)


def _check_ratio(adv_ratio):
    if isinstance(adv_ratio, bool) or not isinstance(adv_ratio, numbers.Real) or not (
            0.0 <= float(adv_ratio) <= 1.0):
        raise ValueError(f"`adv_ratio` must be a number in [0, 1], got {adv_ratio!r}.")
    return float(adv_ratio)


class AdversarialTraining(tf.keras.Model):
    """Trains the wrapped model on a clean/R-FGSM mix of every batch.

    Args:
      model: Keras model returning logits (e.g. ``tfdisc.models.build(...)``).
      eps: R-FGSM budget ε (≥ 0) of the training adversaries.
      alpha: R-FGSM random step, in [0, eps]; default ``eps / 2``.
      adv_ratio: fraction of each batch replaced by adversarial examples, in
        [0, 1]; default 0.5.
      clip: valid input range.

    Raises:
      ValueError: bad eps, alpha, adv_ratio or clip.
    """

    def __init__(self, model, eps, *, alpha=None, adv_ratio=0.5, clip=(0.0, 1.0), **kwargs):
        kwargs.setdefault("name", f"{model.name}_rfgsm")
        super().__init__(**kwargs)
        self.inner = model
        self.eps = checks_lib.check_eps(eps)
        self.alpha = checks_lib.check_alpha(alpha, self.eps)
        self.adv_ratio = _check_ratio(adv_ratio)
        self.clip = checks_lib.check_clip(clip)
        self._attack = attacks_lib.get("rfgsm")

    def call(self, inputs, training=None):
        return self.inner(inputs, training=training)

    def adversarial_batch(self, x, y):
        """The training batch: the first ``round(adv_ratio·n)`` examples made adversarial."""
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            x = tf.cast(x, tf.float32)
        y = tf.convert_to_tensor(y)
        n = tf.shape(x)[0]
        k = tf.cast(tf.round(self.adv_ratio * tf.cast(n, tf.float32)), tf.int32)
        x_adv = self._attack.fn(self.inner, x[:k], y[:k], self.eps, self.clip, alpha=self.alpha)
        return tf.stop_gradient(tf.concat([x_adv, x[k:]], axis=0))

    def train_step(self, data):
        x, y, sample_weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        x_mix = self.adversarial_batch(x, y)
        with tf.GradientTape() as tape:
            y_pred = self(x_mix, training=True)
            loss = self.compute_loss(x_mix, y, y_pred, sample_weight)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self.compute_metrics(x_mix, y, y_pred, sample_weight)

    def describe(self):
        """JSON-able record of the training adversary (for results.json)."""
        from tfdisc import evaluate  # pylint: disable=import-outside-toplevel

        return {"method": "rfgsm", "eps": self.eps, "alpha": self.alpha,
                "adv_ratio": self.adv_ratio, "gradient": evaluate.quantizer_gradient(self.inner)}


class RfgsmAdversary:
    """R-FGSM images at a scheduled ε (random step α = ε/2): the adversary of MTL-IBP.

    ``tfdisc.certify.CertifiedTraining(model, eps, adversary=RfgsmAdversary())`` trains on
    ``κ·CE(z(x_adv)) + (1 − κ)·CE(ẑ)`` (De Palma et al. 2024) instead of the clean
    cross-entropy. Called as ``adversary(model, x, y, eps, clip)`` inside ``train_step``;
    ``eps`` may be a scalar tensor (the ε ramp), and ε = 0 returns ``x`` clipped. The
    gradient goes through the model's input quantizer as the layer says
    (straight-through by default).
    """

    def __init__(self):
        self._attack = attacks_lib.get("rfgsm")

    def __call__(self, model, x, y, eps, clip):
        return self._attack.fn(model, x, y, eps, clip, alpha=eps / 2.0)

    @staticmethod
    def describe():
        return {"attack": "rfgsm", "alpha": "eps/2", "eps": "the scheduled training eps"}


class NonFiniteLossError(ArithmeticError):
    """Training diverged: the loss became NaN or infinite."""


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Raises ``NonFiniteLossError`` at the end of an epoch whose loss is NaN or infinite.

    Keras's ``TerminateOnNaN`` only sets ``stop_training``: ``fit`` returns
    normally, and a diverged model would be evaluated and recorded like a
    trained one. The epoch's loss is the mean over its batches, so one
    non-finite batch loss makes it non-finite; checking once per epoch adds no
    per-step synchronisation (a check per batch made Keras warn of a slow callback).
    """

    def __init__(self, hint=""):
        super().__init__()
        self.hint = hint

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"The training loss became {float(loss)} in epoch {epoch + 1}: training "
                f"diverged and the run was stopped; nothing was recorded."
                + (f" {self.hint}" if self.hint else ""))
