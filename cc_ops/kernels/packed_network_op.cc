// Tfdisc>PackedNetwork: a chain of packed layers as one op (core/network.h).
//
// The steps are read and checked once, at construction. The weight forms
// the kernels want (transposed conv filters with their nibble-table panels,
// the float first layer's padded filter) are built on the first call and
// kept: the cache holds a reference to the two weight tensors it was built
// from and is used while the weight inputs are those same buffers. Holding
// the reference also keeps it exact: TensorFlow updates a variable's buffer
// in place only when nothing else references it (copy-on-write), so a
// changed weight always arrives in a new buffer and is prepared again.
// Scratch buffers between the steps come from a pool, one set per
// concurrent call, reused across calls.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cc_ops/core/network.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfdisc {
namespace kernels {

class PackedNetworkOp : public tf::OpKernel {
 public:
  explicit PackedNetworkOp(tf::OpKernelConstruction* ctx) : tf::OpKernel(ctx) {
    std::vector<std::string> kinds;
    std::vector<tf::int64> ints;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("steps", &kinds));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step_ints", &ints));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("word_bits", &word_bits_));
    OP_REQUIRES(ctx, word_bits_ == 32 || word_bits_ == 64,
                tf::errors::InvalidArgument("packed_network: word_bits must be 32 or 64, got ",
                                            word_bits_));
    word_type_ = word_bits_ == 32 ? tf::DT_INT32 : tf::DT_INT64;
    const tf::DataType in_type = ctx->input_type(0);
    input_bits_ = in_type != tf::DT_FLOAT;
    OP_REQUIRES(ctx, !input_bits_ || in_type == word_type_,
                tf::errors::InvalidArgument(
                    "packed_network: a packed input must have the word type of word_bits=",
                    word_bits_, " (", tf::DataTypeString(word_type_), "), got ",
                    tf::DataTypeString(in_type)));
    std::string error;
    bool output_bits = false;
    OP_REQUIRES(ctx,
                core::ParseNetwork(kinds, std::vector<std::int64_t>(ints.begin(), ints.end()),
                                   word_bits_, input_bits_, &steps_, &weight_types_,
                                   &output_bits, &error),
                tf::errors::InvalidArgument("packed_network: ", error));
    weight_names_.resize(weight_types_.size());
    for (const core::Step& s : steps_) {
      for (const auto& role : Roles(s)) weight_names_[role.first] = s.name + " " + role.second;
    }
    OP_REQUIRES(ctx, ctx->input_type(1) == word_type_,
                tf::errors::InvalidArgument(
                    "packed_network: words must have the word type of word_bits=", word_bits_,
                    " (", tf::DataTypeString(word_type_), "), got ",
                    tf::DataTypeString(ctx->input_type(1))));
    tf::DataType out_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("out_type", &out_type));
    const tf::DataType want_out = output_bits ? word_type_ : tf::DT_FLOAT;
    OP_REQUIRES(ctx, out_type == want_out,
                tf::errors::InvalidArgument(
                    "packed_network: the last step returns ",
                    output_bits ? "packed bits" : "float data", ", so out_type must be ",
                    tf::DataTypeString(want_out), ", got ", tf::DataTypeString(out_type)));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& input = ctx->input(0);
    OP_REQUIRES(ctx, input.dims() == 2 || input.dims() == 4,
                tf::errors::InvalidArgument(
                    "packed_network: the input must be rank 2 [batch, features] or rank 4 "
                    "NHWC, got shape ", input.shape().DebugString()));
    core::Flow in;
    in.bits = input_bits_;
    in.rank = input.dims();
    in.batch = input.dim_size(0);
    if (in.rank == 4) {
      in.h = input.dim_size(1);
      in.w = input.dim_size(2);
    }
    const std::int64_t last = input.dim_size(in.rank - 1);
    in.row = input_bits_ ? last * (word_bits_ / core::kWordBits) : last;
    in.channels = input_bits_ ? -1 : last;
    std::vector<core::Step> steps = steps_;  // the geometry is filled per call
    std::vector<core::Flow> flows;
    std::string error;
    OP_REQUIRES(ctx, core::PlanNetwork(&steps, word_bits_, in, &flows, &error),
                tf::errors::InvalidArgument("packed_network: ", error));
    std::vector<core::WeightView> views;
    OP_REQUIRES_OK(ctx, WeightViews(ctx, steps, &views));
    const core::Flow& out_flow = flows.back();
    const std::int64_t out_last = out_flow.bits ? out_flow.row * core::kWordBits / word_bits_
                                                : out_flow.row;
    tf::TensorShape out_shape;
    if (out_flow.rank == 4) {
      out_shape = tf::TensorShape({out_flow.batch, out_flow.h, out_flow.w, out_last});
    } else {
      out_shape = tf::TensorShape({out_flow.batch, out_last});
    }
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    const core::ConvKernels conv_kernels = core::ConvKernelsFor(type);
    const bool transposed = type != core::KernelType::kReference && conv_kernels.gemm_t != nullptr;
    std::shared_ptr<const core::PreparedNetwork> prepared =
        GetPrepared(ctx, steps, views, transposed, conv_kernels.gemm_ts != nullptr);
    // One thread choice per step, by its size.
    const core::ParallelFor pool = MakeParallelFor(ctx);
    const core::ParallelFor serial = core::SerialFor;
    const std::int64_t min_cost = core::FusedParallelMinCost();
    std::vector<char> parallel(steps.size());
    for (std::size_t i = 0; i < steps.size(); ++i) {
      parallel[i] = core::StepCost(steps[i], i == 0 ? in : flows[i - 1], flows[i]) >= min_cost;
    }
    std::unique_ptr<core::NetworkScratch> scratch = AcquireScratch();
    const bool ok = core::RunNetwork(
        steps, flows, in, input.tensor_data().data(),
        const_cast<char*>(out->tensor_data().data()), views, *prepared, type, scratch.get(),
        [&](std::size_t i) -> const core::ParallelFor& { return parallel[i] ? pool : serial; });
    ReleaseScratch(std::move(scratch));
    OP_REQUIRES(ctx, ok,
                tf::errors::ResourceExhausted("packed_network: out of memory for the buffers "
                                              "between layers"));
  }

 private:
  // (weight index, role) of a step's weight inputs, in order.
  static std::vector<std::pair<int, std::string>> Roles(const core::Step& s) {
    std::vector<std::pair<int, std::string>> roles;
    const bool float_conv = s.kind == core::StepKind::kFloatConvBits;
    const char* weight = s.kind == core::StepKind::kMaxPool
                             ? "or_mask"
                             : (s.kind == core::StepKind::kDense
                                    ? "weights"
                                    : (float_conv ? "kernel" : "filter"));
    if (s.weight >= 0) roles.emplace_back(s.weight, weight);
    if (s.multiplier >= 0) roles.emplace_back(s.multiplier, "multiplier");
    if (s.bias >= 0) roles.emplace_back(s.bias, "bias");
    return roles;
  }

  // Checks `words` and `floats` against what the planned steps need and
  // points `views` at each weight (core/network_plan.h, WeightOffsets).
  absl::Status WeightViews(tf::OpKernelContext* ctx, const std::vector<core::Step>& steps,
                           std::vector<core::WeightView>* views) const {
    const tf::Tensor* tensors[2] = {&ctx->input(1), &ctx->input(2)};
    const char* names[2] = {"words", "floats"};
    for (int t = 0; t < 2; ++t) {
      if (tensors[t]->dims() != 1) {
        return tf::errors::InvalidArgument("packed_network: ", names[t], " must be 1-D, got shape ",
                                           tensors[t]->shape().DebugString());
      }
    }
    const std::vector<std::int64_t> sizes =
        core::WeightSizes(steps, weight_types_.size(), word_bits_);
    std::int64_t totals[2];
    const std::vector<std::int64_t> offsets =
        core::WeightOffsets(weight_types_, sizes, word_bits_, totals);
    for (int t = 0; t < 2; ++t) {
      if (tensors[t]->dim_size(0) != totals[t]) {
        std::string parts;
        for (std::size_t i = 0; i < sizes.size(); ++i) {
          if ((weight_types_[i] == core::WeightType::kWords) != (t == 0)) continue;
          parts += std::string(parts.empty() ? "" : ", ") + weight_names_[i] + " " +
                   std::to_string(sizes[i]) + " at " + std::to_string(offsets[i]);
        }
        return tf::errors::InvalidArgument(
            "packed_network: the steps need ", totals[t], " elements in ", names[t],
            " (each weight at a multiple of ", core::kWeightAlignBytes, " bytes: ", parts,
            "), got ", tensors[t]->dim_size(0));
      }
    }
    views->resize(sizes.size());
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const bool words = weight_types_[i] == core::WeightType::kWords;
      const char* base = tensors[words ? 0 : 1]->tensor_data().data();
      const std::int64_t element = words ? word_bits_ / 8 : 4;
      (*views)[i].data = base + offsets[i] * element;
      (*views)[i].size = sizes[i];
    }
    return absl::OkStatus();
  }

  std::shared_ptr<const core::PreparedNetwork> GetPrepared(
      tf::OpKernelContext* ctx, const std::vector<core::Step>& steps,
      const std::vector<core::WeightView>& views, bool transposed, bool split) {
    std::lock_guard<std::mutex> lock(mu_);
    bool hit = prepared_ != nullptr && held_.size() == 2 &&
               (!transposed || prepared_->transposed) && (!split || prepared_->split);
    for (int i = 0; hit && i < 2; ++i) {
      hit = held_[i].tensor_data().data() == ctx->input(1 + i).tensor_data().data() &&
            held_[i].tensor_data().size() == ctx->input(1 + i).tensor_data().size();
    }
    if (hit) return prepared_;
    auto prepared = std::make_shared<core::PreparedNetwork>();
    core::PrepareNetwork(steps, views, transposed, split, prepared.get());
    held_ = {ctx->input(1), ctx->input(2)};
    prepared_ = prepared;
    return prepared_;
  }

  std::unique_ptr<core::NetworkScratch> AcquireScratch() {
    std::lock_guard<std::mutex> lock(scratch_mu_);
    if (free_scratch_.empty()) return std::make_unique<core::NetworkScratch>();
    std::unique_ptr<core::NetworkScratch> s = std::move(free_scratch_.back());
    free_scratch_.pop_back();
    return s;
  }

  void ReleaseScratch(std::unique_ptr<core::NetworkScratch> s) {
    std::lock_guard<std::mutex> lock(scratch_mu_);
    free_scratch_.push_back(std::move(s));
  }

  std::vector<core::Step> steps_;
  std::vector<core::WeightType> weight_types_;
  std::vector<std::string> weight_names_;
  int word_bits_ = 32;
  tf::DataType word_type_ = tf::DT_INT32;
  bool input_bits_ = false;

  std::mutex mu_;
  std::vector<tf::Tensor> held_;  // `words` and `floats` prepared_ was built from
  std::shared_ptr<const core::PreparedNetwork> prepared_;

  std::mutex scratch_mu_;
  std::vector<std::unique_ptr<core::NetworkScratch>> free_scratch_;
};

REGISTER_KERNEL_BUILDER(Name("Tfdisc>PackedNetwork").Device(tf::DEVICE_CPU),
                        PackedNetworkOp);

}  // namespace kernels
}  // namespace tfdisc
