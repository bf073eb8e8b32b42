// Word type and bit convention shared by every tfdisc binary kernel.
//
// Convention (same as larq-compute-engine):
//   * A value x is binarised as sign(x) with sign(0) = +1 (larq's `ste_sign`).
//   * +1 is stored as bit 0 and -1 as bit 1, i.e. bit = (x < 0), where a
//     float32/float64 subnormal counts as 0 (see PacksAsMinusOne).
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
#include <limits>

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

// The bit of one float value: x < 0, except that negative float32 subnormals
// pack as +1, as if flushed to zero. TensorFlow runs CPU kernels with
// denormals flushed (FTZ/DAZ), so larq's sign() sees them as 0; comparing
// with -FLT_MIN (a normal number) gives that answer whatever the calling
// thread's floating-point mode. -0.0 and NaN pack as +1.
inline bool PacksAsMinusOne(float x) {
  return x <= -std::numeric_limits<float>::min();
}
inline bool PacksAsMinusOne(double x) {
  return x <= -std::numeric_limits<double>::min();
}

// Largest number of bits K in one +-1 dot product (dense k, conv
// channels_in * filter taps). The kernels return popcounts and dot products
// as int32, and dot = K - 2 * popcount lies in [-K, K], so K must fit in an
// int32. The ops reject larger K with OP_REQUIRES before allocating anything
// (such a row alone would be 256 MiB).
constexpr std::int64_t kMaxDotBits = 2147483647;  // 2^31 - 1

// The +-1 dot product from the XOR popcount of two rows of k bits. Computed
// in 64 bits: 2 * popcount overflows int32 once k > 2^30, while the result
// fits for every k <= kMaxDotBits.
inline std::int32_t DotFromPopcount(std::int64_t k, std::int64_t popcount) {
  return static_cast<std::int32_t>(k - 2 * popcount);
}

// Whether a dot product over filter_h * filter_w taps of `channels` bits
// each (a dense layer: 1 x 1 taps) stays within kMaxDotBits. Checked by
// division, so huge dimensions cannot overflow the test itself.
inline bool DotBitsWithinLimit(std::int64_t channels, std::int64_t filter_h,
                               std::int64_t filter_w) {
  if (channels < 0 || filter_h < 0 || filter_w < 0) return false;
  if (channels == 0 || filter_h == 0 || filter_w == 0) return true;
  return channels <= kMaxDotBits / filter_h / filter_w;
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
