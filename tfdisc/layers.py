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

    Example:
      >>> layer = BitDepthQuantization(2)
      >>> layer(tf.constant([[0.0, 0.5, 1.0]])).numpy()
      array([[0.1254902, 0.3764706, 0.8784314]], dtype=float32)

    References:
      Paper eq. 2.
    """

    def __init__(self, bits, value_range=(0.0, 1.0), gradient="straight_through", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.bits = quantize.check_bits(bits)
        self.value_range = quantize.check_value_range(value_range)
        self.gradient = quantize.check_gradient(gradient)

    @property
    def precision(self):
        """Bit width of the quantized input, like larq's quantizers."""
        return self.bits

    def call(self, inputs):
        return quantize.bit_depth(
            inputs, self.bits, value_range=self.value_range, gradient=self.gradient
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            bits=self.bits, value_range=list(self.value_range), gradient=self.gradient
        )
        return config
