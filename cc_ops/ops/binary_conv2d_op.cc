#include <string>
#include <vector>

#include "cc_ops/ops/shape_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>BinaryConv2D")
    .Input("input: Tpacked")
    .Input("filter: Tpacked")
    .Input("multiplier: float")
    .Input("bias: float")
    .Output("output: out_type")
    .Attr("Tpacked: {int32, int64}")
    .Attr("channels_in: int")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("pad_value: int = 0")
    .Attr("out_type: {int32, int64, float} = DT_FLOAT")
    .Attr("bitpacked_output: bool = false")
    .SetShapeFn([](si::InferenceContext* c) {
      si::ShapeHandle input, filter, unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &unused));
      si::DimensionHandle words;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(input, 3), c->Dim(filter, 3), &words));
      si::DimensionHandle oh, ow;
      TF_RETURN_IF_ERROR(ConvOutputHeightWidth(c, input, c->Dim(filter, 1),
                                               c->Dim(filter, 2), &oh, &ow));
      bool bitpacked;
      ::tensorflow::DataType out_type;
      TF_RETURN_IF_ERROR(c->GetAttr("bitpacked_output", &bitpacked));
      TF_RETURN_IF_ERROR(c->GetAttr("out_type", &out_type));
      si::DimensionHandle n = c->Dim(filter, 0);
      if (bitpacked) {
        n = PackedWordsDim(c, n, out_type);
      }
      c->set_output(0, c->MakeShape({c->Dim(input, 0), oh, ow, n}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Binary 2-D convolution on channel-packed NHWC data (inference only).

Computes the +-1 convolution of sign(input) with sign(filter) exactly, as
larq's QuantConv2D does in float on +-1 values, then the same output
transform as BinaryDense.

input: [batch, height, width, words] packed input.
filter: [out_channels, filter_height, filter_width, words] packed (OHWI).
multiplier: [out_channels] or [0].
bias: [out_channels] or [0].
channels_in: Real input channels C; words must be ceil(C / word bits).
strides: [stride_h, stride_w].
dilations: [dilation_h, dilation_w].
padding: 'SAME' or 'VALID' (TensorFlow's definition).
pad_value: Value of SAME-padding pixels: 1 or -1 (larq pad_values=+-1.0), or
  0 (zero padding, larq's default; exact through a correction term).
)doc");

}  // namespace ops
}  // namespace tfdisc
