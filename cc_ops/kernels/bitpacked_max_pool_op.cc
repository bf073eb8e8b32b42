// Tfdisc>BitpackedMaxPool2D: max pooling on channel-packed +-1 data (the
// AND / OR over the window: core/bitpacked_max_pool.h).
#include <cstdint>
#include <string>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bitpacked_max_pool.h"
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
    const core::TWord* mask = or_mask.dim_size(0) > 0 ? Words(or_mask) : nullptr;
    core::BitpackedMaxPool(p, Words(input), mask, MutableWords(out),
                           MakeParallelFor(ctx));
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
