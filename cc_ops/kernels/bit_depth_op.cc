// Tfdisc>BitDepth: bit-depth reduction of float images in one pass.
//
// tfdisc.quantize.bit_depth is about 15 element-wise TensorFlow ops; in a
// packed network they cost more than a binary layer at batch 1 (each op is
// dispatched, and at batch 32 each wakes the intra-op threads). This op
// computes the same float32 values with the same rounding, op for op: the
// library is built with -ffp-contract=off (no fused multiply-add), floor is
// computed exactly without a library call (baseline x86-64 has no SSE4.1
// round instruction), and on x86-64 four values go at a time with SSE2.
#include <cmath>
#include <cstdint>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace tfdisc {
namespace kernels {

namespace {

// floor(v) for 0 <= v < 2^31 (always the case here: v is in [0, 257]).
inline float FloorNonNegative(float v) {
  const float t = static_cast<float>(static_cast<std::int32_t>(v));
  return t > v ? t - 1.0f : t;
}

constexpr float kTolerance = 1e-3f;  // quantize._EDGE_TOLERANCE

struct BitDepthConstants {
  float low, high, scale, unscale, step, inv_step, half, top;
};

inline float BitDepthValue(float v, const BitDepthConstants& k,
                           bool straight_through) {
  v = v == v ? v : k.low;                 // tf.where(x == x, x, low)
  v = v < k.high ? v : k.high;            // tf.minimum(x, high)
  const float c = v > k.low ? v : k.low;  // tf.maximum(., low)
  const float intensity = (c - k.low) * k.scale;
  // step is a power of two: * (1 / step) is exactly / step.
  float bin = FloorNonNegative((intensity + kTolerance) * k.inv_step);
  bin = bin < k.top ? bin : k.top;        // tf.minimum(bin, 2^bits - 1)
  const float q = (bin * k.step + k.half) * k.unscale + k.low;
  return straight_through ? c + (q - c) : q;
}

// One contiguous range. On x86-64 four at a time with SSE2 (the compiler
// does not vectorize the scalar form's selects under -ftrapping-math); the
// same operations in the same order: minps/maxps are exactly the selects
// above (they return the second operand when the first is not smaller /
// larger, and v holds no NaN by then).
void BitDepthRange(const float* in, float* out, std::int64_t n,
                   const BitDepthConstants& k, bool straight_through) {
  std::int64_t i = 0;
#if defined(__SSE2__)
  const __m128 low = _mm_set1_ps(k.low), high = _mm_set1_ps(k.high);
  const __m128 scale = _mm_set1_ps(k.scale), unscale = _mm_set1_ps(k.unscale);
  const __m128 step = _mm_set1_ps(k.step), half = _mm_set1_ps(k.half);
  const __m128 inv_step = _mm_set1_ps(k.inv_step);
  const __m128 top = _mm_set1_ps(k.top), one = _mm_set1_ps(1.0f);
  const __m128 tolerance = _mm_set1_ps(kTolerance);
  for (; i + 4 <= n; i += 4) {
    __m128 v = _mm_loadu_ps(in + i);
    const __m128 ordered = _mm_cmpord_ps(v, v);
    v = _mm_or_ps(_mm_and_ps(ordered, v), _mm_andnot_ps(ordered, low));
    v = _mm_min_ps(v, high);
    const __m128 c = _mm_max_ps(v, low);
    const __m128 intensity = _mm_mul_ps(_mm_sub_ps(c, low), scale);
    const __m128 r = _mm_mul_ps(_mm_add_ps(intensity, tolerance), inv_step);
    __m128 bin = _mm_cvtepi32_ps(_mm_cvttps_epi32(r));
    bin = _mm_sub_ps(bin, _mm_and_ps(_mm_cmpgt_ps(bin, r), one));
    bin = _mm_min_ps(bin, top);
    const __m128 q = _mm_add_ps(
        _mm_mul_ps(_mm_add_ps(_mm_mul_ps(bin, step), half), unscale), low);
    _mm_storeu_ps(out + i, straight_through
                               ? _mm_add_ps(c, _mm_sub_ps(q, c))
                               : q);
  }
#endif
  for (; i < n; ++i) out[i] = BitDepthValue(in[i], k, straight_through);
}

}  // namespace

class BitDepthOp : public tf::OpKernel {
 public:
  explicit BitDepthOp(tf::OpKernelConstruction* ctx) : tf::OpKernel(ctx) {
    int bits = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("bits", &bits));
    OP_REQUIRES(ctx, bits >= 1 && bits <= 8,
                tf::errors::InvalidArgument(
                    "bit_depth: bits must be an integer in [1, 8], got ", bits));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("low", &low_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("high", &high_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("unscale", &unscale_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("straight_through", &straight_through_));
    OP_REQUIRES(ctx, std::isfinite(low_) && std::isfinite(high_) && low_ < high_,
                tf::errors::InvalidArgument(
                    "bit_depth: the value range must be finite with low < high, "
                    "got [", low_, ", ", high_, "]"));
    OP_REQUIRES(ctx,
                std::isfinite(scale_) && scale_ > 0 && std::isfinite(unscale_) &&
                    unscale_ > 0,
                tf::errors::InvalidArgument(
                    "bit_depth: scale and unscale must be finite and > 0, got ",
                    scale_, " and ", unscale_));
    // The arithmetic must stay in normal float32 numbers (TensorFlow flushes
    // subnormals, and a subnormal range width gave NaN): the same conditions as
    // tfdisc.quantize.check_value_range.
    const float width = high_ - low_;
    const float top = low_ + 255.5f * unscale_;
    OP_REQUIRES(ctx,
                std::isnormal(width) && std::isnormal(scale_) &&
                    std::isnormal(0.5f * unscale_) && std::isfinite(top),
                tf::errors::InvalidArgument(
                    "bit_depth: the value range [", low_, ", ", high_,
                    "] cannot be quantized in float32: its width, 255 / width "
                    "(scale = ", scale_, "), width / 510 (unscale / 2 = ",
                    0.5f * unscale_, ") and the highest level must be normal "
                    "float32 numbers; use tfdisc.quantize.check_value_range"));
    step_ = 256.0f / static_cast<float>(1 << bits);
    top_ = static_cast<float>((1 << bits) - 1);
  }

  void Compute(tf::OpKernelContext* ctx) override {
    const tf::Tensor& x = ctx->input(0);
    tf::Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &y));
    const std::int64_t n = x.NumElements();
    if (n == 0) return;
    const float* in = x.flat<float>().data();
    float* out = y->flat<float>().data();
    // The constants as TensorFlow rounds the Python ones (float32).
    const BitDepthConstants k{low_,  high_,         scale_,        unscale_,
                              step_, 1.0f / step_, step_ / 2.0f, top_};
    const bool straight_through = straight_through_;
    MakeParallelFor(ctx)(n, 8, [=](std::int64_t begin, std::int64_t end) {
      BitDepthRange(in + begin, out + begin, end - begin, k, straight_through);
    });
  }

 private:
  float low_ = 0, high_ = 1, scale_ = 255, unscale_ = 1 / 255.0f;
  float step_ = 1, top_ = 255;
  bool straight_through_ = true;
};

REGISTER_KERNEL_BUILDER(Name("Tfdisc>BitDepth").Device(tf::DEVICE_CPU),
                        BitDepthOp);

}  // namespace kernels
}  // namespace tfdisc
