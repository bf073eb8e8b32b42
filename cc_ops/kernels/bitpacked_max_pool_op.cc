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
    const std::int64_t pixels = p.batch * p.out_h * p.out_w;
    MakeParallelFor(ctx)(
        pixels, p.filter_h * p.filter_w * p.words + 8,
        [&](std::int64_t begin, std::int64_t end) {
          for (std::int64_t q = begin; q < end; ++q) {
            const std::int64_t b = q / (p.out_h * p.out_w);
            const std::int64_t oy = (q / p.out_w) % p.out_h;
            const std::int64_t ox = q % p.out_w;
            const std::int64_t y0 = oy * p.stride_h - p.pad_top;
            const std::int64_t x0 = ox * p.stride_w - p.pad_left;
            core::TWord* o = dst + q * p.words;
            for (std::int64_t w = 0; w < p.words; ++w) {
              core::TWord all = ~core::TWord{0}, any = 0;
              for (std::int64_t fy = 0; fy < p.filter_h; ++fy) {
                const std::int64_t iy = y0 + fy;
                if (iy < 0 || iy >= p.in_h) continue;
                for (std::int64_t fx = 0; fx < p.filter_w; ++fx) {
                  const std::int64_t ix = x0 + fx;
                  if (ix < 0 || ix >= p.in_w) continue;
                  const core::TWord v =
                      in[((b * p.in_h + iy) * p.in_w + ix) * p.words + w];
                  all &= v;
                  any |= v;
                }
              }
              const core::TWord m = mask ? mask[w] : 0;
              o[w] = (all & ~m) | (any & m);
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
