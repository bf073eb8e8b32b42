"""Model zoo: the paper's networks in full precision, BNN and XNOR variants.

Every model takes images in [0, 1], starts with
``tfdisc.layers.BitDepthQuantization(input_bits)`` and returns logits.

Precisions:
  * ``"full"``: float32 twin with the same topology (Dense/Conv2D, batch norm,
    ReLU).
  * ``"binary"``: BNN. larq ``QuantDense``/``QuantConv2D`` with ``ste_sign``
    on inputs and kernels, ``weight_clip`` on the latent weights, no bias, batch
    norm after each (Courbariaux et al., BinaryNet).
  * ``"xnor"``: binary inputs, kernels binarized with larq's
    ``magnitude_aware_sign`` (sign times the per-output-channel mean |w|, the
    XNOR-Net scaling factor).

As in BNN practice the first layer (on the quantized image) and the last
(logits) layer stay full precision.
"""
import numbers

import larq as lq
import tensorflow as tf

from tfdisc import layers as tfdisc_layers
from tfdisc import quantize

__all__ = ["PRECISIONS", "available", "build", "spec"]

PRECISIONS = ("full", "binary", "xnor")

_KERNEL_QUANTIZERS = {"binary": "ste_sign", "xnor": "magnitude_aware_sign"}


class _Blocks:
    """Creates the hidden layers of one precision."""

    def __init__(self, precision):
        self.precision = precision

    @property
    def quantized(self):
        return self.precision != "full"

    def _quant_kwargs(self):
        return dict(
            input_quantizer="ste_sign",
            kernel_quantizer=_KERNEL_QUANTIZERS[self.precision],
            kernel_constraint="weight_clip",
            use_bias=False,
        )

    def dense(self, units, name):
        if not self.quantized:
            return tf.keras.layers.Dense(units, use_bias=False, name=name)
        return lq.layers.QuantDense(units, name=name, **self._quant_kwargs())

    def conv(self, filters, kernel_size, name, strides=1):
        if not self.quantized:
            return tf.keras.layers.Conv2D(
                filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name
            )
        return lq.layers.QuantConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            pad_values=1.0,
            name=name,
            **self._quant_kwargs(),
        )

    def norm(self, name):
        # larq's examples use a small momentum and no scale for BNN batch norm.
        if self.quantized:
            return tf.keras.layers.BatchNormalization(momentum=0.9, scale=False, name=name)
        return tf.keras.layers.BatchNormalization(momentum=0.9, name=name)

    def activation(self, x, name):
        """Full precision: ReLU. Binary: none (the next layer's ste_sign is it)."""
        if self.quantized:
            return x
        return tf.keras.layers.ReLU(name=name)(x)


