"""Certified (IBP) training as a Keras model wrapper (Gowal et al. 2018).

``CertifiedTraining(model, eps)`` trains the wrapped zoo model on
``κ·CE(z(x), y) + (1 − κ)·CE(ẑ(x, ε), y)``, where ``ẑ_j`` is the interval upper
bound of ``z_j − z_y`` over the reachable quantized box of ``x`` at ε
(``tfdisc.certify.box`` / ``tfdisc.certify.bounds``, float32, batch-norm batch
statistics of the clean batch). Given an ``adversary`` (e.g.
``tfdisc.training.RfgsmAdversary``), the first term is the cross-entropy of its
image of ``x`` at the current ε instead (MTL-IBP, De Palma et al. 2024: a convex
combination of an adversarial and a verified loss, meant for models certified by
a complete verifier rather than by IBP alone). ε ramps linearly from 0 to ``eps`` and κ from 1
to ``kappa_end`` between ``ramp_start`` and ``ramp_start + ramp_steps``
optimizer steps, as in Gowal et al. (κ: 1 → 0.5). Compile with an optimizer and
fit the wrapper like any Keras model; save, evaluate and certify
``wrapper.inner``.

Example:
  >>> model = tfdisc.models.build("fcn2", input_bits=2)
  >>> trainer = CertifiedTraining(model, eps=0.1, ramp_start=600, ramp_steps=6000)
  >>> trainer.compile(tf.keras.optimizers.Adam(1e-3))
  >>> trainer.fit(ds_train, epochs=20)
  >>> tfdisc.certify.robustness(model, ds_test, [0.1])

References:
  Gowal et al., "On the effectiveness of interval bound propagation for
  training verifiably robust models", arXiv:1810.12715.
  De Palma et al., "Expressive losses for verified robustness via convex
  combinations", ICLR 2024, arXiv:2305.13991 (MTL-IBP).
"""
import numbers

import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc.certify import bounds as bounds_lib
from tfdisc.certify import box as box_lib
from tfdisc.certify import crown_ibp

__all__ = ["BOUNDS", "CertifiedTraining"]

BOUNDS = ("ibp", "crown_ibp")


def _check_nonneg_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    return int(value)


