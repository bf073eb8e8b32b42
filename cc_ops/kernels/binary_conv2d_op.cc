// Tfdisc>BinaryConv2D: binary NHWC convolution on channel-packed operands.
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cc_ops/core/bconv2d/optimized.h"
#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bconv2d/reference.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfdisc {
namespace kernels {

class BinaryConv2DOp : public tf::OpKernel {
 public:
  explicit BinaryConv2DOp(tf::OpKernelConstruction* ctx) : tf::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("channels_in", &channels_));
    OP_REQUIRES(ctx, channels_ >= 1,
                tf::errors::InvalidArgument("channels_in must be >= 1, got ",
                                            channels_));
    OP_REQUIRES(ctx, channels_ <= core::kMaxDotBits,
                tf::errors::InvalidArgument(
                    "binary_conv2d: channels_in must be <= 2^31 - 1 = ",
                    core::kMaxDotBits, " (dot products are int32), got ",
                    channels_));
    OP_REQUIRES_OK(ctx, window_.Read(ctx));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pad_value", &pad_value_));
    OP_REQUIRES(ctx, pad_value_ >= -1 && pad_value_ <= 1,
                tf::errors::InvalidArgument(
                    "pad_value must be -1, 0 or 1, got ", pad_value_));
    OP_REQUIRES_OK(ctx, ReadOutputAttrs(ctx, &out_type_, &bitpacked_));
    tf::DataType packed_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("Tpacked", &packed_type));
    word_bits_ = WordBits(packed_type);
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& input = ctx->input(0);
    const tf::Tensor& filter = ctx->input(1);
    OP_REQUIRES(ctx, input.dims() == 4,
                tf::errors::InvalidArgument(
                    "binary_conv2d: packed input must be rank 4 NHWC, got "
                    "shape ", input.shape().DebugString()));
    OP_REQUIRES(ctx, filter.dims() == 4,
                tf::errors::InvalidArgument(
                    "binary_conv2d: packed filter must be rank 4 [out, h, w, "
                    "words], got shape ", filter.shape().DebugString()));
    // Before any size check that would need a real tensor of that size.
    OP_REQUIRES(ctx,
                core::DotBitsWithinLimit(channels_, filter.dim_size(1),
                                         filter.dim_size(2)),
                tf::errors::InvalidArgument(
                    "binary_conv2d: channels_in * filter height * filter width "
                    "must be <= 2^31 - 1 = ", core::kMaxDotBits,
                    " (dot products are int32), got ", channels_, " * ",
                    filter.dim_size(1), " * ", filter.dim_size(2)));
    const std::int64_t words = core::PackedWords(channels_, word_bits_);
    OP_REQUIRES(ctx, input.dim_size(3) == words,
                tf::errors::InvalidArgument(
                    "binary_conv2d: channels_in=", channels_, " needs ", words,
                    " ", word_bits_, "-bit words per input pixel, got ",
                    input.dim_size(3)));
    OP_REQUIRES(ctx, filter.dim_size(3) == words,
                tf::errors::InvalidArgument(
                    "binary_conv2d: channels_in=", channels_, " needs ", words,
                    " ", word_bits_, "-bit words per filter tap, got ",
                    filter.dim_size(3)));
    OP_REQUIRES(ctx, filter.dim_size(1) >= 1 && filter.dim_size(2) >= 1,
                tf::errors::InvalidArgument(
                    "binary_conv2d: filter height and width must be >= 1"));
    core::BConv2DParams p;
    p.channels = channels_;
    p.words = core::PackedWords32(channels_, word_bits_);
    p.out_channels = filter.dim_size(0);
    p.pad_value = pad_value_;
    OP_REQUIRES_OK(ctx, window_.Geometry(input, filter.dim_size(1),
                                         filter.dim_size(2), "binary_conv2d", &p));
    core::OutputTransform transform;
    OP_REQUIRES_OK(ctx, MakeTransform(ctx->input(2), ctx->input(3),
                                      p.out_channels, out_type_, bitpacked_,
                                      &transform));
    const std::int64_t out_c =
        bitpacked_ ? core::PackedWords(p.out_channels, WordBits(out_type_))
                   : p.out_channels;
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {p.batch, p.out_h, p.out_w, out_c},
                                             &out));
    if (out->NumElements() == 0) return;
    char* out_data = const_cast<char*>(out->tensor_data().data());
    if (bitpacked_) std::memset(out_data, 0, out->tensor_data().size());
    const std::int64_t out_stride =
        bitpacked_ ? core::PackedWords32(p.out_channels, WordBits(out_type_))
                   : p.out_channels;
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    transform.pack = core::GetBitpackFloat(type);
    if (type == core::KernelType::kReference) {
      core::BConv2DReference(p, Words(input), Words(filter), transform,
                             out_data, out_stride);
    } else {
      const core::ConvKernels kernels = core::ConvKernelsFor(type);
      const std::int64_t row_words = p.filter_h * p.filter_w * p.words;
      std::shared_ptr<const CachedFilter> cached;
      if (core::UsesTransposed(kernels, row_words, p.batch * p.out_h * p.out_w)) {
        cached = GetTransposedFilter(filter, p.out_channels, row_words,
                                     kernels.gemm_ts != nullptr);
      }
      core::BConv2DOptimized(p, Words(input), Words(filter), transform,
                             out_data, out_stride, kernels, MakeParallelFor(ctx),
                             core::kTransposedMinPixels,
                             cached ? &cached->transposed : nullptr);
    }
  }

 private:
  // The filter in the transposed kernel's layout (and, for a split kernel,
  // its nibble split), kept across calls: in a converted model the filter is
  // a constant, and transposing it on every call would cost as much as ~16
  // output pixels. The cache is checked against a full copy of the filter
  // words (exact, no hashing) and its [out, h * w * words] shape, so a
  // changed filter, or the same words under another shape (the kernel
  // instance is shared by eager calls of any shape), is always re-transposed.
  struct CachedFilter {
    std::vector<core::TWord> original;
    core::TransposedFilter transposed;
  };

  std::shared_ptr<const CachedFilter> GetTransposedFilter(
      const tf::Tensor& filter, std::int64_t out_channels,
      std::int64_t row_words, bool split) {
    const core::TWord* words = Words(filter);
    const std::size_t n = filter.tensor_data().size() / sizeof(core::TWord);
    {
      std::lock_guard<std::mutex> lock(mu_);
      // An entry built without the split does not serve a split kernel (the
      // kernel can change between calls: TFDISC_OPS_KERNEL).
      if (cache_ && cache_->original.size() == n &&
          cache_->transposed.out_channels == out_channels &&
          cache_->transposed.row_words == row_words &&
          (!split || !cache_->transposed.panels.empty()) &&
          std::memcmp(cache_->original.data(), words, n * sizeof(core::TWord)) == 0) {
        return cache_;
      }
    }
    auto entry = std::make_shared<CachedFilter>();
    entry->original.assign(words, words + n);
    core::BuildTransposedFilter(words, out_channels, row_words, split,
                                &entry->transposed);
    std::lock_guard<std::mutex> lock(mu_);
    cache_ = entry;
    return entry;
  }

  std::mutex mu_;
  std::shared_ptr<const CachedFilter> cache_;
  tf::int64 channels_ = 0;
  ConvWindowAttrs window_;
  int pad_value_ = 0;
  tf::DataType out_type_ = tf::DT_FLOAT;
  bool bitpacked_ = false;
  int word_bits_ = 32;
};

REGISTER_KERNEL_BUILDER(Name("Tfdisc>BinaryConv2D").Device(tf::DEVICE_CPU),
                        BinaryConv2DOp);

}  // namespace kernels
}  // namespace tfdisc
