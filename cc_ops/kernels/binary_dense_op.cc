// Tfdisc>BinaryDense: y = transform(k - 2 * popcount(x XOR w)).
#include <cstdint>
#include <cstring>

#include "cc_ops/core/bdense.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfdisc {
namespace kernels {

class BinaryDenseOp : public tf::OpKernel {
 public:
  explicit BinaryDenseOp(tf::OpKernelConstruction* ctx) : tf::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("k", &k_));
    OP_REQUIRES(ctx, k_ >= 1,
                tf::errors::InvalidArgument("k must be >= 1, got ", k_));
    OP_REQUIRES(ctx, k_ <= core::kMaxDotBits,
                tf::errors::InvalidArgument(
                    "binary_dense: k must be <= 2^31 - 1 = ", core::kMaxDotBits,
                    " (dot products are int32), got ", k_));
    OP_REQUIRES_OK(ctx, ReadOutputAttrs(ctx, &out_type_, &bitpacked_));
    tf::DataType packed_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("Tpacked", &packed_type));
    word_bits_ = WordBits(packed_type);
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& x = ctx->input(0);
    const tf::Tensor& w = ctx->input(1);
    OP_REQUIRES(ctx, x.dims() == 2,
                tf::errors::InvalidArgument(
                    "binary_dense: packed input must be rank 2 [batch, words], "
                    "got shape ", x.shape().DebugString()));
    OP_REQUIRES(ctx, w.dims() == 2,
                tf::errors::InvalidArgument(
                    "binary_dense: packed weights must be rank 2 [units, "
                    "words], got shape ", w.shape().DebugString()));
    const std::int64_t words = core::PackedWords(k_, word_bits_);
    OP_REQUIRES(ctx, x.dim_size(1) == words,
                tf::errors::InvalidArgument(
                    "binary_dense: k=", k_, " needs ", words, " ", word_bits_,
                    "-bit words per input row, got ", x.dim_size(1)));
    OP_REQUIRES(ctx, w.dim_size(1) == words,
                tf::errors::InvalidArgument(
                    "binary_dense: k=", k_, " needs ", words, " ", word_bits_,
                    "-bit words per weight row, got ", w.dim_size(1)));
    const std::int64_t m = x.dim_size(0), n = w.dim_size(0);
    core::BDenseArgs args;
    OP_REQUIRES_OK(ctx, MakeTransform(ctx->input(2), ctx->input(3), n,
                                      out_type_, bitpacked_, &args.transform));
    tf::Tensor* out = nullptr;
    const std::int64_t out_cols =
        bitpacked_ ? core::PackedWords(n, WordBits(out_type_)) : n;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {m, out_cols}, &out));
    if (out->NumElements() == 0) return;
    if (bitpacked_) {
      // The high half of a 64-bit word past the last output channel.
      std::memset(const_cast<char*>(out->tensor_data().data()), 0,
                  out->tensor_data().size());
    }
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    args.transform.pack = core::GetBitpackFloat(type);
    args.x = Words(x);
    args.w = Words(w);
    args.m = m;
    args.n = n;
    args.words = core::PackedWords32(k_, word_bits_);
    args.k = k_;
    args.out = const_cast<char*>(out->tensor_data().data());
    args.out_stride =
        bitpacked_ ? core::PackedWords32(n, WordBits(out_type_)) : n;
    core::BinaryDense(args, core::DenseKernelsFor(type), MakeParallelFor(ctx));
  }

 private:
  tf::int64 k_ = 0;
  tf::DataType out_type_ = tf::DT_FLOAT;
  bool bitpacked_ = false;
  int word_bits_ = 32;
};

REGISTER_KERNEL_BUILDER(Name("Tfdisc>BinaryDense").Device(tf::DEVICE_CPU),
                        BinaryDenseOp);

}  // namespace kernels
}  // namespace tfdisc
