"""Interval bound propagation (IBP; Gowal et al. 2018) through zoo models.

Starting from a box on the *output* of the input quantizer (see
``tfdisc.certify.box``), every layer maps an interval ``[l, u]`` to a sound
interval of its outputs by the bound rule registered for its class
(``tfdisc.certify.rules``: Dense, Conv2D and their larq versions, BatchNorm,
monotone activations, pooling, reshapes, Add, dropout/noise,
BitDepthQuantization). The last ``Dense`` is bounded in margin form: the bound
on ``z_j − z_y`` is computed from ``W_j − W_y`` directly.

Any other layer raises ``UnsupportedLayerError`` naming it, as do (``checks``)
layers whose code is not Keras's, larq's or tfdisc's (custom layers, an
overridden ``call``) unless a rule is registered for them (``register_rule``),
layers called with ``training=True`` in the graph, and layers not computing in
float32 (mixed precision). ``check_model`` runs every check eagerly, before
anything is traced.

With ``exact=True`` (certification) every linear map is widened by the
worst-case float32 rounding error of the model's own evaluation
(``γ_n·Σ|w||x|`` with ``γ_n = n·u/(1 − n·u)``, u = 2⁻²⁴) plus that of the bound
computation itself (also float32: three times the model's term, a relative
``γ_n`` on the radius product and one ulp outward on every end), so the model's
float32 outputs lie inside the bounds whatever the summation order.
With ``exact=False`` (training) bounds are plain float32, differentiable, and
BN may use the batch statistics of a clean batch propagated alongside.
"""
import tensorflow as tf

from tfdisc.certify import rules
from tfdisc.certify.checks import UnsupportedLayerError, check_call_kwargs, check_dtype

__all__ = ["UnsupportedLayerError", "chain", "check_model", "graph", "logit_bounds",
           "margin_upper", "register_rule"]

register_rule = rules.register  # tfdisc.certify.register_rule(MyLayer, MyRule())


def _graph(model):
    """[(layer, [input layer names])] in topological order, and the output layer name.

    Raises ``UnsupportedLayerError`` for models that are not one-input, one-output functional or
    Sequential models, shared layers, layers called in training mode and non-float32 layers.
    """
    if isinstance(model, tf.keras.Sequential):
        layers = list(model.layers)
        edges, prev = [], "__input__"
        for layer in layers:
            check_dtype(layer)
            edges.append((layer, [prev]))
            prev = layer.name
        if not edges:
            raise UnsupportedLayerError(f"Model {model.name!r} has no layers.")
        return edges, "__input__", prev
    try:
        config = model.get_config()
    except NotImplementedError:
        config = None
    if not isinstance(config, dict) or not all(
            key in config for key in ("layers", "input_layers", "output_layers")):
        raise UnsupportedLayerError(
            f"Model {model.name!r} ({type(model).__name__}) is not a functional or Sequential "
            f"Keras model; certification reads the layer graph and needs one of those.")
    if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
        raise UnsupportedLayerError(
            f"Model {model.name!r}: certification needs one input and one output.")
    by_name = {layer.name: layer for layer in model.layers}
    edges = []
    for entry in config["layers"]:
        layer = by_name[entry["name"]]
        nodes = entry["inbound_nodes"]
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        check_dtype(layer)
        if len(nodes) != 1:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} is called {len(nodes)} times; shared layers are not "
                f"supported.")
        node = nodes[0]
        if isinstance(node, dict):  # newer serialization
            args = node.get("args", [])
            raise UnsupportedLayerError(f"Unrecognised model config format at {layer.name!r}: "
                                        f"{args!r}.")
        if node and isinstance(node[0], str):  # TF-op layers: one flat [name, node, tensor, kwargs]
            node = [node]
        for inbound in node:
            check_call_kwargs(layer, inbound[3] if len(inbound) > 3 else None)
        edges.append((layer, [inbound[0] for inbound in node]))
    return edges, config["input_layers"][0][0], config["output_layers"][0][0]


def graph(model):
    """The model's layer graph as the bounds read it (also for ``tfdisc.certify.linear``):
    ``([(layer, [input layer names])] in topological order, input name, output name)``.

    Raises ``UnsupportedLayerError`` as the bounds do (see ``check_model``).
    """
    return _graph(model)


def chain(model, what):
    """``[(layer, rule, follows_input)]`` of a model whose layers form one chain, and the name of
    its output layer (for back-substitution, ``tfdisc.certify.linear`` and ``crown_ibp``).

    Raises:
      NotImplementedError: a layer takes another input than the layer before (``what`` names
        the caller: fall back to interval bounds).
      UnsupportedLayerError: a layer without a bound rule.
    """
    edges, input_name, output_name = _graph(model)
    out, prev = [], input_name
    for layer, inbound in edges:
        if inbound != [prev]:
            raise NotImplementedError(
                f"{what} need a chain of layers; layer {layer.name!r} takes {inbound} after "
                f"{prev!r}; fall back to interval bounds.")
        rule = rules.lookup(layer)
        if rule is None:
            raise UnsupportedLayerError(
                f"Interval propagation does not support layer {layer.name!r} of type "
                f"{type(layer).__name__}.")
        rule.check(layer)
        out.append((layer, rule, inbound == [input_name]))
        prev = layer.name
    return out, output_name


