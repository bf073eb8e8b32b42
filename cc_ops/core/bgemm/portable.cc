// Portable popcount-GEMM: 2x4 register tile over 64-bit lanes, SWAR popcount.
// Compiled without any ISA flag; this path always exists.
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

}  // namespace

void PopcountGemmPortable(const TWord* a, std::int64_t lda, const TWord* b,
                          std::int64_t ldb, int m, int n, std::int64_t words,
                          std::int32_t* p, std::int64_t ldp) {
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
