"""Model rewrites done before export: uint8 input, binary dense as 1x1 conv.

* :func:`with_uint8_input` gives a model a ``uint8`` image input (raw camera
  pixels 0-255) feeding its ``BitDepthQuantization`` layer directly, which
  reads integers as 8-bit intensities.
* :func:`binary_dense_as_conv` rewrites every binary ``QuantDense`` as the
  equivalent 1x1 ``QuantConv2D`` (same weights, same quantizers) on a 1x1
  image, because larq-compute-engine only binarizes convolutions
  (larq/compute-engine issue 53). The batch norm that follows the layer
  (found by ``tfdisc.convert.planning``) runs on the 4-D output so that LCE
  can fuse it into the binary convolution's output transform.
"""
import larq as lq
import tensorflow as tf

from tfdisc import layers as tfdisc_layers
from tfdisc.convert import planning

__all__ = ["binary_dense_as_conv", "with_uint8_input"]


def _rebuild(model, replace, inputs=None, name=None):
    """Calls `model`'s layers again on new tensors, as a new functional model.

    `replace(layer)` returns a callable used instead of the layer, or None to
    reuse the layer itself. `inputs` replaces the model's input tensor.
    """
    if isinstance(model, tf.keras.Sequential):
        entries = [{"name": l.name, "inbound_nodes": [[[prev, 0, 0, {}]]]}
                   for prev, l in zip(["<input>"] + [l.name for l in model.layers],
                                      model.layers)]
        outputs = [model.layers[-1].name]
        tensors = {"<input>": inputs if inputs is not None else tf.keras.Input(
            model.input_shape[1:], dtype=model.inputs[0].dtype, name="image")}
        model_input = tensors["<input>"]
    else:
        config = model.get_config()
        entries = config["layers"]
        outputs = [item[0] for item in config["output_layers"]]
        tensors = {}
        model_input = None
    for entry in entries:
        layer = model.get_layer(entry["name"])
        if isinstance(layer, tf.keras.layers.InputLayer):
            model_input = inputs if inputs is not None else tf.keras.Input(
                layer.input_shape[0][1:] if isinstance(layer.input_shape, list)
                else layer.input_shape[1:], dtype=layer.dtype, name=layer.name)
            tensors[layer.name] = model_input
            continue
        calls = entry.get("inbound_nodes") or []
        if len(calls) != 1:
            raise ValueError(f"tfdisc.export: layer {layer.name!r} is called "
                             f"{len(calls)} times; shared layers are not supported.")
        args = [tensors[item[0]] for item in calls[0]]
        kwargs = calls[0][0][3] if len(calls[0][0]) > 3 else {}
        fn = replace(layer) or layer
        tensors[layer.name] = fn(args[0] if len(args) == 1 else args, **kwargs)
    return tf.keras.Model(model_input, [tensors[n] for n in outputs] if len(outputs) > 1
                          else tensors[outputs[0]], name=name or model.name)


def with_uint8_input(model):
    """A model taking ``uint8`` images 0-255, sharing `model`'s layers.

    Args:
      model: A functional model whose input feeds only a
        ``tfdisc.layers.BitDepthQuantization`` layer (every zoo model).

    Returns:
      A ``tf.keras.Model`` with input ``image`` of dtype uint8 and the same
      outputs.

    Raises:
      ValueError: the model's input does not go straight into a
        ``BitDepthQuantization`` layer (then the scale of raw pixels is
        unknown).
    """
    _, producers, consumers, _ = planning.graph(model)
    input_names = [layer.name for layer in model.layers
                   if isinstance(layer, tf.keras.layers.InputLayer)]
    first = None
    if isinstance(model, tf.keras.Sequential):
        first = model.layers[0] if model.layers else None
    elif len(model.inputs) == 1 and len(input_names) == 1:
        cons = consumers[input_names[0]]
        if len(cons) == 1:
            first = model.get_layer(cons[0])
    if not isinstance(first, tfdisc_layers.BitDepthQuantization) \
            or len(producers[first.name]) != 1:
        raise ValueError(
            "uint8 input needs a model whose only input feeds a "
            "tfdisc.layers.BitDepthQuantization layer (it reads integers as 8-bit "
            f"intensities); the input of {model.name!r} feeds "
            f"{type(first).__name__ if first is not None else 'several layers'}.")
    inputs = tf.keras.Input(model.input_shape[1:], dtype="uint8", name="image")
    return _rebuild(model, lambda layer: None, inputs=inputs, name=f"{model.name}_uint8")


def _conv_from_dense(dense):
    config = dict(
        input_quantizer=dense.input_quantizer,
        kernel_quantizer=dense.kernel_quantizer,
        kernel_constraint=dense.kernel_constraint,
        use_bias=dense.use_bias,
        activation=dense.activation,
        padding="valid",
        name=f"{dense.name}_1x1",
    )
    conv = lq.layers.QuantConv2D(dense.units, 1, **config)
    k = int(dense.kernel.shape[0])
    conv.build((None, 1, 1, k))
    weights = [tf.reshape(dense.kernel, (1, 1, k, dense.units)).numpy()]
    if dense.use_bias:
        weights.append(dense.bias.numpy())
    conv.set_weights(weights)
    return conv, k


def binary_dense_as_conv(model):
    """Rewrites each binary ``QuantDense`` of `model` as a 1x1 ``QuantConv2D``.

    Only layers ``tfdisc.convert.planning`` can run on sign bits are
    rewritten (sign input quantizer, sign or magnitude-aware-sign kernel);
    others stay as they are.

    Args:
      model: A built Sequential or functional tf-keras model.

    Returns:
      ``(new_model, names)``: the rewritten model (other layers shared with
      `model`) and the names of the rewritten dense layers.
    """
    plans, _ = planning.plan(model, fold_batch_norm=True, bitpacked_outputs=False)
    dense = {name: p for name, p in plans.items()
             if isinstance(p.layer, lq.layers.QuantDense) and len(p.layer.input_shape) == 2}
    folded_bn = {p.bn.name: p for p in dense.values() if p.bn is not None}
    if not dense:
        return model, ()

    def replace(layer):
        if layer.name in dense:
            conv, k = _conv_from_dense(layer)
            to_4d = tf.keras.layers.Reshape((1, 1, k), name=f"{layer.name}_to_4d")
            if dense[layer.name].bn is not None:
                return lambda x: conv(to_4d(x))
            to_2d = tf.keras.layers.Reshape((layer.units,), name=f"{layer.name}_to_2d")
            return lambda x: to_2d(conv(to_4d(x)))
        if layer.name in folded_bn:
            units = folded_bn[layer.name].layer.units
            config = layer.get_config()
            config.update(axis=-1, name=f"{layer.name}_4d")
            bn = tf.keras.layers.BatchNormalization.from_config(config)
            bn.build((None, 1, 1, units))
            bn.set_weights(layer.get_weights())
            to_2d = tf.keras.layers.Reshape((units,), name=f"{layer.name}_to_2d")
            return lambda x, **kwargs: to_2d(bn(x, **kwargs))
        return None

    return _rebuild(model, replace), tuple(dense)
