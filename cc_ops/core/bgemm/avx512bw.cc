// AVX-512BW popcount-GEMM for CPUs with AVX-512 but without VPOPCNTDQ
// (Skylake-SP / Cascade Lake servers): the AVX2 kernel's nibble-lookup
// popcount (vpshufb + vpsadbw, Mula, Kurz & Lemire 2016) on 512-bit vectors.
//
// AVX-512F/BW are enabled with `#pragma GCC target` for this file's own code
// only; see avx512.cc for why.
#include <cstdint>

#include "cc_ops/core/bgemm/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw")
// GCC 12 warns inside its own _mm512_reduce_add_epi64 (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tfdisc {
namespace core {
namespace {

// Each step adds at most 8 per byte; 31 steps stay below 255.
constexpr int kFlushEvery = 31;

inline __m512i ByteCounts(__m512i v, __m512i lut, __m512i low_mask) {
  const __m512i lo = _mm512_and_si512(v, low_mask);
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low_mask);
  return _mm512_add_epi8(_mm512_shuffle_epi8(lut, lo),
                         _mm512_shuffle_epi8(lut, hi));
}

template <int MR, int NR>
inline void Tile(const TWord* a, std::int64_t lda, const TWord* b,
                 std::int64_t ldb, std::int64_t words, std::int32_t* p,
                 std::int64_t ldp) {
  const __m512i lut = _mm512_broadcast_i32x4(
      _mm_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4));
  const __m512i low_mask = _mm512_set1_epi8(0x0f);
  const __m512i zero = _mm512_setzero_si512();
  __m512i acc[MR][NR], bytes[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = bytes[i][j] = zero;
  const std::int64_t full = words / 16;
  std::int64_t step = 0;
  while (step < full) {
    const std::int64_t end =
        step + kFlushEvery < full ? step + kFlushEvery : full;
    for (; step < end; ++step) {
      const std::int64_t w = step * 16;
      __m512i av[MR], bv[NR];
      for (int i = 0; i < MR; ++i) av[i] = _mm512_loadu_si512(a + i * lda + w);
      for (int j = 0; j < NR; ++j) bv[j] = _mm512_loadu_si512(b + j * ldb + w);
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
          bytes[i][j] = _mm512_add_epi8(
              bytes[i][j],
              ByteCounts(_mm512_xor_si512(av[i], bv[j]), lut, low_mask));
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_sad_epu8(bytes[i][j], zero));
        bytes[i][j] = zero;
      }
  }
  const std::int64_t rest = words - full * 16;
  if (rest > 0) {
    const __mmask16 mask = static_cast<__mmask16>((1u << rest) - 1u);
    const std::int64_t w = full * 16;
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i)
      av[i] = _mm512_maskz_loadu_epi32(mask, a + i * lda + w);
    for (int j = 0; j < NR; ++j)
      bv[j] = _mm512_maskz_loadu_epi32(mask, b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(
            acc[i][j],
            _mm512_sad_epu8(
                ByteCounts(_mm512_xor_si512(av[i], bv[j]), lut, low_mask),
                zero));
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      p[i * ldp + j] =
          static_cast<std::int32_t>(_mm512_reduce_add_epi64(acc[i][j]));
}

}  // namespace

void PopcountGemmAvx512Bw(const TWord* a, std::int64_t lda, const TWord* b,
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

std::int64_t XorPopcountRooflineAvx512Bw(const TWord* a, const TWord* b,
                                         std::int64_t words,
                                         std::int64_t iters) {
  // The 2x2 tile on L1-resident rows, as for AVX2.
  const std::int64_t half = words / 2;
  std::int32_t p[4];
  std::int64_t total = 0;
  for (std::int64_t it = 0; it < iters; ++it) {
    Tile<2, 2>(a, half, b, half, half, p, 2);
    total += p[0] + p[1] + p[2] + p[3];  // all used: no dead tile rows
  }
  volatile std::int64_t sink = total;
  (void)sink;
  return iters * 4 * half * 32;
}

}  // namespace core
}  // namespace tfdisc

#pragma GCC pop_options
#endif  // defined(__x86_64__)
