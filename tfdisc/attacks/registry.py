"""The attack registry: ``Attack``, ``register``, ``get``, ``available``.

A base module of ``tfdisc.attacks``: every attack module imports it (never the
package ``__init__``), registers its attacks with ``register`` and is imported
by ``tfdisc/attacks/__init__.py``, so ``tfdisc.attacks.get(name)`` sees them all.
"""
import tensorflow as tf

from tfdisc import checks as checks_lib
from tfdisc import projection
from tfdisc.attacks import losses

__all__ = ["Attack", "available", "check_count", "check_fraction", "check_seed", "get",
           "optional", "register"]


def check_seed(seed):
    """An attack's random seed: an int ≥ 0, or ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`seed` must be an integer ≥ 0, got {seed!r}.")
    return int(seed)


def check_count(name):
    """A check of parameter ``name``: an int ≥ 1, or ValueError naming it."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer ≥ 1, got {value!r}.")
        return int(value)
    return check


def check_fraction(name):
    """A check of parameter ``name``: a number in (0, 1], or ValueError."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise ValueError(f"`{name}` must be a number in (0, 1], got {value!r}.")
        return float(value)
    return check


def optional(check):
    """A parameter check that lets None (meaning: derived from ε, or the default) through."""
    return lambda value: None if value is None else check(value)


class Attack:
    """A registered attack: a graph-safe function, its parameters and their checks.

    Attributes:
      name: registry name, as recorded in results.json.
      params: parameter defaults (None means "derived from ε", see ``resolve``).
      uses_gradient: whether the attack differentiates the model (recorded, so
        a gradient-free attack says it cannot be masked).
      reuses_gradient: the attack is ``perturb(x, ∇x L(x), ε)``, so a sweep may
        compute the gradient once per batch and reuse it for every ε.
      graph_safe: ``fn`` runs inside a ``tf.function`` (and so in the replicas
        of a distribution strategy).
      stages_fn: for an ensemble, ``fn``'s twin returning ``(x_adv, robust)``:
        ``robust`` maps ``"clean"`` and each component, in the order run, to the
        mask of examples still correctly classified after it (cumulative); a
        sweep records each component's accuracy from it. None otherwise.
        ``stage_names(model)`` gives the components' order.
    """

    def __init__(self, name, fn, *, params, checks, resolve, describe, uses_gradient,
                 reuses_gradient, doc, graph=True, stages=None, stage_names=None):
        self.name = name
        self.fn = fn
        self.params = dict(params)
        self.uses_gradient = uses_gradient
        self.reuses_gradient = reuses_gradient
        self.doc = doc
        self._checks = dict(checks)
        self._resolve = resolve
        self._describe = describe
        self.graph_safe = bool(graph)
        self._graph = tf.function(fn, reduce_retracing=True) if graph else fn
        self.stages_fn = stages
        self._stage_names = stage_names
        self._stages_graph = (tf.function(stages, reduce_retracing=True)
                              if stages is not None and graph else stages)

    def check_params(self, **params):
        """All parameters, defaults filled in and each one checked.

        Raises:
          ValueError: a parameter the attack does not take, or a bad value.
        """
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(f"Attack {self.name!r} takes no parameter(s) {unknown}; its "
                             f"parameters: {sorted(self.params) or 'none'}.")
        merged = {**self.params, **params}
        return {k: self._checks[k](v) if k in self._checks else v for k, v in merged.items()}

    def resolve(self, eps, params):
        """The concrete keyword arguments of ``fn`` at ``eps`` (checked ``params``)."""
        return self._resolve(eps, params) if self._resolve else dict(params)

    def describe(self, params):
        """JSON-able parameters for results.json (formulas where derived from ε)."""
        return self._describe(params) if self._describe else dict(params)

    def _arguments(self, x, eps, params):
        kwargs = self.resolve(eps, self.check_params(**params))
        kwargs = {k: (tf.constant(v, x.dtype) if isinstance(v, float) else v)
                  for k, v in kwargs.items()}
        # ε rounded down to the image dtype, so that the ε-ball holds for the ε asked for.
        return tf.constant(projection.round_down(eps, x.dtype), x.dtype), kwargs

    def graph(self, model, x, y, eps, clip, **params):
        """Runs the compiled attack on already-checked inputs at one ε."""
        eps_tensor, kwargs = self._arguments(x, eps, params)
        return tf.convert_to_tensor(
            self._graph(model, x, y, eps_tensor, clip, **kwargs), x.dtype)

    def stage_names(self, model):
        """The components an ensemble runs on ``model``, in order; () for a single attack."""
        if self.stages_fn is None:
            return ()
        return tuple(self._stage_names(model))

    def graph_stages(self, model, x, y, eps, clip, **params):
        """As ``graph`` for an ensemble: ``(x_adv, robust)`` (see ``stages_fn``).

        Raises:
          ValueError: the attack is not an ensemble (it has no stages).
        """
        if self.stages_fn is None:
            raise ValueError(f"Attack {self.name!r} is not an ensemble: it has no stages to "
                             "record; use `graph`.")
        eps_tensor, kwargs = self._arguments(x, eps, params)
        x_adv, robust = self._stages_graph(model, x, y, eps_tensor, clip, **kwargs)
        return tf.convert_to_tensor(x_adv, x.dtype), robust

    def __call__(self, model, x, y, eps, *, clip=(0.0, 1.0), **params):
        """Checks every input and returns adversarial images for ``eps``."""
        eps = checks_lib.check_eps(eps)
        clip = checks_lib.check_clip(clip)
        x, y = checks_lib.check_inputs(model, x, y, clip)
        losses.check_logits(model)
        return self.graph(model, x, y, eps, clip, **params)

    def __repr__(self):
        return f"Attack({self.name!r}, params={self.params})"


_REGISTRY = {}


def register(name, *, params=None, checks=None, resolve=None, describe=None,
             uses_gradient=True, reuses_gradient=False, graph=True, stages=None,
             stage_names=None):
    """Decorator registering ``fn(model, x, y, eps, clip, **params) -> x_adv`` as ``name``.

    ``fn`` gets checked inputs and must be graph-safe (it runs in a
    ``tf.function``) unless ``graph=False`` (then it runs eagerly, and cannot
    run inside a distribution strategy's replicas). ``resolve(eps, params)`` turns checked parameters into
    ``fn``'s keyword arguments at one ε (e.g. a default step size of ε/2);
    ``describe(params)`` gives what results.json records: the parameters, and
    the ``loss`` (or score) the attack optimizes, in words. An ensemble passes
    ``stages``, ``fn``'s twin returning ``(x_adv, robust)`` (``Attack.stages_fn``),
    and ``stage_names(model)``, its components in the order they run.
    """
    if (stages is None) != (stage_names is None):
        raise ValueError(f"Attack {name!r}: `stages` and `stage_names` go together (an "
                         "ensemble gives both, a single attack neither).")
    def decorator(fn):
        if name in _REGISTRY:
            raise ValueError(f"Attack {name!r} is already registered.")
        _REGISTRY[name] = Attack(name, fn, params=params or {}, checks=checks or {},
                                 resolve=resolve, describe=describe,
                                 uses_gradient=uses_gradient, reuses_gradient=reuses_gradient,
                                 doc=(fn.__doc__ or "").strip().split("\n")[0], graph=graph,
                                 stages=stages, stage_names=stage_names)
        return fn
    return decorator


def get(name):
    """The registered ``Attack`` called ``name``; ValueError naming the available ones."""
    if isinstance(name, Attack):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"Unknown attack {name!r}; available: {', '.join(available())}.")
    return _REGISTRY[name]


def available():
    """Names of the registered attacks, sorted."""
    return tuple(sorted(_REGISTRY))
