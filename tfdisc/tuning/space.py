"""The search space of a capacity search: width, depth, input bits and precision.

``Space`` covers the capacity of any zoo model that takes ``width``/``depth``
(``tfdisc.models``), optionally its input bit depth and parameter precision;
each entry is a tuple of choices or an ``IntRange`` (``parse_int_space`` reads
the ``--*_space`` flags). ``Space.hyperparameters`` is the space as keras-tuner
hyperparameters, the hypermodel's half that keras-tuner sees; the model itself
is built per trial by ``tfdisc.tuning.tuner.CapacityTuner``.
"""
import dataclasses
import re
from typing import Tuple

import numpy as np

import keras_tuner as kt

from tfdisc import models

__all__ = ["IntRange", "Space", "parse_int_space"]


@dataclasses.dataclass(frozen=True)
class IntRange:
    """An integer range ``low..high`` (step ``step``, multiplied if ``log``)."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def values(self):
        out, v = [], self.low
        while v <= self.high:
            out.append(v)
            v = v * self.step if self.log else v + self.step
        return out


_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*(?:([/*])\s*(\d+))?\s*$")


def parse_int_space(text, name):
    """``"150,300,600"`` → (150, 300, 600); ``"64..1024*2"`` (log, ×2) or ``"100..600/100"``
    → ``IntRange``; ``"600"`` → (600,).

    Raises:
      ValueError: anything else, values < 1, an empty range or a log step < 2.
    """
    text = str(text).strip()
    match = _RANGE.match(text)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        log = match.group(3) == "*"
        step = int(match.group(4) or (2 if log else 1))
        if low < 1 or high < low:
            raise ValueError(f"`{name}` range {text!r} must have 1 ≤ low ≤ high.")
        if (log and step < 2) or step < 1:
            raise ValueError(f"`{name}` range {text!r}: the step must be ≥ 1 (≥ 2 for a "
                             "multiplicative step '*').")
        return IntRange(low, high, step, log)
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"`{name}` must be a comma-separated list of positive integers "
                         f"(e.g. 150,300,600) or a range LOW..HIGH, LOW..HIGH/STEP or "
                         f"LOW..HIGH*FACTOR, got {text!r}.") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"`{name}` values must be positive integers, got {text!r}.")
    return tuple(dict.fromkeys(values))


@dataclasses.dataclass(frozen=True)
class Space:
    """The capacity search space: each entry is a tuple of choices or an ``IntRange``."""

    width: object
    depth: object = (4,)
    bits: Tuple[int, ...] = (8,)
    precision: Tuple[str, ...] = ("full",)

    def __post_init__(self):
        for name in ("width", "depth", "bits"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, value := parse_int_space(value, name))
            if not isinstance(value, IntRange):
                object.__setattr__(self, name, value := tuple(value))
                if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                    for v in value):
                    raise ValueError(f"`{name}` must be positive integers, got {value!r}.")
        bits = self.bits.values() if isinstance(self.bits, IntRange) else self.bits
        if any(b > 8 for b in bits):
            raise ValueError(f"`bits` must lie in 1..8, got {self.bits!r}.")
        precision = (self.precision,) if isinstance(self.precision, str) else tuple(
            self.precision)
        if not precision or any(p not in models.PRECISIONS for p in precision):
            raise ValueError(f"`precision` must be chosen from {models.PRECISIONS}, got "
                             f"{self.precision!r}.")
        object.__setattr__(self, "precision", tuple(dict.fromkeys(precision)))

    def hyperparameters(self):
        """The space as ``keras_tuner.HyperParameters`` (fixed values for single choices)."""
        hp = kt.HyperParameters()
        for name in ("width", "depth", "bits", "precision"):
            value = getattr(self, name)
            if isinstance(value, IntRange):
                hp.Int(name, value.low, value.high, step=value.step,
                       sampling="log" if value.log else "linear")
            elif len(value) == 1:
                hp.Fixed(name, value[0])
            else:
                hp.Choice(name, list(value), ordered=name != "precision")
        return hp

    def grid_size(self):
        """The number of distinct trials (hyperparameter combinations) the space holds."""
        return int(np.prod([len(v.values() if isinstance(v, IntRange) else v) for v in (
            self.width, self.depth, self.bits, self.precision)]))

    def describe(self):
        def one(v):
            return dataclasses.asdict(v) if isinstance(v, IntRange) else list(v)
        return {name: one(getattr(self, name)) for name in ("width", "depth", "bits",
                                                             "precision")}
