// Output transform: int32 accumulator -> op output, fused per channel.
//
// The popcount kernels give, per output position and channel j, the exact
// +-1 dot product `dot` (an integer). What happens next:
//
//   kInt32      out = dot.
//   kFloat      out = float(dot) * multiplier[j] + bias[j]
//               (missing multiplier = 1, missing bias = 0). A batch norm
//               y = gamma * (x - mean) / sqrt(var + eps) + beta that follows
//               the binary layer folds into
//                   multiplier = gamma / sqrt(var + eps),
//                   bias       = beta - mean * multiplier,
//               which is the form TensorFlow itself evaluates
//               (tf.nn.batch_normalization: x * inv + (beta - mean * inv)).
//               An XNOR-Net per-channel weight scale alpha_j multiplies
//               into multiplier[j]. Rounding: float(dot) is exact for
//               |dot| < 2^24, then one multiply and one add, each rounded
//               once (the library is built with -ffp-contract=off so the
//               compiler does not fuse them into an FMA, which would round
//               differently from TensorFlow's separate multiply and add).
//   kBitpacked  out bit j = (float(dot) * multiplier[j] + bias[j] < 0) with
//               subnormals as 0 (PacksAsMinusOne, core/types.h), i.e.
//               sign() of the kFloat value packed with the convention of
//               core/types.h. Because the comparison is made on exactly the
//               kFloat value, packing the kFloat output gives the same bits,
//               so the next binary layer sees the same +-1 input as a larq
//               model computing BN then ste_sign in float.
#ifndef TFDISC_CC_OPS_CORE_OUTPUT_TRANSFORM_H_
#define TFDISC_CC_OPS_CORE_OUTPUT_TRANSFORM_H_

#include <cstdint>

#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

enum class OutputKind { kInt32, kFloat, kBitpacked };

struct OutputTransform {
  OutputKind kind = OutputKind::kInt32;
  const float* multiplier = nullptr;  // [channels] or nullptr.
  const float* bias = nullptr;        // [channels] or nullptr.
  // Packs floats into sign bits (PacksAsMinusOne); the dispatch picks the
  // vectorized one. nullptr: the scalar loop below.
  void (*pack)(const float* x, std::int64_t k, TWord* out) = nullptr;

  inline float Value(std::int32_t dot, std::int64_t j) const {
    float v = static_cast<float>(dot);
    if (multiplier != nullptr) v = v * multiplier[j];
    if (bias != nullptr) v = v + bias[j];
    return v;
  }

  // Writes channels [j0, j0 + count) of one output row from dot[0..count).
  // For kBitpacked, j0 must be a multiple of 64 and the block must end at a
  // multiple of 64 or at the end of the row, so whole words are written.
  inline void WriteRow(const std::int32_t* dot, std::int64_t j0,
                       std::int64_t count, void* row) const {
    switch (kind) {
      case OutputKind::kInt32: {
        std::int32_t* out = static_cast<std::int32_t*>(row) + j0;
        for (std::int64_t j = 0; j < count; ++j) out[j] = dot[j];
        break;
      }
      case OutputKind::kFloat: {
        float* out = static_cast<float*>(row) + j0;
        for (std::int64_t j = 0; j < count; ++j) out[j] = Value(dot[j], j0 + j);
        break;
      }
      case OutputKind::kBitpacked: {
        TWord* out = static_cast<TWord*>(row) + j0 / kWordBits;
        if (pack != nullptr) {
          // Transform 64 channels into a float buffer (a vectorizable loop),
          // then pack them with compare-to-mask; same bits as below.
          float values[64];
          for (std::int64_t c0 = 0; c0 < count; c0 += 64) {
            const std::int64_t n = count - c0 < 64 ? count - c0 : 64;
            for (std::int64_t j = 0; j < n; ++j)
              values[j] = Value(dot[c0 + j], j0 + c0 + j);
            pack(values, n, out + c0 / kWordBits);
          }
          break;
        }
        const std::int64_t words = PackedWords(count, kWordBits);
        for (std::int64_t w = 0; w < words; ++w) {
          TWord bits = 0;
          const std::int64_t end =
              (w + 1) * kWordBits < count ? (w + 1) * kWordBits : count;
          for (std::int64_t j = w * kWordBits; j < end; ++j) {
            bits |= TWord(PacksAsMinusOne(Value(dot[j], j0 + j))) << (j % kWordBits);
          }
          out[w] = bits;
        }
        break;
      }
    }
  }
};

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_OUTPUT_TRANSFORM_H_