def _interval(layer, rule, ivs, ctx):
    """The layer's output interval by its rule; ``UnsupportedLayerError`` if it has none."""
    if rule is None or (rule.inputs is not None and len(ivs) != rule.inputs):
        if len(ivs) != 1:
            raise UnsupportedLayerError(
                f"Layer {layer.name!r} ({type(layer).__name__}) with {len(ivs)} inputs is not "
                f"supported by interval propagation.")
        raise UnsupportedLayerError(
            f"Interval propagation does not support layer {layer.name!r} of type "
            f"{type(layer).__name__}.")
    rule.check(layer)
    return rule.interval(layer, ivs, ctx)


def _run(model, lower, upper, *, exact, training=False, point=None, margin=True):
    """Propagates to the logits; returns (interval at the final layer's input, final layer, its
    rule) if the final layer is bounded in margin form, else (logit interval, None, None)."""
    ctx = rules.Context(exact, training)
    edges, input_name, output_name = _graph(model)
    values = {input_name: rules.Interval(ctx.cast(lower), ctx.cast(upper),
                                         None if point is None else ctx.cast(point))}
    for layer, inbound in edges:
        ivs = [values[name] for name in inbound]
        rule = rules.lookup(layer)
        if layer.name == output_name and margin and rule is not None and rule.margin_form(layer):
            return ivs[0], layer, rule
        ctx.follows_input = inbound == [input_name]
        try:
            values[layer.name] = _interval(layer, rule, ivs, ctx)
        except UnsupportedLayerError:
            raise
        except (ValueError, TypeError, tf.errors.OpError) as e:
            raise UnsupportedLayerError(
                f"Interval propagation failed at layer {layer.name!r} of type "
                f"{type(layer).__name__}: {e}") from e
    return values[output_name], None, None


def check_model(model, input_shape=None):
    """Raises ``UnsupportedLayerError`` naming the first layer IBP cannot bound.

    Runs eagerly through every path the bounds take (logit bounds, the margin
    form, training-mode statistics), so an unsupported model fails here with
    a clear error, before anything is traced. Also refused: layers called with
    ``training=True`` in the graph, layers not computing in float32 (mixed
    precision), shared layers, models that are not one-input, one-output
    functional or Sequential models.

    Args:
      model: Keras model returning logits.
      input_shape: shape of one input (without the batch axis); default the
        model's, which must then be fully known.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a Keras model, got {type(model).__name__}.")
    _graph(model)  # structure, training-mode calls and dtypes first: no propagation needed
    try:
        model_shape = model.input_shape
    except AttributeError:
        raise UnsupportedLayerError(
            f"Model {model.name!r} is not built (no input shape); build it on an Input first."
        ) from None
    if isinstance(model_shape, list):
        raise UnsupportedLayerError(
            f"Model {model.name!r}: certification needs one input and one output.")
    shape = list(model_shape[1:] if input_shape is None else input_shape)
    if any(d is None for d in shape):
        raise UnsupportedLayerError(
            f"Model {model.name!r} has input shape {model_shape} with unknown dimensions; pass "
            f"`input_shape` (one example's shape).")
    zeros = tf.zeros([1] + shape, tf.float32)
    _run(model, zeros, zeros, exact=False, margin=False)
    y = tf.zeros([1], tf.int32)
    margin_upper(model, zeros, zeros, y, exact=True)
    margin_upper(model, zeros, zeros, y, exact=False, training=True, point=zeros)


def logit_bounds(model, lower, upper, *, exact=True):
    """Elementwise bounds ``(l, u)`` on the logits over the input box.

    Args:
      model: Keras model (logits output).
      lower, upper: bounds of the quantized input (output of the model's
        ``BitDepthQuantization``), or of the raw input without a quantizer.
      exact: widened for float32 rounding (certification) or plain (training).
    """
    iv, _, _ = _run(model, lower, upper, exact=exact, margin=False)
    return iv.lower, iv.upper


def margin_upper(model, lower, upper, y, *, exact=True, training=False, point=None):
    """Upper bounds on ``z_j − z_y`` for every class j over the input box (0 at j = y).

    The example is certified if every j ≠ y has a negative bound. If the
    output layer is a linear ``Dense`` (its rule's margin form), the bound is
    computed from ``W_j − W_y`` directly; otherwise from the logit bounds.

    Args:
      y: int labels [batch].
      training: use batch statistics of ``point`` (the clean quantized batch)
        for batch norm, as in a training step.
      point: clean quantized inputs, propagated alongside for BN statistics.

    Returns:
      float32 tensor [batch, classes].
    """
    iv, last, rule = _run(model, lower, upper, exact=exact, training=training, point=point)
    y = tf.cast(y, tf.int32)
    if last is None:
        onehot = tf.one_hot(y, iv.upper.shape[-1], dtype=iv.upper.dtype)
        low_y = tf.reduce_sum(iv.lower * onehot, axis=-1, keepdims=True)
        return (iv.upper - low_y) * (1.0 - onehot)
    return rule.margin(last, iv, y, rules.Context(exact, training))
