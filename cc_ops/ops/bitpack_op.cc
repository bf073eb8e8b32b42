#include "cc_ops/ops/shape_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>Bitpack")
    .Input("x: T")
    .Output("packed: out_type")
    .Attr("T: {float, double, half, bfloat16, int8, int32, int64}")
    .Attr("out_type: {int32, int64} = DT_INT32")
    .SetShapeFn([](si::InferenceContext* c) {
      si::ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(0), 1, &x));
      ::tensorflow::DataType out_type;
      TF_RETURN_IF_ERROR(c->GetAttr("out_type", &out_type));
      si::ShapeHandle out;
      TF_RETURN_IF_ERROR(
          c->ReplaceDim(x, -1, PackedWordsDim(c, c->Dim(x, -1), out_type), &out));
      c->set_output(0, out);
      return absl::OkStatus();
    })
    .Doc(R"doc(
Packs the signs of the last axis of `x` into 32- or 64-bit words.

Bit convention (as larq-compute-engine): value x becomes bit (x < 0), so +1
(and 0, like larq's sign) is bit 0 and -1 is bit 1. Channel c goes to word
c / B, bit c % B (B = 32 for int32, 64 for int64); each row is rounded up to
whole words and the padding bits are zero.

x: Tensor of rank >= 1; the last axis (K values) is packed.
packed: Same shape as `x` except the last axis, which is ceil(K / B).
out_type: Word type, int32 or int64.
)doc");

}  // namespace ops
}  // namespace tfdisc
