// Tfdisc>BitpackedMaxPool2D: max pooling on channel-packed +-1 data.
//
// With bit 1 = -1, max over a window of +-1 values is +1 unless every value
// is -1, so the packed max is the bitwise AND of the window's words (padding
// bits stay zero). Because sign() is monotone, maxpool commutes with it:
// sign(maxpool(y)) = maxpool(sign(y)). When a batch norm with a negative
// multiplier sits between the pooled value and sign(), the order is
// reversed (BN(max y) = min BN(y)), and the channel needs a min, i.e. a
// bitwise OR; `or_mask` marks such channels (bit set = OR). SAME padding
// ignores out-of-image positions, as tf.nn.max_pool does.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfdisc {
namespace kernels {

class BitpackedMaxPool2DOp : public tf::OpKernel {
 public:
  explicit BitpackedMaxPool2DOp(tf::OpKernelConstruction* ctx)
      : tf::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadHeightWidthAttr(ctx, "ksize", &params_.filter_h,
                                            &params_.filter_w));
    OP_REQUIRES_OK(ctx, ReadHeightWidthAttr(ctx, "strides", &params_.stride_h,
                                            &params_.stride_w));
    OP_REQUIRES_OK(ctx, ReadPaddingAttr(ctx, &same_));
    tf::DataType packed_type;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("Tpacked", &packed_type));
    word_bits_ = WordBits(packed_type);
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& input = ctx->input(0);
    const tf::Tensor& or_mask = ctx->input(1);
    OP_REQUIRES(ctx, input.dims() == 4,
                tf::errors::InvalidArgument(
                    "bitpacked_max_pool2d: input must be rank 4 NHWC packed, "
                    "got shape ", input.shape().DebugString()));
    OP_REQUIRES(ctx,
                or_mask.dims() == 1 && (or_mask.dim_size(0) == 0 ||
                                        or_mask.dim_size(0) == input.dim_size(3)),
                tf::errors::InvalidArgument(
                    "bitpacked_max_pool2d: or_mask must be 1-D of length 0 or ",
                    input.dim_size(3), ", got shape ",
                    or_mask.shape().DebugString()));
    core::BConv2DParams p = params_;
    p.batch = input.dim_size(0);
    p.in_h = input.dim_size(1);
    p.in_w = input.dim_size(2);
    p.words = input.dim_size(3) * (word_bits_ / core::kWordBits);
    std::string error;
    OP_REQUIRES(ctx, core::ComputeConvGeometry(same_, &p, &error),
                tf::errors::InvalidArgument("bitpacked_max_pool2d: ", error));
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, {p.batch, p.out_h, p.out_w, input.dim_size(3)},
                            &out));
    if (out->NumElements() == 0) return;
    const core::TWord* in = Words(input);
    const core::TWord* mask = or_mask.dim_size(0) > 0 ? Words(or_mask) : nullptr;
    core::TWord* dst = MutableWords(out);
    // One unit of work per output row (image, oy): the window's rows are
    // found once per row and its columns once per pixel, and the words of a
    // pixel are combined in contiguous (vectorizable) loops.
    const std::int64_t out_rows = p.batch * p.out_h;
    MakeParallelFor(ctx)(
        out_rows, p.out_w * (p.filter_h * p.filter_w * p.words + 8),
        [&](std::int64_t begin, std::int64_t end) {
          std::vector<core::TWord> any(mask != nullptr ? p.words : 0);
          for (std::int64_t r = begin; r < end; ++r) {
            const std::int64_t b = r / p.out_h;
            const std::int64_t y0 = r % p.out_h * p.stride_h - p.pad_top;
            const std::int64_t fy0 = std::max<std::int64_t>(0, -y0);
            const std::int64_t fy1 = std::min(p.filter_h, p.in_h - y0);
            for (std::int64_t ox = 0; ox < p.out_w; ++ox) {
              const std::int64_t x0 = ox * p.stride_w - p.pad_left;
              const std::int64_t fx0 = std::max<std::int64_t>(0, -x0);
              const std::int64_t fx1 = std::min(p.filter_w, p.in_w - x0);
              core::TWord* o = dst + (r * p.out_w + ox) * p.words;
              for (std::int64_t w = 0; w < p.words; ++w) o[w] = ~core::TWord{0};
              for (std::int64_t w = 0; w < static_cast<std::int64_t>(any.size()); ++w)
                any[w] = 0;
              for (std::int64_t fy = fy0; fy < fy1; ++fy) {
                for (std::int64_t fx = fx0; fx < fx1; ++fx) {
                  const core::TWord* v =
                      in + ((b * p.in_h + y0 + fy) * p.in_w + x0 + fx) * p.words;
                  for (std::int64_t w = 0; w < p.words; ++w) o[w] &= v[w];
                  if (mask != nullptr)
                    for (std::int64_t w = 0; w < p.words; ++w) any[w] |= v[w];
                }
              }
              if (mask != nullptr)
                for (std::int64_t w = 0; w < p.words; ++w)
                  o[w] = (o[w] & ~mask[w]) | (any[w] & mask[w]);
            }
          }
        });
  }

 private:
  core::BConv2DParams params_;
  bool same_ = false;
  int word_bits_ = 32;
};

REGISTER_KERNEL_BUILDER(
    Name("Tfdisc>BitpackedMaxPool2D").Device(tf::DEVICE_CPU),
    BitpackedMaxPool2DOp);

}  // namespace kernels
}  // namespace tfdisc
