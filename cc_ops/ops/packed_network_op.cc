#include <string>
#include <vector>

#include "cc_ops/core/network_plan.h"
#include "cc_ops/ops/shape_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

REGISTER_OP("Tfdisc>PackedNetwork")
    .Input("input: Tin")
    .Input("words: Tpacked")
    .Input("floats: float")
    .Output("output: out_type")
    .Attr("Tin: {float, int32, int64}")
    .Attr("Tpacked: {int32, int64}")
    .Attr("steps: list(string)")
    .Attr("step_ints: list(int)")
    .Attr("word_bits: int = 32")
    .Attr("out_type: {float, int32, int64} = DT_FLOAT")
    .SetShapeFn([](si::InferenceContext* c) {
      std::vector<std::string> kinds;
      std::vector<::tensorflow::int64> ints;
      int word_bits;
      ::tensorflow::DataType in_type;
      TF_RETURN_IF_ERROR(c->GetAttr("steps", &kinds));
      TF_RETURN_IF_ERROR(c->GetAttr("step_ints", &ints));
      TF_RETURN_IF_ERROR(c->GetAttr("word_bits", &word_bits));
      TF_RETURN_IF_ERROR(c->GetAttr("Tin", &in_type));
      std::vector<core::Step> steps;
      std::vector<core::WeightType> weight_types;
      bool output_bits = false;
      std::string error;
      const bool input_bits = in_type != ::tensorflow::DT_FLOAT;
      if (!core::ParseNetwork(kinds, std::vector<std::int64_t>(ints.begin(), ints.end()),
                              word_bits, input_bits, &steps, &weight_types, &output_bits,
                              &error)) {
        return ::tensorflow::errors::InvalidArgument("packed_network: ", error);
      }
      si::ShapeHandle input = c->input(0);
      if (!c->RankKnown(input)) {
        c->set_output(0, c->UnknownShape());
        return absl::OkStatus();
      }
      const int rank = c->Rank(input);
      if (rank != 2 && rank != 4) {
        return ::tensorflow::errors::InvalidArgument(
            "packed_network: the input must be rank 2 or 4, got rank ", rank);
      }
      for (int d = 1; d < rank; ++d) {
        if (!c->ValueKnown(c->Dim(input, d))) {
          c->set_output(0, c->UnknownShape());
          return absl::OkStatus();
        }
      }
      core::Flow in;
      in.bits = input_bits;
      in.rank = rank;
      in.batch = 1;
      if (rank == 4) {
        in.h = c->Value(c->Dim(input, 1));
        in.w = c->Value(c->Dim(input, 2));
      }
      const std::int64_t last = c->Value(c->Dim(input, rank - 1));
      in.row = input_bits ? last * (word_bits / core::kWordBits) : last;
      in.channels = input_bits ? -1 : last;
      std::vector<core::Flow> flows;
      if (!core::PlanNetwork(&steps, word_bits, in, &flows, &error)) {
        return ::tensorflow::errors::InvalidArgument("packed_network: ", error);
      }
      const core::Flow& out = flows.back();
      const std::int64_t out_last =
          out.bits ? out.row * core::kWordBits / word_bits : out.row;
      if (out.rank == 4) {
        c->set_output(0, c->MakeShape({c->Dim(input, 0), c->MakeDim(out.h), c->MakeDim(out.w),
                                       c->MakeDim(out_last)}));
      } else {
        c->set_output(0, c->MakeShape({c->Dim(input, 0), c->MakeDim(out_last)}));
      }
      return absl::OkStatus();
    })
    .Doc(R"doc(
A chain of packed layers run as one op (inference only; cc_ops/core/network_plan.h, network.h).

The steps run back to back on the drivers of the per-layer ops
(Bitpack, FloatConv2DBits, BinaryConv2D, BitpackedMaxPool2D, BinaryDense), so
the output equals that of the per-layer ops in sequence, bit for bit.

input: float NHWC / [batch, features], or packed words (Tin = the word type).
words: 1-D, the steps' packed weights (filters, dense weights, or_masks) in step
  order, each at a multiple of 64 bytes (see core/network_plan.h).
floats: 1-D, the steps' float weights (multipliers, biases, float kernels),
  laid out the same way.
steps: step kinds: bitpack, float_conv_bits, conv, max_pool, flatten, dense.
step_ints: the steps' integer parameters, concatenated (see core/network_plan.h).
word_bits: 32 or 64, the word size of all packed data and weights (Tpacked).
out_type: float when the last step returns float data, else the word type.
)doc");

}  // namespace ops
}  // namespace tfdisc
