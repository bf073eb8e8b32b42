#include "cc_ops/ops/shape_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>BinaryDense")
    .Input("x: Tpacked")
    .Input("weights: Tpacked")
    .Input("multiplier: float")
    .Input("bias: float")
    .Output("y: out_type")
    .Attr("Tpacked: {int32, int64}")
    .Attr("k: int")
    .Attr("out_type: {int32, int64, float} = DT_FLOAT")
    .Attr("bitpacked_output: bool = false")
    .SetShapeFn([](si::InferenceContext* c) {
      si::ShapeHandle x, w, unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &w));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &unused));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 1, &unused));
      si::DimensionHandle words;
      TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 1), c->Dim(w, 1), &words));
      bool bitpacked;
      ::tensorflow::DataType out_type;
      TF_RETURN_IF_ERROR(c->GetAttr("bitpacked_output", &bitpacked));
      TF_RETURN_IF_ERROR(c->GetAttr("out_type", &out_type));
      si::DimensionHandle n = c->Dim(w, 0);
      if (bitpacked) {
        n = PackedWordsDim(c, n, out_type);
      }
      c->set_output(0, c->Matrix(c->Dim(x, 0), n));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Binary fully-connected layer on bit-packed operands (inference only).

dot[i, j] = k - 2 * popcount(x[i] XOR weights[j]) is exactly the +-1 dot
product of the k-element rows (padding bits are zero in both operands).
The output is dot (out_type=int32), float(dot) * multiplier + bias
(out_type=float; an empty multiplier/bias means 1/0), or, with
bitpacked_output, the sign bits of that float value packed into out_type
words.

x: [batch, words] packed input rows.
weights: [units, words] packed weight rows (the transposed kernel).
multiplier: [units] or [0] per-unit scale (folded batch norm / XNOR scale).
bias: [units] or [0] per-unit offset.
k: Number of real bits per row; words must equal ceil(k / word bits).
)doc");

}  // namespace ops
}  // namespace tfdisc
