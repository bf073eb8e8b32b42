"""One bound rule per layer type, in a registry keyed by layer class.

Each rule (a ``BoundRule``) holds everything the verifiers know about one layer
type: ``check`` (which configurations it covers), ``interval`` (interval bound
propagation, used by ``tfdisc.certify.bounds``), and, declared for the
verifiers to come, ``linear`` (CROWN/DeepPoly back-substitution) and
``encode`` (exact MILP / CP-SAT encoding). The built-in rules live in
``affine`` (Dense, Conv2D, their larq versions, BatchNorm) and ``elementwise``
(activations, pooling, reshapes, Add, dropout/noise, BitDepthQuantization).

A new layer type is one ``BoundRule`` subclass and one ``register`` call::

    class ScaleRule(rules.BoundRule):
        def interval(self, layer, inputs, ctx):
            return inputs[0].map(layer)    # sound for a non-decreasing layer

    tfdisc.certify.register_rule(MyScale, ScaleRule())
"""
# The built-in rules register themselves on import.
from tfdisc.certify.rules import affine, elementwise  # noqa: F401
from tfdisc.certify.rules.base import (TINY, UNIT_ROUNDOFF, BoundRule, Context, Interval, gamma,
                                       lookup, refuse, register, registered)

__all__ = ["BoundRule", "Context", "Interval", "TINY", "UNIT_ROUNDOFF", "gamma", "lookup",
           "refuse", "register", "registered"]
