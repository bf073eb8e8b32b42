// Shared glue between TensorFlow OpKernels and the framework-free core/.
#ifndef TFDISC_CC_OPS_KERNELS_COMMON_H_
#define TFDISC_CC_OPS_KERNELS_COMMON_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/output_transform.h"
#include "cc_ops/core/parallel.h"
#include "cc_ops/core/spin_pool.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tfdisc {
namespace kernels {

namespace tf = ::tensorflow;

// Runs core/ work on TensorFlow's intra-op thread pool, except work so small
// that TensorFlow's sharder would keep it on one thread (batch-1 layers):
// that runs on the op library's spinning pool (core/spin_pool.h), which
// gives it the other cores without a thread wake-up per call when layers
// come back to back. Opt-in: TFDISC_OPS_SPIN_US > 0 turns it on (an invalid
// value fails the op). A busy pool
// (another op is using it) falls back to the sharder.
inline core::ParallelFor MakeParallelFor(tf::OpKernelContext* ctx) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  std::int64_t spin_us = 0;
  std::string error;
  if (!core::SpinMicrosFromEnv(&spin_us, &error)) {
    ctx->CtxFailure(__FILE__, __LINE__, tf::errors::InvalidArgument(error));
  }
  return [workers, spin_us](std::int64_t total, std::int64_t cost,
                            const std::function<void(std::int64_t, std::int64_t)>& fn) {
    const int threads =
        std::min(workers->num_threads, tf::GetPerThreadMaxParallelism());
    if (core::RunOnSpinPool(threads, spin_us, total, cost, fn)) return;
    tf::Shard(workers->num_threads, workers->workers, total, cost,
              [&fn](std::int64_t b, std::int64_t e) { fn(b, e); });
  };
}

// Bits per word of a packed dtype; 0 if the dtype is not a packed type.
inline int WordBits(tf::DataType dtype) {
  if (dtype == tf::DT_INT32) return 32;
  if (dtype == tf::DT_INT64) return 64;
  return 0;
}

// Reads a word-type attribute (int32 or int64) as its number of bits.
inline absl::Status ReadWordBitsAttr(tf::OpKernelConstruction* ctx,
                                     const char* name, int* word_bits) {
  tf::DataType type;
  TF_RETURN_IF_ERROR(ctx->GetAttr(name, &type));
  *word_bits = WordBits(type);
  if (*word_bits == 0) {
    return tf::errors::InvalidArgument(name, " must be int32 or int64");
  }
  return absl::OkStatus();
}

// Selects the popcount kernel (TFDISC_OPS_KERNEL) or fails the op.
inline bool GetKernelType(tf::OpKernelContext* ctx, core::KernelType* type) {
  std::string error;
  if (!core::SelectKernel(type, &error)) {
    ctx->CtxFailure(__FILE__, __LINE__, tf::errors::InvalidArgument(error));
    return false;
  }
  return true;
}

// Reads a window attribute (`strides`, `dilations`, `ksize`): a list of two
// integers >= 1, [h, w].
inline absl::Status ReadHeightWidthAttr(tf::OpKernelConstruction* ctx,
                                        const char* name, std::int64_t* h,
                                        std::int64_t* w) {
  std::vector<tf::int32> values;
  TF_RETURN_IF_ERROR(ctx->GetAttr(name, &values));
  if (values.size() != 2 || values[0] < 1 || values[1] < 1) {
    return tf::errors::InvalidArgument(
        name, " must be a list of 2 integers >= 1 [h, w]");
  }
  *h = values[0];
  *w = values[1];
  return absl::OkStatus();
}

// Reads the `padding` attribute: true for "SAME", false for "VALID".
inline absl::Status ReadPaddingAttr(tf::OpKernelConstruction* ctx,
                                    bool* same) {
  std::string padding;
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding", &padding));
  if (padding != "SAME" && padding != "VALID") {
    return tf::errors::InvalidArgument(
        "padding must be 'SAME' or 'VALID', got '", padding, "'");
  }
  *same = padding == "SAME";
  return absl::OkStatus();
}

