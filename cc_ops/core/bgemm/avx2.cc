// AVX2 popcount-GEMM: nibble-lookup popcount (vpshufb), byte accumulators
// flushed to 64-bit lanes with vpsadbw (Mula, Kurz & Lemire, "Faster
// population counts using AVX2 instructions", 2016).
//
// AVX2 is enabled with `#pragma GCC target` for this file's own code only;
// see avx512.cc for why.
#include <immintrin.h>

#include <cstdint>

#include "cc_ops/core/bgemm/kernels.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,popcnt")

namespace tfdisc {
namespace core {
namespace {

// Each step adds at most 8 per byte; 31 steps stay below 255.
constexpr int kFlushEvery = 31;

inline __m256i ByteCounts(__m256i v, __m256i lut, __m256i low_mask) {
  const __m256i lo = _mm256_and_si256(v, low_mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                         _mm256_shuffle_epi8(lut, hi));
}

template <int MR, int NR>
inline void Tile(const TWord* a, std::int64_t lda, const TWord* b,
                 std::int64_t ldb, std::int64_t words, std::int32_t* p,
                 std::int64_t ldp) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2,
                                       3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                       2, 3, 2, 3, 3, 4);
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[MR][NR], bytes[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = bytes[i][j] = zero;
  const std::int64_t full = words / 8;
  std::int64_t step = 0;
  while (step < full) {
    const std::int64_t end =
        step + kFlushEvery < full ? step + kFlushEvery : full;
    for (; step < end; ++step) {
      const std::int64_t w = step * 8;
      __m256i av[MR], bv[NR];
      for (int i = 0; i < MR; ++i)
        av[i] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a + i * lda + w));
      for (int j = 0; j < NR; ++j)
        bv[j] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(b + j * ldb + w));
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
          bytes[i][j] = _mm256_add_epi8(
              bytes[i][j],
              ByteCounts(_mm256_xor_si256(av[i], bv[j]), lut, low_mask));
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        acc[i][j] = _mm256_add_epi64(acc[i][j], _mm256_sad_epu8(bytes[i][j], zero));
        bytes[i][j] = zero;
      }
  }
  const std::int64_t rest = words - full * 8;
  if (rest > 0) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)), idx);
    const std::int64_t w = full * 8;
    __m256i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i)
      av[i] = _mm256_maskload_epi32(
          reinterpret_cast<const int*>(a + i * lda + w), mask);
    for (int j = 0; j < NR; ++j)
      bv[j] = _mm256_maskload_epi32(
          reinterpret_cast<const int*>(b + j * ldb + w), mask);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm256_add_epi64(
            acc[i][j],
            _mm256_sad_epu8(
                ByteCounts(_mm256_xor_si256(av[i], bv[j]), lut, low_mask),
                zero));
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc[i][j]),
                                      _mm256_extracti128_si256(acc[i][j], 1));
      p[i * ldp + j] = static_cast<std::int32_t>(
          _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1));
    }
}

}  // namespace

void PopcountGemmAvx2(const TWord* a, std::int64_t lda, const TWord* b,
                      std::int64_t ldb, int m, int n, std::int64_t words,
                      std::int32_t* p, std::int64_t ldp) {
  int i = 0;
  for (; i + 2 <= m; i += 2) {
    int j = 0;
    for (; j + 2 <= n; j += 2)
      Tile<2, 2>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
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

std::int64_t XorPopcountRooflineAvx2(const TWord* a, const TWord* b,
                                     std::int64_t words, std::int64_t iters) {
  // The 2x2 GEMM tile on L1-resident rows: rows a, a + words / 2 against
  // b, b + words / 2.
  const std::int64_t half = words / 2;
  std::int32_t p[4];
  std::int64_t total = 0;
  for (std::int64_t it = 0; it < iters; ++it) {
    Tile<2, 2>(a, half, b, half, half, p, 2);
    total += p[0] + p[3];
  }
  volatile std::int64_t sink = total;
  (void)sink;
  return iters * 4 * half * 32;  // binary MACs performed
}

}  // namespace core
}  // namespace tfdisc

#pragma GCC pop_options
#endif  // defined(__x86_64__)
