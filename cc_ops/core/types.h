// Word type and bit convention shared by every tfdisc binary kernel.
//
// Convention (same as larq-compute-engine):
//   * A value x is binarised as sign(x) with sign(0) = +1 (larq's `ste_sign`).
//   * +1 is stored as bit 0 and -1 as bit 1, i.e. bit = (x < 0).
//   * Bits are packed along the innermost (channel) axis, little-endian:
//     channel c lives in word c / B, bit c % B, for word size B = 32 or 64.
//   * Each row is packed separately and rounded up to whole words; the
//     padding bits are zero in both operands, so they never contribute to
//     popcount(a XOR b).
//   * For two packed rows of K values, the +-1 dot product is
//         dot = K - 2 * popcount(a XOR b).
//
// Internally every kernel works on 32-bit words. A row packed into 64-bit
// words is, on a little-endian machine, bit-identical to the same row packed
// into twice as many 32-bit words (the high half of the last word carries
// only zero padding bits), so int64-packed tensors are processed through the
// same code with `words = 2 * ceil(K / 64)`.
#ifndef TFDISC_CC_OPS_CORE_TYPES_H_
#define TFDISC_CC_OPS_CORE_TYPES_H_

#include <cstdint>

namespace tfdisc {
namespace core {

using TWord = std::uint32_t;
constexpr int kWordBits = 32;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tfdisc packs 64-bit words as pairs of 32-bit words and "
              "needs a little-endian target");

// Number of `word_bits`-bit words needed to hold `n` bits.
inline std::int64_t PackedWords(std::int64_t n, int word_bits) {
  return (n + word_bits - 1) / word_bits;
}

// The same, counted in 32-bit TWord units (what the kernels iterate over).
inline std::int64_t PackedWords32(std::int64_t n, int word_bits) {
  return PackedWords(n, word_bits) * (word_bits / kWordBits);
}

// Portable population count (SWAR); compilers turn it into POPCNT when the
// target has it, and it needs no CPU feature otherwise.
inline int PopcountPortable(std::uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return static_cast<int>((x * 0x0101010101010101ULL) >> 56);
}

// Bit pattern of one packed pixel whose C channels are all -1: the first C
// bits set, padding bits zero. `out` receives PackedWords32(C, 32) words.
inline void MinusOnesPattern(std::int64_t channels, std::int64_t words,
                             TWord* out) {
  for (std::int64_t w = 0; w < words; ++w) {
    const std::int64_t left = channels - w * kWordBits;
    if (left >= kWordBits) {
      out[w] = ~TWord{0};
    } else if (left <= 0) {
      out[w] = 0;
    } else {
      out[w] = (TWord{1} << left) - 1;
    }
  }
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_TYPES_H_
