#include <string>
#include <vector>

#include "cc_ops/ops/shape_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>BitpackedMaxPool2D")
    .Input("input: Tpacked")
    .Input("or_mask: Tpacked")
    .Output("output: Tpacked")
    .Attr("Tpacked: {int32, int64}")
    .Attr("ksize: list(int)")
    .Attr("strides: list(int)")
    .Attr("padding: {'SAME', 'VALID'}")
    .SetShapeFn([](si::InferenceContext* c) {
      si::ShapeHandle input, unused;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 1, &unused));
      std::vector<::tensorflow::int32> ksize, strides;
      std::string padding;
      TF_RETURN_IF_ERROR(c->GetAttr("ksize", &ksize));
      TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
      TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
      if (ksize.size() != 2 || strides.size() != 2) {
        return ::tensorflow::errors::InvalidArgument(
            "ksize and strides must have 2 elements [h, w]");
      }
      si::DimensionHandle oh = c->UnknownDim(), ow = c->UnknownDim();
      if (ksize[0] >= 1 && ksize[1] >= 1 && strides[0] >= 1 && strides[1] >= 1) {
        TF_RETURN_IF_ERROR(WindowedDim(c, c->Dim(input, 1), ksize[0], strides[0],
                                       1, padding == "SAME", &oh));
        TF_RETURN_IF_ERROR(WindowedDim(c, c->Dim(input, 2), ksize[1], strides[1],
                                       1, padding == "SAME", &ow));
      }
      c->set_output(0, c->MakeShape({c->Dim(input, 0), oh, ow, c->Dim(input, 3)}));
      return absl::OkStatus();
    })
    .Doc(R"doc(
Max pooling of packed +-1 data: bitwise AND over the window (OR for channels
whose bit is set in `or_mask`, i.e. min pooling; see the kernel comment).

input: [batch, height, width, words] packed.
or_mask: [words] or [0].
ksize: [h, w] window.
strides: [h, w].
padding: 'SAME' or 'VALID'.
)doc");

}  // namespace ops
}  // namespace tfdisc
