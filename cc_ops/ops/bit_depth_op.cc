#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>BitDepth")
    .Input("x: float")
    .Output("y: float")
    .Attr("bits: int")
    .Attr("low: float")
    .Attr("high: float")
    .Attr("scale: float")
    .Attr("unscale: float")
    .Attr("straight_through: bool = true")
    .SetShapeFn(::tensorflow::shape_inference::UnchangedShape)
    .Doc(R"doc(
Bit-depth reduction (paper eq. 2) of float images in one pass, for inference.

Computes, per element and in float32 with the rounding of
tfdisc.quantize.bit_depth's TensorFlow ops, op for op: NaN -> low; clip to
[low, high]; intensity = (clipped - low) * scale; bin = min(floor((intensity
+ 1e-3) / step), 2^bits - 1) with step = 256 / 2^bits; quantized = (bin *
step + step / 2) * unscale + low; y = clipped + (quantized - clipped) when
straight_through (the forward value of the straight-through form), else
quantized. No gradient is registered.

x: float32 tensor of any shape.
y: Same shape as x.
bits: Integer in [1, 8].
low: Lower end of the value range (finite, < high).
high: Upper end of the value range (finite).
scale: 255 / (high - low), rounded to float32 from double as TensorFlow
  rounds the Python constant.
unscale: (high - low) / 255, rounded likewise.
straight_through: Return clipped + (quantized - clipped), as the layer's
  straight-through form computes it, instead of quantized.
)doc");

}  // namespace ops
}  // namespace tfdisc