// The window attributes of the convolution ops (`strides`, `dilations`,
// `padding`), read once per kernel instance.
struct ConvWindowAttrs {
  std::int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  bool same = false;

  absl::Status Read(tf::OpKernelConstruction* ctx) {
    TF_RETURN_IF_ERROR(ReadHeightWidthAttr(ctx, "strides", &stride_h, &stride_w));
    TF_RETURN_IF_ERROR(
        ReadHeightWidthAttr(ctx, "dilations", &dilation_h, &dilation_w));
    return ReadPaddingAttr(ctx, &same);
  }

  // Fills p's batch and input size from the NHWC `input`, its window from
  // these attributes and the filter size, and its output geometry
  // (ComputeConvGeometry); an invalid one fails with `op`'s name.
  absl::Status Geometry(const tf::Tensor& input, std::int64_t filter_h,
                        std::int64_t filter_w, const char* op,
                        core::BConv2DParams* p) const {
    p->batch = input.dim_size(0);
    p->in_h = input.dim_size(1);
    p->in_w = input.dim_size(2);
    p->filter_h = filter_h;
    p->filter_w = filter_w;
    p->stride_h = stride_h;
    p->stride_w = stride_w;
    p->dilation_h = dilation_h;
    p->dilation_w = dilation_w;
    std::string error;
    if (!core::ComputeConvGeometry(same, p, &error)) {
      return tf::errors::InvalidArgument(op, ": ", error);
    }
    return absl::OkStatus();
  }
};

// Reads the `out_type` / `bitpacked_output` attributes shared by the
// binary_dense and binary_conv2d ops.
inline absl::Status ReadOutputAttrs(tf::OpKernelConstruction* ctx,
                                  tf::DataType* out_type, bool* bitpacked) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("out_type", out_type));
  TF_RETURN_IF_ERROR(ctx->GetAttr("bitpacked_output", bitpacked));
  if (*bitpacked && WordBits(*out_type) == 0) {
    return tf::errors::InvalidArgument(
        "bitpacked_output=True needs out_type int32 or int64 (the word "
        "type), got ",
        tf::DataTypeString(*out_type));
  }
  if (!*bitpacked && *out_type == tf::DT_INT64) {
    return tf::errors::InvalidArgument(
        "out_type int64 is only valid with bitpacked_output=True");
  }
  return absl::OkStatus();
}

// Validates multiplier/bias (each empty or of length `channels`) and builds
// the output transform.
inline absl::Status MakeTransform(const tf::Tensor& multiplier,
                                const tf::Tensor& bias, std::int64_t channels,
                                tf::DataType out_type, bool bitpacked,
                                core::OutputTransform* transform) {
  for (const tf::Tensor* t : {&multiplier, &bias}) {
    if (t->dims() != 1 ||
        (t->dim_size(0) != 0 && t->dim_size(0) != channels)) {
      return tf::errors::InvalidArgument(
          "multiplier and bias must be 1-D of length 0 or ", channels,
          " (the number of output channels), got shape ",
          t->shape().DebugString());
    }
  }
  const bool has_mult = multiplier.dim_size(0) > 0;
  const bool has_bias = bias.dim_size(0) > 0;
  if (bitpacked) {
    transform->kind = core::OutputKind::kBitpacked;
  } else if (out_type == tf::DT_FLOAT) {
    transform->kind = core::OutputKind::kFloat;
  } else {
    if (has_mult || has_bias) {
      return tf::errors::InvalidArgument(
          "out_type int32 returns the raw dot product; multiplier and bias "
          "must be empty");
    }
    transform->kind = core::OutputKind::kInt32;
  }
  transform->multiplier = has_mult ? multiplier.flat<float>().data() : nullptr;
  transform->bias = has_bias ? bias.flat<float>().data() : nullptr;
  return absl::OkStatus();
}

inline const core::TWord* Words(const tf::Tensor& t) {
  return reinterpret_cast<const core::TWord*>(t.tensor_data().data());
}

inline core::TWord* MutableWords(tf::Tensor* t) {
  return reinterpret_cast<core::TWord*>(
      const_cast<char*>(t->tensor_data().data()));
}

}  // namespace kernels
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_KERNELS_COMMON_H_
