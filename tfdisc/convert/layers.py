"""Inference-only Keras layers running on the packed ops of ``tfdisc.ops``.

These classes are registered with Keras (package ``tfdisc``) when ``tfdisc``
is imported, so that a saved packed model loads in any process that imported
tfdisc. Importing this module does not load the C++ op library: the layers
hold their packed weights as plain integer variables and load ``tfdisc.ops``
on their first call.
"""
import numpy as np
import tensorflow as tf

from tfdisc.layers import BitDepthQuantization

__all__ = [
    "PackedBinaryConv2D",
    "PackedBinaryDense",
    "PackedBitDepthQuantization",
    "PackedFloatConv2D",
    "PackedMaxPool2D",
    "PackedNetwork",
    "PACKED_LAYERS",
]


def _ops():
    import tfdisc.ops  # pylint: disable=import-outside-toplevel

    return tfdisc.ops


def _word_dtype(word_bits):
    return tf.int32 if word_bits == 32 else tf.int64


class _PackedLayer(tf.keras.layers.Layer):
    """Holds packed weights plus an optional multiplier/bias as constants."""

    def __init__(self, *, word_bits=32, input_packed=False, output="float",
                 activation=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.word_bits = int(word_bits)
        self.input_packed = bool(input_packed)
        self.output_kind = output
        self.activation = tf.keras.activations.get(activation)
        self._init_values = {}

    def _add_constant(self, name, shape, dtype, value=None):
        init = "zeros" if value is None else tf.constant_initializer(np.asarray(value))
        return self.add_weight(name=name, shape=shape, dtype=dtype, initializer=init,
                               trainable=False)

    def _build_transform(self, channels, multiplier, bias, has_multiplier, has_bias):
        self.multiplier = (self._add_constant("multiplier", (channels,), tf.float32, multiplier)
                           if has_multiplier else None)
        self.bias = (self._add_constant("bias", (channels,), tf.float32, bias)
                     if has_bias else None)

    def _finish(self, y):
        if self.output_kind == "float":
            return self.activation(y)
        return y

    def get_config(self):
        return {
            **super().get_config(),
            "word_bits": self.word_bits,
            "input_packed": self.input_packed,
            "output": self.output_kind,
            "activation": tf.keras.activations.serialize(self.activation),
        }


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedBinaryDense(_PackedLayer):
    """Inference-only binary dense layer on ``tfdisc.ops.binary_dense``.

    Args:
      units: Output units.
      k: Input features (bits per row).
      has_multiplier, has_bias: Whether the output transform has them.
      packed_kernel, multiplier, bias: Initial values (numpy), from the
        converter; omitted when deserializing (weights are loaded after).
      word_bits, input_packed, output, activation: see ``tfdisc.convert.to_packed``.
    """

    def __init__(self, units, k, *, has_multiplier=False, has_bias=False,
                 packed_kernel=None, multiplier=None, bias=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.k = int(k)
        self.has_multiplier = bool(has_multiplier)
        self.has_bias = bool(has_bias)
        self._init_values = dict(kernel=packed_kernel, multiplier=multiplier, bias=bias)

    def build(self, input_shape):
        words = -(-self.k // self.word_bits)
        self.packed_kernel = self._add_constant("packed_kernel", (self.units, words),
                                                _word_dtype(self.word_bits),
                                                self._init_values["kernel"])
        self._build_transform(self.units, self._init_values["multiplier"],
                              self._init_values["bias"], self.has_multiplier, self.has_bias)
        self._init_values = {}
        super().build(input_shape)

    def call(self, inputs):
        ops = _ops()
        x = inputs if self.input_packed else ops.bitpack(inputs, word_bits=self.word_bits)
        y = ops.binary_dense(x, self.packed_kernel, self.k, multiplier=self.multiplier,
                             bias=self.bias, output=self.output_kind,
                             word_bits=self.word_bits)
        return self._finish(y)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "k": self.k,
                "has_multiplier": self.has_multiplier, "has_bias": self.has_bias}


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedBinaryConv2D(_PackedLayer):
    """Inference-only binary conv layer on ``tfdisc.ops.binary_conv2d``."""

    def __init__(self, filters, kernel_size, channels_in, *, strides=(1, 1),
                 padding="VALID", pad_value=0, dilations=(1, 1), has_multiplier=False,
                 has_bias=False, packed_kernel=None, multiplier=None, bias=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(v) for v in kernel_size)
        self.channels_in = int(channels_in)
        self.strides = tuple(int(v) for v in strides)
        self.padding = padding.upper()
        self.pad_value = _ops().check_pad_value(pad_value)  # 0.5 is refused, not truncated to 0
        self.dilations = tuple(int(v) for v in dilations)
        self.has_multiplier = bool(has_multiplier)
        self.has_bias = bool(has_bias)
        self._init_values = dict(kernel=packed_kernel, multiplier=multiplier, bias=bias)

    def build(self, input_shape):
        words = -(-self.channels_in // self.word_bits)
        self.packed_kernel = self._add_constant(
            "packed_kernel", (self.filters, *self.kernel_size, words),
            _word_dtype(self.word_bits), self._init_values["kernel"])
        self._build_transform(self.filters, self._init_values["multiplier"],
                              self._init_values["bias"], self.has_multiplier, self.has_bias)
        self._init_values = {}
        super().build(input_shape)

    def call(self, inputs):
        ops = _ops()
        x = inputs if self.input_packed else ops.bitpack(inputs, word_bits=self.word_bits)
        y = ops.binary_conv2d(x, self.packed_kernel, self.channels_in, strides=self.strides,
                              padding=self.padding, pad_value=self.pad_value,
                              dilations=self.dilations, multiplier=self.multiplier,
                              bias=self.bias, output=self.output_kind,
                              word_bits=self.word_bits)
        return self._finish(y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "channels_in": self.channels_in,
                "strides": self.strides, "padding": self.padding,
                "pad_value": self.pad_value, "dilations": self.dilations,
                "has_multiplier": self.has_multiplier, "has_bias": self.has_bias}


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedMaxPool2D(tf.keras.layers.Layer):
    """Max pooling of packed +-1 NHWC data (``tfdisc.ops.bitpacked_max_pool2d``).

    ``or_mask`` (packed, one bit per channel) selects min pooling for channels
    whose following batch-norm multiplier is negative.
    """

    def __init__(self, pool_size, strides, padding, *, word_bits=32, has_or_mask=False,
                 or_mask=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = padding.upper()
        self.word_bits = int(word_bits)
        self.has_or_mask = bool(has_or_mask or or_mask is not None)
        self._or_mask_value = or_mask

    def build(self, input_shape):
        self.or_mask = None
        if self.has_or_mask:
            value = self._or_mask_value
            init = "zeros" if value is None else tf.constant_initializer(np.asarray(value))
            self.or_mask = self.add_weight(name="or_mask", shape=(int(input_shape[-1]),),
                                           dtype=_word_dtype(self.word_bits), initializer=init,
                                           trainable=False)
        self._or_mask_value = None
        super().build(input_shape)

    def call(self, inputs):
        return _ops().bitpacked_max_pool2d(inputs, self.pool_size, strides=self.strides,
                                           padding=self.padding, or_mask=self.or_mask)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size,
                "strides": self.strides, "padding": self.padding,
                "word_bits": self.word_bits, "has_or_mask": self.has_or_mask}


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedFloatConv2D(tf.keras.layers.Layer):
    """A full-precision convolution (batch norm folded) that emits sign bits.

    ``tfdisc.ops.float_conv2d_bits``: the bits of ``conv2d(x, kernel) + bias``
    for the packed layers it feeds, without writing the float output. The
    sums run in filter order, so a value within float rounding of zero can
    take the other bit than TensorFlow's convolution would give it.
    """

    def __init__(self, filters, kernel_size, *, strides=(1, 1), padding="VALID",
                 dilations=(1, 1), word_bits=32, kernel=None, bias=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(v) for v in kernel_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = padding.upper()
        self.dilations = tuple(int(v) for v in dilations)
        self.word_bits = int(word_bits)
        self._init_values = dict(kernel=kernel, bias=bias)

    def build(self, input_shape):
        def constant(name, shape, value):
            init = "zeros" if value is None else tf.constant_initializer(np.asarray(value))
            return self.add_weight(name=name, shape=shape, dtype=tf.float32,
                                   initializer=init, trainable=False)

        self.kernel = constant("kernel", (*self.kernel_size, int(input_shape[-1]), self.filters),
                               self._init_values["kernel"])
        self.bias = constant("bias", (self.filters,), self._init_values["bias"])
        self._init_values = {}
        super().build(input_shape)

    def call(self, inputs):
        return _ops().float_conv2d_bits(inputs, self.kernel, self.bias, strides=self.strides,
                                        padding=self.padding, dilations=self.dilations,
                                        word_bits=self.word_bits)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "dilations": self.dilations,
                "word_bits": self.word_bits}


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedBitDepthQuantization(BitDepthQuantization):
    """``BitDepthQuantization`` for inference, in one op (``tfdisc.ops.bit_depth``).

    Same configuration and the same float32 values, bit for bit, as the
    layer it replaces, computed by one C++ op instead of ~15 TensorFlow
    element-wise ops (which cost more than a binary layer at batch 1). No
    gradient: packed models are for inference. Inputs other than float32
    (e.g. uint8 images) and custom bin edges take the TensorFlow ops of the
    parent layer.
    """

    def call(self, inputs):
        if inputs.dtype != tf.float32 or self.edges is not None:  # the op computes eq. 2 only
            return super().call(inputs)
        return _ops().bit_depth(inputs, self.bits, value_range=self.value_range,
                                straight_through=self.gradient != "none")


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class PackedNetwork(tf.keras.layers.Layer):
    """A chain of packed layers run as one op (``tfdisc.ops.packed_network``).

    Made by ``tfdisc.convert.to_packed(model, fused=True)`` from the layers
    named in ``fused_layers`` (``tfdisc.convert.fusion``); its output equals
    theirs bit for bit. The weights are two variables, ``words`` and
    ``floats`` (``tfdisc.ops.pack_network_weights``): a graph reads two
    variables, not one per weight.

    Args:
      steps: ``[[kind, [ints]], ...]`` (``tfdisc.ops.packed_network``).
      words_size, floats_size: Lengths of the two weight vectors.
      word_bits: 32 or 64.
      output: ``"float"`` or ``"bitpacked"``: what the last step returns.
      fused_layers: Names of the layers this one replaces.
      words, floats: Initial values (numpy), from the converter; omitted
        when deserializing (weights are loaded after).
    """

    def __init__(self, steps, words_size, floats_size, *, word_bits=32, output="float",
                 fused_layers=(), words=None, floats=None, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(trainable=False, **kwargs)
        self.steps = [[str(kind), [int(v) for v in ints]] for kind, ints in steps]
        self.words_size = int(words_size)
        self.floats_size = int(floats_size)
        self.word_bits = int(word_bits)
        self.output_kind = output
        self.fused_layers = [str(n) for n in fused_layers]
        self._init_values = dict(words=words, floats=floats)

    def build(self, input_shape):
        def constant(name, size, dtype):
            value = self._init_values[name]
            init = "zeros" if value is None else tf.constant_initializer(np.asarray(value))
            return self.add_weight(name=name, shape=(size,), dtype=dtype, initializer=init,
                                   trainable=False)

        self.words = constant("words", self.words_size, _word_dtype(self.word_bits))
        self.floats = constant("floats", self.floats_size, tf.float32)
        self._init_values = {}
        super().build(input_shape)

    def call(self, inputs):
        return _ops().packed_network(inputs, self.words, self.floats, self.steps,
                                     word_bits=self.word_bits, output=self.output_kind)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "words_size": self.words_size,
                "floats_size": self.floats_size, "word_bits": self.word_bits,
                "output": self.output_kind, "fused_layers": self.fused_layers}


#: Every packed layer class, for code that must tell packed models apart.
PACKED_LAYERS = (PackedBinaryDense, PackedBinaryConv2D, PackedMaxPool2D,
                 PackedBitDepthQuantization, PackedFloatConv2D, PackedNetwork)
