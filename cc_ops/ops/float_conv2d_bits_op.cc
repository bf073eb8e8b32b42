#include "cc_ops/ops/shape_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>FloatConv2DBits")
    .Input("input: float")
    .Input("filter: float")
    .Input("bias: float")
    .Output("output: out_type")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("dilations: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("out_type: {int32, int64} = DT_INT32")
    .SetShapeFn([](si::InferenceContext* c) {
      si::ShapeHandle input, filter, bias;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &bias));
      si::DimensionHandle unused;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(input, 3), c->Dim(filter, 2), &unused));
      si::DimensionHandle oh, ow;
      TF_RETURN_IF_ERROR(ConvOutputHeightWidth(c, input, c->Dim(filter, 0),
                                               c->Dim(filter, 1), &oh, &ow));
      ::tensorflow::DataType out_type;
      TF_RETURN_IF_ERROR(c->GetAttr("out_type", &out_type));
      c->set_output(0, c->MakeShape({c->Dim(input, 0), oh, ow,
                                     PackedWordsDim(c, c->Dim(filter, 3), out_type)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Float 2-D convolution (NHWC, zero padding) plus bias, emitted as sign bits.

For a full-precision layer whose output is only ever binarized (a BNN's
first convolution, batch norm folded into filter and bias, feeding a binary
layer): the same bits as bitpack(conv2d(input, filter) + bias) except where
a value is within float rounding of zero (the sums run in another order),
without writing the float output.

input: [batch, height, width, channels] float32.
filter: [filter_height, filter_width, channels, out_channels] float32 (HWIO).
bias: [out_channels] float32.
strides: [stride_h, stride_w].
dilations: [dilation_h, dilation_w].
padding: SAME (zeros) or VALID, as tf.nn.conv2d.
out_type: Word type, int32 or int64.
output: [batch, out_height, out_width, ceil(out_channels / word bits)].
)doc");

}  // namespace ops
}  // namespace tfdisc
