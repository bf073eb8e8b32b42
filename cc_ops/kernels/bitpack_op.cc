// Tfdisc>Bitpack: signs of the last axis -> 32/64-bit words.
#include <cstdint>

#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/bitpack.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"

namespace tfdisc {
namespace kernels {

template <typename T>
class BitpackOp : public tf::OpKernel {
 public:
  explicit BitpackOp(tf::OpKernelConstruction* ctx) : tf::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadWordBitsAttr(ctx, "out_type", &word_bits_));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() >= 1,
                tf::errors::InvalidArgument(
                    "bitpack needs an input of rank >= 1, got a scalar"));
    const std::int64_t k = x.dim_size(x.dims() - 1);
    const std::int64_t rows = k == 0 ? 0 : x.NumElements() / k;
    tf::TensorShape out_shape = x.shape();
    out_shape.set_dim(x.dims() - 1, core::PackedWords(k, word_bits_));
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;
    const std::int64_t out_words = core::PackedWords32(k, word_bits_);
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    const T* src = x.flat<T>().data();
    core::TWord* dst = MutableWords(out);
    core::BitpackFloatFn pack_float = core::GetBitpackFloat(type);
    MakeParallelFor(ctx)(rows, k * 2 + 8, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t r = b; r < e; ++r) {
        if constexpr (std::is_same<T, float>::value) {
          core::BitpackFloatRow(pack_float, src + r * k, k, out_words,
                                dst + r * out_words);
        } else {
          core::BitpackRow<T>(src + r * k, k, out_words, dst + r * out_words);
        }
      }
    });
  }

 private:
  int word_bits_ = 32;
};

#define TFDISC_REGISTER_BITPACK(T)                                   \
  REGISTER_KERNEL_BUILDER(                                           \
      Name("Tfdisc>Bitpack").Device(tf::DEVICE_CPU).TypeConstraint<T>("T"), \
      BitpackOp<T>);

TFDISC_REGISTER_BITPACK(float);
TFDISC_REGISTER_BITPACK(double);
TFDISC_REGISTER_BITPACK(Eigen::half);
TFDISC_REGISTER_BITPACK(Eigen::bfloat16);
TFDISC_REGISTER_BITPACK(std::int8_t);
TFDISC_REGISTER_BITPACK(std::int32_t);
TFDISC_REGISTER_BITPACK(std::int64_t);
#undef TFDISC_REGISTER_BITPACK

}  // namespace kernels
}  // namespace tfdisc
