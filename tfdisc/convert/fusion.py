"""Chains of packed layers -> one ``PackedNetwork`` layer (one op) each.

``to_packed(model, fused=True)`` first builds the per-layer packed model,
then :func:`fuse` replaces every chain of its packed layers by one
:class:`~tfdisc.convert.layers.PackedNetwork` running them in a single
``tfdisc.ops.packed_network`` op. A chain is a path of layers, each the
only consumer of the one before, that the op can run: ``PackedFloatConv2D``,
``PackedBinaryConv2D``/``PackedBinaryDense`` (emitting bits, or floats with a
linear activation; a float input is bit-packed by the op), ``PackedMaxPool2D``,
a channels-last ``Flatten`` and the linear ``Activation`` left where a batch
norm was folded. It starts at a packed layer. Everything else (the input
quantizer, float layers, adds) stays as it was, so a residual network fuses
block by block and alexnet_cifar becomes input quantizer -> one op ->
logits.

Why: at batch 1 a converted network can spend much of its time in
TensorFlow's per-op cost rather than in the kernels (issue 31: alexnet_cifar's
per-layer graph has ~72 ops, 22 of them variable reads; the fused graph reads
two variables per chain). Measured gains: ``FUSED_DEFAULT`` in
``tfdisc.convert``.

The fused model is rebuilt from the per-layer model's config, so its layers
are new objects (weights copied); the per-layer model is unchanged.
"""
import numpy as np
import tensorflow as tf

from tfdisc.convert import planning
from tfdisc.convert.layers import (
    PackedBinaryConv2D,
    PackedBinaryDense,
    PackedFloatConv2D,
    PackedMaxPool2D,
    PackedNetwork,
)

__all__ = ["chain_steps", "chains", "fuse"]

_COMPUTE = (PackedFloatConv2D, PackedBinaryConv2D, PackedBinaryDense, PackedMaxPool2D)


def _linear(activation):
    return activation in (None, tf.keras.activations.linear)


def _fusable(layer):
    if isinstance(layer, (PackedBinaryConv2D, PackedBinaryDense)):
        return layer.output_kind == "bitpacked" or _linear(layer.activation)
    if isinstance(layer, (PackedFloatConv2D, PackedMaxPool2D)):
        return True
    if type(layer) is tf.keras.layers.Flatten:  # pylint: disable=unidiomatic-typecheck
        return getattr(layer, "data_format", "channels_last") == "channels_last"
    if type(layer) is tf.keras.layers.Activation:  # pylint: disable=unidiomatic-typecheck
        return _linear(layer.activation)
    return False


def chains(model):
    """Lists of layer names of `model` (a per-layer packed model), one per chain to fuse."""
    by_name, producers, consumers, outputs = planning.graph(model)

    def single_call(name):
        return len(producers[name]) == 1 and producers[name][0] != "<shared>"

    found, taken = [], set()
    for name, layer in by_name.items():  # model order: producers come first
        if name in taken or not isinstance(layer, _COMPUTE) or not _fusable(layer) \
                or not single_call(name):
            continue
        chain = [name]
        while True:
            tail = chain[-1]
            nxt = consumers[tail]
            if (len(nxt) != 1 or tail in outputs or not single_call(nxt[0])
                    or not _fusable(by_name[nxt[0]])):
                break
            chain.append(nxt[0])
        taken.update(chain)
        if any(isinstance(by_name[n], (PackedFloatConv2D, PackedBinaryConv2D, PackedBinaryDense))
               for n in chain):
            found.append(chain)
    return found


def _window(layer):
    return [*layer.kernel_size, *layer.strides, *layer.dilations, int(layer.padding == "SAME")]