def _check_positive_int(value, name):
    """``value`` as an int; any integral type (numpy's included) is accepted."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r} "
                         f"({type(value).__name__}).")
    return int(value)


def _fcn(inputs, blocks, num_classes, width, depth):
    x = tf.keras.layers.Flatten(name="flatten")(inputs)
    x = tf.keras.layers.Dense(width, use_bias=False, name="dense_in")(x)
    x = blocks.norm("bn_in")(x)
    x = blocks.activation(x, "act_in")
    for i in range(1, depth):
        x = blocks.dense(width, f"dense_{i}")(x)
        x = blocks.norm(f"bn_{i}")(x)
        x = blocks.activation(x, f"act_{i}")
    return tf.keras.layers.Dense(num_classes, name="logits")(x)


def _alexnet_cifar(inputs, blocks, num_classes, width, depth):
    """BinaryNet's CIFAR10 network (Courbariaux et al. 2016), the paper's BNN "AlexNet".

    2×(w C3) – MP2 – 2×(2w C3) – MP2 – 2×(4w C3) – MP2 – depth×(8w FC) – logits,
    with w = ``width`` (BinaryNet: 128, so 1024-unit dense layers) and
    ``depth`` dense hidden layers (BinaryNet: 2).
    """
    x = tf.keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv_in")(inputs)
    x = blocks.norm("bn_in")(x)
    x = blocks.activation(x, "act_in")
    stages = [(width, True), (2 * width, False), (2 * width, True), (4 * width, False),
              (4 * width, True)]
    for i, (filters, pool) in enumerate(stages, start=1):
        x = blocks.conv(filters, 3, f"conv_{i}")(x)
        if pool:
            x = tf.keras.layers.MaxPool2D(2, name=f"pool_{i}")(x)
        x = blocks.norm(f"bn_{i}")(x)
        x = blocks.activation(x, f"act_{i}")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i in range(depth):
        x = blocks.dense(8 * width, f"dense_{i}")(x)
        x = blocks.norm(f"bn_dense_{i}")(x)
        x = blocks.activation(x, f"act_dense_{i}")
    return tf.keras.layers.Dense(num_classes, name="logits")(x)


def _resnet20(inputs, blocks, num_classes, width, depth):
    """CIFAR ResNet (He et al. 2016, sec. 4.2): 6n+2 layers, widths w, 2w, 4w.

    Binary/XNOR variants binarize the 3×3 convolutions of every residual block;
    the stem conv, the 1×1 projection shortcuts and the logits stay full
    precision.
    """
    if (depth - 2) % 6:
        raise ValueError(f"`depth` of resnet20 must be 6n+2 (e.g. 20, 32), got {depth}.")
    n = (depth - 2) // 6
    x = tf.keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv_in")(inputs)
    x = blocks.norm("bn_in")(x)
    x = tf.keras.layers.ReLU(name="act_in")(x) if not blocks.quantized else x
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(n):
            prefix = f"s{stage}b{block}"
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = tf.keras.layers.Conv2D(
                    filters, 1, strides=strides, use_bias=False, name=f"{prefix}_proj"
                )(shortcut)
                shortcut = tf.keras.layers.BatchNormalization(
                    momentum=0.9, name=f"{prefix}_proj_bn"
                )(shortcut)
            y = blocks.conv(filters, 3, f"{prefix}_conv_1", strides=strides)(x)
            y = blocks.norm(f"{prefix}_bn_1")(y)
            y = blocks.activation(y, f"{prefix}_act_1")
            y = blocks.conv(filters, 3, f"{prefix}_conv_2")(y)
            y = blocks.norm(f"{prefix}_bn_2")(y)
            x = tf.keras.layers.Add(name=f"{prefix}_add")([shortcut, y])
            x = blocks.activation(x, f"{prefix}_act_2")
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return tf.keras.layers.Dense(num_classes, name="logits")(x)


def _cnn_small(inputs, blocks, num_classes, width, depth):
    """The small CNN of certified training (Wong & Kolter 2018; Gowal et al. 2018's "small").

    C4/2(w) – C4/2(2w) – depth×FC(100w/16) – logits, w = ``width`` (16: 16 and 32
    channels, 100-unit dense layer), ReLU and batch norm. No pooling, so interval,
    linear and exact (MILP) bounds all apply. It fits certified training on a
    2-core CPU, on MNIST and CIFAR10 alike (``input_shape`` per dataset).
    """
    x = tf.keras.layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False,
                               name="conv_in")(inputs)
    x = blocks.norm("bn_in")(x)
    x = blocks.activation(x, "act_in")
    x = blocks.conv(2 * width, 4, "conv_1", strides=2)(x)
    x = blocks.norm("bn_1")(x)
    x = blocks.activation(x, "act_1")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i in range(depth):
        x = blocks.dense(max(1, (100 * width) // 16), f"dense_{i}")(x)
        x = blocks.norm(f"bn_dense_{i}")(x)
        x = blocks.activation(x, f"act_dense_{i}")
    return tf.keras.layers.Dense(num_classes, name="logits")(x)


def _alexnet(inputs, blocks, num_classes, width, depth):
    """ImageNet AlexNet (Krizhevsky et al. 2012) as used by XNOR-Net.

    C11/4(w) – MP3/2 – C5(8w/3) – MP3/2 – C3(4w) – C3(4w) – C3(8w/3) – MP3/2 –
    depth×FC(128w/3) – logits; w = ``width`` (AlexNet: 96, so 4096-unit FC).
    """
    c2, c3, fc = (8 * width) // 3, 4 * width, (128 * width) // 3
    x = tf.keras.layers.Conv2D(width, 11, strides=4, padding="same", use_bias=False,
                               name="conv_in")(inputs)
    x = blocks.norm("bn_in")(x)
    x = blocks.activation(x, "act_in")
    x = tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name="pool_in")(x)
    stages = [(c2, 5, True), (c3, 3, False), (c3, 3, False), (c2, 3, True)]
    for i, (filters, kernel, pool) in enumerate(stages, start=1):
        x = blocks.conv(filters, kernel, f"conv_{i}")(x)
        if pool:
            x = tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name=f"pool_{i}")(x)
        x = blocks.norm(f"bn_{i}")(x)
        x = blocks.activation(x, f"act_{i}")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for i in range(depth):
        x = blocks.dense(fc, f"dense_{i}")(x)
        x = blocks.norm(f"bn_dense_{i}")(x)
        x = blocks.activation(x, f"act_dense_{i}")
    return tf.keras.layers.Dense(num_classes, name="logits")(x)


class _Spec:
    def __init__(self, builder, input_shape, num_classes, width, depth, dataset, doc):
        self.builder = builder
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.width = width
        self.depth = depth
        self.dataset = dataset
        self.doc = doc


_REGISTRY = {
    "fcn1": _Spec(_fcn, (28, 28, 1), 10, 6144, 4, "mnist", "MNIST FCN1 784-6144x4-10"),
    "fcn2": _Spec(_fcn, (28, 28, 1), 10, 600, 4, "mnist", "MNIST FCN2 784-600x4-10"),
    "alexnet_cifar": _Spec(_alexnet_cifar, (32, 32, 3), 10, 128, 2, "cifar10",
                           "CIFAR10 BinaryNet-style AlexNet"),
    "cnn_small": _Spec(_cnn_small, (28, 28, 1), 10, 16, 1, "mnist",
                       "Small CNN of certified training (C4/2(16)-C4/2(32)-FC100), MNIST or "
                       "CIFAR10"),
    "resnet20": _Spec(_resnet20, (32, 32, 3), 100, 16, 20, "cifar100", "CIFAR ResNet-20"),
    "alexnet": _Spec(_alexnet, (224, 224, 3), 1000, 96, 2, "imagenet2012", "ImageNet AlexNet"),
}


def available():
    """Names accepted by ``build``, sorted."""
    return sorted(_REGISTRY)


def spec(name):
    """Defaults of a model: dict with input_shape, num_classes, width, depth, dataset."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; available models: {', '.join(available())}.")
    s = _REGISTRY[name]
    return dict(input_shape=s.input_shape, num_classes=s.num_classes, width=s.width,
                depth=s.depth, dataset=s.dataset, description=s.doc)