class CertifiedTraining(tf.keras.Model):
    """Trains the wrapped model on the IBP loss mixed with cross-entropy.

    Args:
      model: Keras model returning logits, first layer ``BitDepthQuantization``
        (or none: the box is then the plain L∞ ball).
      eps: final training ε (≥ 0).
      ramp_start: optimizer steps of clean training before ε starts to grow.
      ramp_steps: steps over which ε grows linearly to ``eps`` (and κ falls).
      kappa_end: final weight of the clean cross-entropy, in [0, 1].
      clip: valid input range.
      bounds: ``"ibp"`` (interval bounds, default) or ``"crown_ibp"`` (Zhang et al.
        2020: ``β·CROWN-IBP + (1 − β)·IBP`` margin bounds, β ramping from
        ``crown_beta[0]`` to ``crown_beta[1]`` with ε; full-precision chains of
        Dense/Conv2D/BatchNorm/ReLU only, ``tfdisc.certify.crown_ibp``).
      crown_beta: ``(start, end)`` of β, each in [0, 1]; default (1, 0) as in the paper.
      adversary: None (default: κ weighs the clean cross-entropy), or a callable
        ``(model, x, y, eps, clip) -> images`` in the ε-ball of ``x`` (``eps`` a scalar
        tensor: the scheduled ε), whose cross-entropy κ weighs instead (MTL-IBP with
        α = 1 − κ); its ``describe()``, if any, goes into this ``describe()``.

    Raises:
      ValueError: bad arguments; ``UnsupportedLayerError`` for a layer IBP
        cannot bound.
    """

    def __init__(self, model, eps, *, ramp_start=0, ramp_steps=1, kappa_end=0.5,
                 clip=(0.0, 1.0), bounds="ibp", crown_beta=(1.0, 0.0), adversary=None, **kwargs):
        kwargs.setdefault("name", f"{model.name}_ibp")
        super().__init__(**kwargs)
        self.inner = model
        self.eps = checks_lib.check_eps(eps)
        self.ramp_start = _check_nonneg_int(ramp_start, "ramp_start")
        self.ramp_steps = max(1, _check_nonneg_int(ramp_steps, "ramp_steps"))
        if isinstance(kappa_end, bool) or not isinstance(kappa_end, numbers.Real) or not (
                0.0 <= kappa_end <= 1.0):
            raise ValueError(f"`kappa_end` must be a number in [0, 1], got {kappa_end!r}.")
        self.kappa_end = float(kappa_end)
        self.clip = checks_lib.check_clip(clip)
        self.quantizer = box_lib.input_quantizer(model)
        bounds_lib.check_model(model)
        if bounds not in BOUNDS:
            raise ValueError(f"`bounds` must be one of {BOUNDS}, got {bounds!r}.")
        if bounds == "crown_ibp" and not crown_ibp.supports(model):
            raise ValueError(f"bounds='crown_ibp' needs a full-precision chain of Dense/Conv2D/"
                             f"BatchNorm/ReLU layers; model {model.name!r} has another layer "
                             f"(e.g. sign activations, pooling): use bounds='ibp' (interval "
                             f"bounds).")
        self.bounds = bounds
        if adversary is not None and not callable(adversary):
            raise TypeError(f"`adversary` must be None or a callable (model, x, y, eps, clip) "
                            f"-> images, got {adversary!r}.")
        self.adversary = adversary
        try:
            self.crown_beta = tuple(float(b) for b in crown_beta)
        except (TypeError, ValueError):
            self.crown_beta = ()
        if len(self.crown_beta) != 2 or not all(0.0 <= b <= 1.0 for b in self.crown_beta):
            raise ValueError(f"`crown_beta` must be (start, end) in [0, 1], got {crown_beta!r}.")
        shape = model.output_shape
        self.num_classes = shape[-1] if isinstance(shape, tuple) and isinstance(
            shape[-1], int) else None
        # Training accuracy is on the images of the κ term: clean, or adversarial (R-FGSM).
        self._natural = "clean_accuracy" if adversary is None else "adversarial_accuracy"
        self._trackers = {name: tf.keras.metrics.Mean(name=name)
                          for name in ("loss", "clean_accuracy", self._natural, "ibp_verified",
                                       "eps")}

    @classmethod
    def for_epochs(cls, model, eps, *, steps_per_epoch, epochs, **kwargs):
        """The schedule of ``experiments/results/certify``: one clean epoch, then ε and κ ramp
        over 40% of the epochs (at least one), then constant."""
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or (
                steps_per_epoch < 1):
            raise ValueError(f"`steps_per_epoch` must be a positive integer, got "
                             f"{steps_per_epoch!r}.")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"`epochs` must be a positive integer, got {epochs!r}.")
        ramp = max(1, int(0.4 * epochs)) * steps_per_epoch
        return cls(model, eps, ramp_start=steps_per_epoch if epochs > 1 else 0, ramp_steps=ramp,
                   **kwargs)

    @property
    def metrics(self):
        return list(self._trackers.values())

    def call(self, inputs, training=None):
        return self.inner(inputs, training=training)

    def _ramp(self, step):
        t = (tf.cast(step, tf.float32) - self.ramp_start) / float(self.ramp_steps)
        return tf.clip_by_value(t, 0.0, 1.0)

    def schedule(self, step):
        """(ε, κ) at optimizer step ``step``."""
        t = self._ramp(step)
        return self.eps * t, 1.0 - (1.0 - self.kappa_end) * t

    def beta(self, step):
        """Weight of the CROWN-IBP bound at ``step`` (0 with ``bounds="ibp"``)."""
        if self.bounds != "crown_ibp":
            return tf.constant(0.0)
        start, end = self.crown_beta
        return start + (end - start) * self._ramp(step)

    def _box(self, x, eps):
        if self.quantizer is None:
            lo, hi = box_lib.interval_tensor(x, eps, self.clip, (0.0, 1.0))
            return lo, hi, x
        point = self.quantizer.quantize(x, gradient="none")
        lo, hi = box_lib.quantized_interval(self.quantizer, x, eps, self.clip)
        return lo, hi, point

    def robust_loss(self, x, y, eps, training=True, beta=0.0):
        """Per-example bound cross-entropy and whether each example is bound-verified: the
        interval bounds, mixed with CROWN-IBP's by ``beta`` (``bounds="crown_ibp"``)."""
        lo, hi, point = self._box(x, eps)
        margins = bounds_lib.margin_upper(self.inner, lo, hi, y, exact=False, training=training,
                                          point=point)
        if self.bounds == "crown_ibp":  # skipped where it cannot change the loss (10× IBP's cost)
            beta = tf.cast(beta, tf.float32)
            ibp = margins

            def mixed():
                crown = crown_ibp.margin_upper(self.inner, lo, hi, y, training=training,
                                               point=point)
                return beta * crown + (1.0 - beta) * ibp

            margins = tf.cond(tf.logical_and(beta > 0.0, tf.cast(eps, tf.float32) > 0.0), mixed,
                              lambda: ibp)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, margins, from_logits=True)
        onehot = tf.one_hot(tf.cast(y, tf.int32), tf.shape(margins)[-1])
        verified = tf.reduce_all((margins < 0.0) | (onehot > 0), axis=-1)
        return loss, verified

    def check_batch(self, data):
        """(float32 images, int labels ``[N]``) of a batch, checked as the attacks check them.

        Graph-safe (runs inside ``fit``): the label form and the image dtype are
        checked when traced; label range, finite pixels and pixels inside
        ``clip`` by assertions that stop ``fit`` with a message naming the problem.
        Labels: integers ``[N]`` or ``[N, 1]`` or one-hot floats
        (``tfdisc.checks.check_labels``).
        """
        x, y, weight = tf.keras.utils.unpack_x_y_sample_weight(data)
        if weight is not None:
            raise ValueError("CertifiedTraining does not support sample weights; pass "
                             "(images, labels) only.")
        if y is None:
            raise ValueError("CertifiedTraining needs (images, labels) batches, got no labels.")
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(
                f"CertifiedTraining needs float images inside clip {self.clip}, got "
                f"{x.dtype.name} images; convert 8-bit images first (e.g. "
                f"tfdisc.data.to_float).")
        x = tf.cast(x, tf.float32)
        checks = [tf.debugging.assert_all_finite(x, "CertifiedTraining: the images hold NaN "
                                                    "or infinite pixels.")]
        if self.clip is not None:
            tol = checks_lib.CLIP_TOLERANCE * (self.clip[1] - self.clip[0])
            msg = (f"CertifiedTraining: the images have pixels outside the clip range "
                   f"{self.clip}; scale them to it (e.g. uint8 / 255 for [0, 1]) or pass the "
                   f"matching `clip`.")
            checks += [tf.debugging.assert_greater_equal(x, self.clip[0] - tol, message=msg),
                       tf.debugging.assert_less_equal(x, self.clip[1] + tol, message=msg)]
        y_in = tf.convert_to_tensor(y)
        y = checks_lib.check_labels(y_in, self.num_classes)
        if y_in.dtype.is_floating:  # one-hot (check_labels checks its rows eagerly only)
            ones = tf.reduce_all(tf.equal(y_in, 0) | tf.equal(y_in, 1), axis=-1) & tf.equal(
                tf.reduce_sum(y_in, axis=-1), 1)
            checks.append(tf.debugging.assert_equal(
                ones, True, message="CertifiedTraining: float labels must be one-hot rows "
                                    "(zeros and a single one); pass integer labels."))
        if self.num_classes is not None:
            msg = (f"CertifiedTraining: labels must lie in [0, {self.num_classes}) for a model "
                   f"with {self.num_classes} classes.")
            checks += [tf.debugging.assert_non_negative(y, message=msg),
                       tf.debugging.assert_less(y, tf.constant(self.num_classes, y.dtype),
                                                message=msg)]
        with tf.control_dependencies(checks):
            return tf.identity(x), tf.cast(y, tf.int32)

    def natural_batch(self, x, y, eps):
        """The images of the κ term: ``x``, or the adversary's images of ``x`` at ``eps``
        (no gradient flows through them)."""
        if self.adversary is None:
            return x
        return tf.stop_gradient(self.adversary(self.inner, x, y, eps, self.clip))

    def train_step(self, data):
        x, y = self.check_batch(data)
        eps, kappa = self.schedule(self.optimizer.iterations)
        x_nat = self.natural_batch(x, y, eps)
        with tf.GradientTape() as tape:
            logits = self.inner(x_nat, training=True)
            clean = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            robust, verified = self.robust_loss(x, y, eps,
                                                beta=self.beta(self.optimizer.iterations))
            loss = kappa * tf.reduce_mean(clean) + (1.0 - kappa) * tf.reduce_mean(robust)
            if self.inner.losses:
                loss += tf.add_n(self.inner.losses)
        self.optimizer.minimize(loss, self.inner.trainable_variables, tape=tape)
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(y, tf.int32))
        self._trackers["loss"].update_state(loss)
        self._trackers[self._natural].update_state(tf.cast(correct, tf.float32))
        self._trackers["ibp_verified"].update_state(tf.cast(verified, tf.float32))
        self._trackers["eps"].update_state(eps)
        return {name: self._trackers[name].result()
                for name in ("loss", self._natural, "ibp_verified", "eps")}

    def test_step(self, data):
        x, y = self.check_batch(data)
        logits = self.inner(x, training=False)
        _, verified = self.robust_loss(x, y, tf.constant(self.eps), training=False,
                                       beta=self.beta(self.optimizer.iterations))
        correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(y, tf.int32))
        self._trackers["clean_accuracy"].update_state(tf.cast(correct, tf.float32))
        self._trackers["ibp_verified"].update_state(tf.cast(verified, tf.float32))
        return {name: self._trackers[name].result() for name in ("clean_accuracy",
                                                                  "ibp_verified")}

    def describe(self):
        """JSON-able record of the training method (for results.json)."""
        rec = {"method": "ibp", "eps": self.eps, "ramp_start": self.ramp_start,
               "ramp_steps": self.ramp_steps, "kappa": [1.0, self.kappa_end],
               "bounds": self.bounds, "reference": "Gowal et al. 2018, arXiv:1810.12715"}
        if self.bounds == "crown_ibp":
            rec["crown_beta"] = list(self.crown_beta)
            rec["reference"] += "; Zhang et al. 2020 (CROWN-IBP), arXiv:1906.06316"
        if self.adversary is not None:
            describe = getattr(self.adversary, "describe", None)
            rec["adversary"] = dict(describe()) if callable(describe) else {
                "name": repr(self.adversary)}
            rec["adversary"]["gradient"] = (None if self.quantizer is None
                                            else self.quantizer.gradient)
            rec["reference"] += "; De Palma et al. 2024 (MTL-IBP), arXiv:2305.13991"
        return rec