def chain_steps(layers):
    """``(steps, weights, output)`` of the op running `layers` (a chain): the weights
    as numpy arrays in step order (``tfdisc.ops.pack_network_weights`` packs them)."""
    steps, values = [], []
    rank, output = None, None

    def weight(layer, name, variable):
        del layer, name  # the order says which weight is which
        values.append(np.asarray(variable))

    for layer in layers:
        if isinstance(layer, PackedFloatConv2D):
            kernel = np.asarray(layer.kernel)
            steps.append(["float_conv_bits", [kernel.shape[2], layer.filters, *_window(layer)]])
            weight(layer, "kernel", kernel)
            weight(layer, "bias", layer.bias)
            rank, output = 4, "bitpacked"
        elif isinstance(layer, (PackedBinaryConv2D, PackedBinaryDense)):
            conv = isinstance(layer, PackedBinaryConv2D)
            k = layer.channels_in if conv else layer.k
            if not layer.input_packed:
                steps.append(["bitpack", [k]])
            transform = [int(layer.output_kind == "bitpacked"), int(layer.has_multiplier),
                         int(layer.has_bias)]
            if conv:
                w = _window(layer)
                steps.append(["conv", [k, layer.filters, *w, layer.pad_value, *transform]])
            else:
                steps.append(["dense", [k, layer.units, *transform]])
            weight(layer, "packed_kernel", layer.packed_kernel)
            if layer.has_multiplier:
                weight(layer, "multiplier", layer.multiplier)
            if layer.has_bias:
                weight(layer, "bias", layer.bias)
            rank, output = (4 if conv else 2), layer.output_kind
        elif isinstance(layer, PackedMaxPool2D):
            steps.append(["max_pool", [*layer.pool_size, *layer.strides,
                                       int(layer.padding == "SAME"), int(layer.has_or_mask)]])
            if layer.has_or_mask:
                weight(layer, "or_mask", layer.or_mask)
            rank, output = 4, "bitpacked"
        elif isinstance(layer, tf.keras.layers.Flatten):
            if rank == 4:
                steps.append(["flatten", []])
            rank = 2
        # A linear Activation (a folded batch norm's place) is no step.
    return steps, values, output


def _unique_name(base, used):
    name, i = base, 0
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


def _rename_inbound(nodes, renames):
    """Inbound node data (nested lists [name, node_index, tensor_index, kwargs]) with the
    producers in `renames` replaced by their fused layer (node 0, tensor 0)."""
    if isinstance(nodes, list):
        if len(nodes) >= 3 and isinstance(nodes[0], str) and isinstance(nodes[1], int):
            if nodes[0] in renames:
                return [renames[nodes[0]], 0, 0, *nodes[3:]]
            return nodes
        return [_rename_inbound(n, renames) for n in nodes]
    return nodes


def _ops():
    import tfdisc.ops  # pylint: disable=import-outside-toplevel

    return tfdisc.ops


def fuse(model):
    """`model` (a per-layer packed model) with each chain (:func:`chains`) as one
    ``PackedNetwork``; returns ``(fused model, ((fused name, (layer names...)), ...))``.
    The model is returned as it is when nothing fuses."""
    found = chains(model)
    if not found:
        return model, ()
    used = {layer.name for layer in model.layers}
    fused, first, members, renames = {}, {}, set(), {}
    for chain in found:
        layers = [model.get_layer(n) for n in chain]
        steps, values, output = chain_steps(layers)
        word_bits = layers[0].word_bits  # every packed layer has it
        words, floats = _ops().pack_network_weights(values, word_bits)
        name = _unique_name("packed_network", used)
        layer = PackedNetwork(steps, words.size, floats.size, word_bits=word_bits,
                              output=output, fused_layers=chain, name=name)
        fused[name] = (layer, [words, floats])
        first[chain[0]] = name
        members.update(chain)
        renames[chain[-1]] = name
    config = model.get_config()
    entries = []
    for entry in config["layers"]:
        entry_name = entry["config"]["name"]
        if entry_name in first:
            new = tf.keras.layers.serialize(fused[first[entry_name]][0])
            if "inbound_nodes" in entry:
                new["name"] = first[entry_name]
                new["inbound_nodes"] = _rename_inbound(entry["inbound_nodes"], renames)
            entries.append(new)
        elif entry_name not in members:
            if "inbound_nodes" in entry:
                entry = {**entry, "inbound_nodes": _rename_inbound(entry["inbound_nodes"],
                                                                   renames)}
            entries.append(entry)
    config["layers"] = entries
    if "output_layers" in config:
        config["output_layers"] = _rename_inbound(config["output_layers"], renames)
    new_model = model.__class__.from_config(config)
    for layer in new_model.layers:
        if layer.name in fused:
            layer.set_weights(fused[layer.name][1])
        else:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new_model, tuple((name, tuple(layer.fused_layers)) for name, (layer, _) in
                            fused.items())
