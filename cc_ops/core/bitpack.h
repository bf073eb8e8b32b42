// Bit-packing of one row (see core/types.h for the convention).
#ifndef TFDISC_CC_OPS_CORE_BITPACK_H_
#define TFDISC_CC_OPS_CORE_BITPACK_H_

#include <cstdint>

#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

// Packs x[0..k) into `out_words` 32-bit words: bit = (x < 0), so 0 and -0
// pack as +1 like larq's sign; NaN packs as +1. Words past
// PackedWords32(k, 32) (the zero high half of a 64-bit word) are zeroed.
template <typename T>
void BitpackRow(const T* x, std::int64_t k, std::int64_t out_words,
                TWord* out) {
  const T zero = static_cast<T>(0);
  std::int64_t w = 0;
  for (; w * kWordBits < k; ++w) {
    TWord bits = 0;
    const std::int64_t end = (w + 1) * kWordBits < k ? (w + 1) * kWordBits : k;
    for (std::int64_t i = w * kWordBits; i < end; ++i) {
      bits |= TWord(x[i] < zero) << (i % kWordBits);
    }
    out[w] = bits;
  }
  for (; w < out_words; ++w) out[w] = 0;
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BITPACK_H_
