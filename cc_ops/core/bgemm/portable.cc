// Portable popcount-GEMM, compiled without any ISA flag (this path always
// exists):
//   * rows of >= 64 words: Harley-Seal carry-save accumulation (as in
//     avx2.cc) on 128-bit GCC/Clang generic vectors (`vector_size(16)`:
//     SSE2 on x86-64, Advanced SIMD on AArch64, pairs of scalars elsewhere);
//     only one vector in 16 is popcounted (SWAR);
//   * shorter rows: 2x4 register tile over 64-bit lanes, SWAR popcount.
#include <cstring>

#include "cc_ops/core/bgemm/kernels.h"

namespace tfdisc {
namespace core {
namespace {

inline std::uint64_t Load64(const TWord* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <int MR, int NR>
void Tile(const TWord* a, std::int64_t lda, const TWord* b, std::int64_t ldb,
          std::int64_t words, std::int32_t* p, std::int64_t ldp) {
  std::int64_t acc[MR][NR] = {};
  std::int64_t w = 0;
  for (; w + 2 <= words; w += 2) {
    std::uint64_t av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = Load64(a + i * lda + w);
    for (int j = 0; j < NR; ++j) bv[j] = Load64(b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += PopcountPortable(av[i] ^ bv[j]);
  }
  if (w < words) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] += PopcountPortable(a[i * lda + w] ^ b[j * ldb + w]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      p[i * ldp + j] = static_cast<std::int32_t>(acc[i][j]);
}

// Two 64-bit lanes; plain C++ operators, no intrinsics.
typedef std::uint64_t V2 __attribute__((vector_size(16)));

inline V2 LoadV2(const TWord* p) {
  V2 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Carry-save adder: (h, l) = a + b + c, bitwise.
inline void Csa(V2* h, V2* l, V2 a, V2 b, V2 c) {
  const V2 u = a ^ b;
  *h = (a & b) | (u & c);
  *l = u ^ c;
}

inline std::int64_t PopcountV2(V2 v) {
  return PopcountPortable(v[0]) + PopcountPortable(v[1]);
}

constexpr std::int64_t kHarleySealWords = 64;  // 16 vectors of 4 words

// popcount(a XOR b) over `words` words: Harley-Seal over whole 64-word
// blocks, then 64-bit SWAR for the rest.
inline std::int64_t PairHarleySeal(const TWord* a, const TWord* b,
                                   std::int64_t words) {
  V2 ones = {0, 0}, twos = {0, 0}, fours = {0, 0}, eights = {0, 0};
  std::int64_t total = 0;
  const std::int64_t blocks = words / kHarleySealWords;
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const TWord* ab = a + blk * kHarleySealWords;
    const TWord* bb = b + blk * kHarleySealWords;
    auto d = [&](int k) { return LoadV2(ab + 4 * k) ^ LoadV2(bb + 4 * k); };
    V2 twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
    Csa(&twos_a, &ones, ones, d(0), d(1));
    Csa(&twos_b, &ones, ones, d(2), d(3));
    Csa(&fours_a, &twos, twos, twos_a, twos_b);
    Csa(&twos_a, &ones, ones, d(4), d(5));
    Csa(&twos_b, &ones, ones, d(6), d(7));
    Csa(&fours_b, &twos, twos, twos_a, twos_b);
    Csa(&eights_a, &fours, fours, fours_a, fours_b);
    Csa(&twos_a, &ones, ones, d(8), d(9));
    Csa(&twos_b, &ones, ones, d(10), d(11));
    Csa(&fours_a, &twos, twos, twos_a, twos_b);
    Csa(&twos_a, &ones, ones, d(12), d(13));
    Csa(&twos_b, &ones, ones, d(14), d(15));
    Csa(&fours_b, &twos, twos, twos_a, twos_b);
    Csa(&eights_b, &fours, fours, fours_a, fours_b);
    Csa(&sixteens, &eights, eights, eights_a, eights_b);
    total += PopcountV2(sixteens);
  }
  total = 16 * total + 8 * PopcountV2(eights) + 4 * PopcountV2(fours) +
          2 * PopcountV2(twos) + PopcountV2(ones);
  std::int64_t w = blocks * kHarleySealWords;
  for (; w + 2 <= words; w += 2) total += PopcountPortable(Load64(a + w) ^ Load64(b + w));
  if (w < words) total += PopcountPortable(a[w] ^ b[w]);
  return total;
}

}  // namespace

void PopcountGemmPortable(const TWord* a, std::int64_t lda, const TWord* b,
                          std::int64_t ldb, int m, int n, std::int64_t words,
                          std::int32_t* p, std::int64_t ldp) {
  if (words >= kHarleySealWords) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j)
        p[i * ldp + j] = static_cast<std::int32_t>(
            PairHarleySeal(a + i * lda, b + j * ldb, words));
    return;
  }
  int i = 0;
  for (; i + 2 <= m; i += 2) {
    int j = 0;
    for (; j + 4 <= n; j += 4)
      Tile<2, 4>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
    for (; j < n; ++j)
      Tile<2, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
  }
  for (; i < m; ++i) {
    int j = 0;
    for (; j + 4 <= n; j += 4)
      Tile<1, 4>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
    for (; j < n; ++j)
      Tile<1, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
  }
}

void FloatGemmBitsPortable(const float* a, std::int64_t m, std::int64_t k,
                           const float* w, const float* bias, std::int64_t n,
                           TWord* out, std::int64_t ldo) {
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; j += kFloatGemmCols) {
      float v[kFloatGemmCols];
      for (std::int64_t c = 0; c < kFloatGemmCols; ++c) v[c] = bias[j + c];
      for (std::int64_t t = 0; t < k; ++t) {
        const float x = a[i * k + t];
        const float* wt = w + t * n + j;
        for (std::int64_t c = 0; c < kFloatGemmCols; ++c) v[c] += x * wt[c];
      }
      std::uint16_t bits = 0;
      for (std::int64_t c = 0; c < kFloatGemmCols; ++c)
        bits |= static_cast<std::uint16_t>(PacksAsMinusOne(v[c])) << c;
      StoreBits16(out + i * ldo, j, bits);
    }
  }
}

void BitpackFloatPortable(const float* x, std::int64_t k, TWord* out) {
  const std::int64_t full = k / kWordBits;
  for (std::int64_t w = 0; w < full; ++w) {
    TWord bits = 0;
    const float* xw = x + w * kWordBits;
    for (int b = 0; b < kWordBits; ++b) bits |= TWord(PacksAsMinusOne(xw[b])) << b;
    out[w] = bits;
  }
  const std::int64_t rest = k - full * kWordBits;
  if (rest > 0) {
    TWord bits = 0;
    const float* xw = x + full * kWordBits;
    for (int b = 0; b < rest; ++b) bits |= TWord(PacksAsMinusOne(xw[b])) << b;
    out[full] = bits;
  }
}

}  // namespace core
}  // namespace tfdisc
