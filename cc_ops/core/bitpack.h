// Bit-packing of one row (see core/types.h for the convention).
#ifndef TFDISC_CC_OPS_CORE_BITPACK_H_
#define TFDISC_CC_OPS_CORE_BITPACK_H_

#include <cstdint>
#include <type_traits>

#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

// The bit of one value of any input type (core/types.h): integers x < 0;
// double as PacksAsMinusOne(double); every other floating type (float,
// half, bfloat16) compared in float32 arithmetic, as TensorFlow computes
// sign() of it: a bfloat16 subnormal is a float32 subnormal and packs as +1,
// while a half subnormal is a normal float32 and packs as -1 (as larq's
// ste_sign gives on half input).
template <typename T>
inline bool PacksAsMinusOneAny(T x) {
  if constexpr (std::is_integral<T>::value) {
    return x < T(0);
  } else if constexpr (std::is_same<T, double>::value) {
    return PacksAsMinusOne(x);
  } else {
    return PacksAsMinusOne(static_cast<float>(x));
  }
}

// Packs x[0..k) into `out_words` 32-bit words, bit = PacksAsMinusOneAny(x).
// Words past PackedWords32(k, 32) (the zero high half of a 64-bit word) are
// zeroed.
template <typename T>
void BitpackRow(const T* x, std::int64_t k, std::int64_t out_words,
                TWord* out) {
  std::int64_t w = 0;
  for (; w * kWordBits < k; ++w) {
    TWord bits = 0;
    const std::int64_t end = (w + 1) * kWordBits < k ? (w + 1) * kWordBits : k;
    for (std::int64_t i = w * kWordBits; i < end; ++i) {
      bits |= TWord(PacksAsMinusOneAny(x[i])) << (i % kWordBits);
    }
    out[w] = bits;
  }
  for (; w < out_words; ++w) out[w] = 0;
}

// One float row with a vectorized packer (a BitpackFloatFn of
// bgemm/kernels.h: PackedWords32(k, 32) words), then the words up to
// `out_words` (the zero high half of a 64-bit word) zeroed.
inline void BitpackFloatRow(void (*pack)(const float* x, std::int64_t k, TWord* out),
                            const float* x, std::int64_t k, std::int64_t out_words,
                            TWord* out) {
  pack(x, k, out);
  for (std::int64_t w = PackedWords32(k, 32); w < out_words; ++w) out[w] = 0;
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BITPACK_H_
