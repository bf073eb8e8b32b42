"""What ``tfdisc.convert.to_packed`` did: converted layers and weight sizes."""
import dataclasses

import numpy as np

__all__ = ["PackingReport", "weight_bytes"]


def weight_bytes(weights):
    """Bytes of a list of weight arrays (variables or numpy)."""
    return int(sum(np.asarray(w).nbytes for w in weights))


@dataclasses.dataclass(frozen=True)
class PackingReport:
    """What ``to_packed`` did.

    Attributes:
      packed_layers: Names of larq layers now running on packed ops.
      float_layers: ``(name, reason)`` of larq layers left in float.
      folded_batch_norms: Names of BatchNormalization layers folded into packed layers.
      folded_float_convs: ``(conv, batch norm)`` names of full-precision
        convolutions whose batch norm was folded into their kernel and bias.
      bitpacked_outputs: Names of packed layers emitting sign bits.
      bit_output_float_convs: Names of those folded full-precision
        convolutions that emit sign bits for the packed layers they feed
        (``PackedFloatConv2D``: the float output is never written).
      fused_networks: ``(name, (layer names...))`` of each ``PackedNetwork``
        (one op) of a ``fused=True`` model and the layers it replaced.
      float_bytes: Weight bytes of the input model (float32 latent weights).
      packed_bytes: Weight bytes of the converted model (packed words,
        float multipliers/biases, and the layers it keeps in float).
      binary_float_bytes / binary_packed_bytes: The same, restricted to the
        converted layers (and the batch norms folded into them).
    """

    packed_layers: tuple
    float_layers: tuple
    folded_batch_norms: tuple
    bitpacked_outputs: tuple
    float_bytes: int
    packed_bytes: int
    binary_float_bytes: int
    binary_packed_bytes: int
    folded_float_convs: tuple = ()
    bit_output_float_convs: tuple = ()
    fused_networks: tuple = ()

    @property
    def compression(self):
        return self.float_bytes / max(self.packed_bytes, 1)

    def summary(self):
        lines = [
            f"packed layers: {len(self.packed_layers)} ({', '.join(self.packed_layers)})",
            f"float larq layers: {len(self.float_layers)}"
            + "".join(f"\n  {n}: {r}" for n, r in self.float_layers),
            f"folded batch norms: {len(self.folded_batch_norms)}; bit-packed outputs: "
            f"{len(self.bitpacked_outputs)}; float convolutions with a folded batch norm: "
            f"{len(self.folded_float_convs)} ({len(self.bit_output_float_convs)} emitting "
            "sign bits)",
            f"fused into one op each: {len(self.fused_networks)} chains of "
            f"{sum(len(layers) for _, layers in self.fused_networks)} layers",
            f"model size: {self.float_bytes / 1024:.1f} KiB float -> "
            f"{self.packed_bytes / 1024:.1f} KiB packed ({self.compression:.1f}x)",
            f"binary layers: {self.binary_float_bytes / 1024:.1f} KiB float -> "
            f"{self.binary_packed_bytes / 1024:.1f} KiB packed "
            f"({self.binary_float_bytes / max(self.binary_packed_bytes, 1):.1f}x)",
        ]
        return "\n".join(lines)
