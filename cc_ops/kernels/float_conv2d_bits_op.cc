// Tfdisc>FloatConv2DBits: float NHWC convolution + bias -> packed sign bits
// (core/bconv2d/float_input.h).
#include <cstdint>
#include <string>

#include "cc_ops/core/bconv2d/float_input.h"
#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfdisc {
namespace kernels {

class FloatConv2DBitsOp : public tf::OpKernel {
 public:
  explicit FloatConv2DBitsOp(tf::OpKernelConstruction* ctx) : tf::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, window_.Read(ctx));
    OP_REQUIRES_OK(ctx, ReadWordBitsAttr(ctx, "out_type", &word_bits_));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& input = ctx->input(0);
    const tf::Tensor& filter = ctx->input(1);
    const tf::Tensor& bias = ctx->input(2);
    OP_REQUIRES(ctx, input.dims() == 4,
                tf::errors::InvalidArgument(
                    "float_conv2d_bits: input must be rank 4 NHWC, got shape ",
                    input.shape().DebugString()));
    OP_REQUIRES(ctx, filter.dims() == 4,
                tf::errors::InvalidArgument(
                    "float_conv2d_bits: filter must be rank 4 [h, w, in, out] "
                    "(HWIO), got shape ", filter.shape().DebugString()));
    OP_REQUIRES(ctx, filter.dim_size(2) == input.dim_size(3),
                tf::errors::InvalidArgument(
                    "float_conv2d_bits: the filter has ", filter.dim_size(2),
                    " input channels but the input has ", input.dim_size(3)));
    OP_REQUIRES(ctx, filter.dim_size(0) >= 1 && filter.dim_size(1) >= 1,
                tf::errors::InvalidArgument(
                    "float_conv2d_bits: filter height and width must be >= 1"));
    OP_REQUIRES(ctx, bias.dims() == 1 && bias.dim_size(0) == filter.dim_size(3),
                tf::errors::InvalidArgument(
                    "float_conv2d_bits: bias must be 1-D of length ",
                    filter.dim_size(3), " (the output channels), got shape ",
                    bias.shape().DebugString()));
    core::BConv2DParams p;
    p.channels = input.dim_size(3);
    p.out_channels = filter.dim_size(3);
    OP_REQUIRES_OK(ctx, window_.Geometry(input, filter.dim_size(0),
                                         filter.dim_size(1), "float_conv2d_bits", &p));
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0,
                            {p.batch, p.out_h, p.out_w,
                             core::PackedWords(p.out_channels, word_bits_)},
                            &out));
    if (out->NumElements() == 0) return;
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    core::PaddedFloatFilter padded;
    core::PadFloatFilter(filter.flat<float>().data(), bias.flat<float>().data(),
                         p.filter_h * p.filter_w * p.channels, p.out_channels,
                         &padded);
    core::FloatConv2DBits(p, input.flat<float>().data(), padded,
                          core::GetFloatGemmBits(type), MutableWords(out),
                          core::PackedWords32(p.out_channels, word_bits_),
                          MakeParallelFor(ctx));
  }

 private:
  ConvWindowAttrs window_;
  int word_bits_ = 32;
};

REGISTER_KERNEL_BUILDER(Name("Tfdisc>FloatConv2DBits").Device(tf::DEVICE_CPU),
                        FloatConv2DBitsOp);

}  // namespace kernels
}  // namespace tfdisc