def build(name, *, precision="full", input_bits=8, num_classes=None, input_shape=None,
          width=None, depth=None, gradient="straight_through", input_edges=None):
    """Builds a zoo model returning logits.

    Args:
      name: One of ``available()``.
      precision: ``"full"``, ``"binary"`` (BNN) or ``"xnor"``.
      input_bits: Bits of the input discretization layer, 1..8.
      num_classes: Logits; default per model (10, 100 or 1000).
      input_shape: ``(H, W, C)``; default per model.
      width: Capacity knob (hidden units of the FCNs, first conv's channels of
        the CNNs); default per model.
      depth: Hidden layers of the FCNs (4), dense hidden layers of the
        AlexNets (2), total layers of the ResNet (20).
      gradient: Gradient of the input quantizer, see ``BitDepthQuantization``.
      input_edges: None (eq. 2) or the input quantizer's custom bin edges (see
        ``BitDepthQuantization``).

    Returns:
      An uncompiled ``tf.keras.Model`` named after its configuration, e.g.
      ``fcn2_binary_2b``.

    Raises:
      ValueError: unknown name or precision, bad bits, width, depth or shape.

    Example:
      >>> model = build("fcn2", precision="binary", input_bits=2)
    """
    s = spec(name)
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}.")
    input_bits = quantize.check_bits(input_bits)
    input_edges = quantize.check_edges(input_edges, input_bits)
    num_classes = _check_positive_int(s["num_classes"] if num_classes is None else num_classes,
                                      "num_classes")
    width = _check_positive_int(s["width"] if width is None else width, "width")
    depth = _check_positive_int(s["depth"] if depth is None else depth, "depth")
    input_shape = s["input_shape"] if input_shape is None else tuple(input_shape)
    if len(input_shape) != 3 or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
            for d in input_shape):
        raise ValueError(
            f"`input_shape` must be (height, width, channels) of positive ints, got {input_shape!r}."
        )
    input_shape = tuple(int(d) for d in input_shape)
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = tfdisc_layers.BitDepthQuantization(input_bits, gradient=gradient, edges=input_edges,
                                           name="input_quantization")(inputs)
    try:
        outputs = _REGISTRY[name].builder(x, _Blocks(precision), num_classes, width, depth)
    except ValueError as e:
        if "Negative dimension size" not in str(e):
            raise
        raise ValueError(
            f"`input_shape` {input_shape} is too small for {name}: its pooling/strided layers "
            f"shrink the image below 1 pixel (default input_shape {s['input_shape']}).") from None
    return tf.keras.Model(inputs, outputs, name=f"{name}_{precision}_{input_bits}b")
