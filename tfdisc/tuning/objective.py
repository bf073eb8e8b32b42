"""What a trial is measured by: its capacity, and the objective on a validation split.

The objective is **adversarial accuracy** (PGD by default, FGSM selectable)
with the gradient straight through the input quantizer, at one ε, maximized,
measured on a validation split carved from the *training* set
(``split_validation``); the test set is only used for the trials reported at
the end (``tfdisc.tuning.testset``). ``profile`` is a model's capacity.
"""
import dataclasses

import larq as lq
import numpy as np

from tfdisc import attacks as attacks_lib
from tfdisc import checks
from tfdisc import data as data_lib
from tfdisc import evaluate, results
from tfdisc.tuning.oracle import OBJECTIVE

__all__ = ["Objective", "profile", "split_validation"]


def profile(model):
    """Capacity of ``model`` (larq's ``ModelProfile``).

    Returns:
      dict: ``params`` (all weights), ``macs`` (all multiply-accumulates of one
      example), ``binary_macs`` (the 1-bit ones), ``packed_bytes`` (weights at
      their own bit width: 1 bit for binarized kernels, 32 otherwise).
    """
    prof = lq.models.ModelProfile(model)
    return {"params": int(model.count_params()), "macs": int(prof.op_count("mac")),
            "binary_macs": int(prof.op_count("mac", 1)),
            "packed_bytes": int(np.ceil(prof.memory / 8))}


def split_validation(x, y, examples, seed=0):
    """``(x_train, y_train, x_val, y_val)``: ``examples`` held out of the training arrays.

    The split is a fixed shuffle (``seed``), the same for every trial and
    process, and never touches the test set.

    Raises:
      ValueError: ``examples`` not in ``1 .. len(y) - 1``.
    """
    if isinstance(examples, bool) or not isinstance(examples, int) or not \
            0 < examples < len(y):
        raise ValueError(f"`validation_examples` must be between 1 and {len(y) - 1} (the "
                         f"training set has {len(y)} examples), got {examples!r}.")
    order = np.random.RandomState(seed).permutation(len(y))
    val, train = order[:examples], order[examples:]
    return x[train], y[train], x[val], y[val]


@dataclasses.dataclass(frozen=True)
class Objective:
    """Adversarial accuracy under ``attack`` at ``eps`` (gradient through the quantizer)."""

    attack: str = "pgd"
    eps: float = 0.1
    params: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 500

    def __post_init__(self):
        attack = attacks_lib.get(self.attack)
        checks.check_eps(self.eps, "objective_eps")
        if not self.eps > 0:
            raise ValueError(f"`objective_eps` must be > 0, got {self.eps!r}.")
        attack.check_params(**self.params)

    def measure(self, model, x, y):
        """``(clean accuracy, adversarial accuracy, attack record)`` on arrays ``x, y``."""
        ds = data_lib.from_arrays(x, y, batch_size=self.batch_size)
        sweep = evaluate.sweep(model, ds, [self.eps], self.attack, **self.params)
        record = evaluate.attack_record(self.attack, model, **self.params)
        return sweep["top1"][0.0], sweep["top1"][self.eps], record

    def describe(self, model=None):
        out = {"metric": OBJECTIVE, "direction": "max", "attack": self.attack,
               "eps": self.eps, "eps_key": results.epsilon_key(self.eps)}
        out["params"] = (evaluate.attack_record(self.attack, model, **self.params)
                         if model is not None else dict(self.params))
        return out
