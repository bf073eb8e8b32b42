"""Keras layers of tfdisc."""
import tensorflow as tf

from tfdisc import quantize

__all__ = ["BitDepthQuantization"]


@tf.keras.utils.register_keras_serializable(package="tfdisc")
class BitDepthQuantization(tf.keras.layers.Layer):
    """Bit-depth reduction of images (paper eq. 2) as a preprocessing layer.

    Computes ``tfdisc.quantize.bit_depth`` on every call, in training and in
    inference alike: the defence is part of the model, so white-box attacks
    differentiate through it (straight-through by default).

    Args:
      bits: Integer in [1, 8]; 8 is eq. 2 with step 1.
      value_range: ``(low, high)`` of float inputs and of the output.
      gradient: ``"straight_through"`` (BPDA, default) or ``"none"`` (true zero
        gradient of floor; shows gradient masking only).
      edges: None (eq. 2, the default) or ``2**bits − 1`` increasing bin edges
        on the 0–255 scale, each bin mapped to its middle (a separate option,
        e.g. from ``tfdisc.quantize.edges_from_data``; ``describe()`` names it).

    Example:
      >>> layer = BitDepthQuantization(2)
      >>> layer(tf.constant([[0.0, 0.5, 1.0]])).numpy()
      array([[0.1254902, 0.3764706, 0.8784314]], dtype=float32)

    References:
      Paper eq. 2.
    """

    def __init__(self, bits, value_range=(0.0, 1.0), gradient="straight_through", edges=None,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.bits = quantize.check_bits(bits)
        self.value_range = quantize.check_value_range(value_range)
        self.gradient = quantize.check_gradient(gradient)
        self.edges = quantize.custom_edges(edges, self.bits)

    @property
    def precision(self):
        """Bit width of the quantized input, like larq's quantizers."""
        return self.bits

    @property
    def bin_bounds(self):
        """float64 ``[0, e_1, …, 256]`` on the 0–255 scale: bin ``k`` is ``[b[k], b[k + 1])``."""
        return quantize.bin_bounds(self.bits, self.edges)

    def describe(self):
        """The quantizer as results record it: eq. 2, or the custom edges."""
        if self.edges is None:
            return {"name": "eq2", "bits": self.bits}
        return {"name": "custom_edges", "bits": self.bits, "edges": list(self.edges)}

    def quantize(self, x, gradient=None):
        """``tfdisc.quantize.bit_depth`` with this layer's settings (``gradient`` overrides)."""
        return quantize.bit_depth(x, self.bits, value_range=self.value_range,
                                  gradient=gradient or self.gradient, edges=self.edges)

    def call(self, inputs):
        return self.quantize(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            bits=self.bits, value_range=list(self.value_range), gradient=self.gradient
        )
        if self.edges is not None:  # eq. 2 models keep the config they always had
            config["edges"] = list(self.edges)
        return config
