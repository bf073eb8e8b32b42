// AVX-512 popcount-GEMM (AVX-512F + AVX-512 VPOPCNTDQ).
//
// The instruction set is enabled with `#pragma GCC target` for this file's
// own code only (standard headers are included before it), so the rest of the
// library is built for baseline x86-64 and this code runs only when
// SelectKernel() has seen the CPU report both features.
#include <immintrin.h>

#include <cstdint>

#include "cc_ops/core/bgemm/kernels.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vpopcntdq")
// GCC 12 warns inside its own _mm512_reduce_add_epi64 (uninitialized
// _mm512_undefined_epi32 operand); a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tfdisc {
namespace core {
namespace {

// 16 words = 512 bits per step; the last partial step uses a masked load, so
// rows need no padding beyond `words`.
template <int MR, int NR>
inline void Tile(const TWord* a, std::int64_t lda, const TWord* b,
                 std::int64_t ldb, std::int64_t words, std::int32_t* p,
                 std::int64_t ldp) {
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  std::int64_t w = 0;
  for (; w + 16 <= words; w += 16) {
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i) av[i] = _mm512_loadu_si512(a + i * lda + w);
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_loadu_si512(b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(
            acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
  }
  if (w < words) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (words - w)) - 1u);
    __m512i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i)
      av[i] = _mm512_maskz_loadu_epi32(mask, a + i * lda + w);
    for (int j = 0; j < NR; ++j)
      bv[j] = _mm512_maskz_loadu_epi32(mask, b + j * ldb + w);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm512_add_epi64(
            acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      p[i * ldp + j] =
          static_cast<std::int32_t>(_mm512_reduce_add_epi64(acc[i][j]));
}

}  // namespace

void PopcountGemmAvx512(const TWord* a, std::int64_t lda, const TWord* b,
                        std::int64_t ldb, int m, int n, std::int64_t words,
                        std::int32_t* p, std::int64_t ldp) {
  int i = 0;
  for (; i + 4 <= m; i += 4) {
    int j = 0;
    for (; j + 4 <= n; j += 4)
      Tile<4, 4>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
    for (; j < n; ++j)
      Tile<4, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
  }
  for (; i < m; ++i) {
    int j = 0;
    for (; j + 8 <= n; j += 8)
      Tile<1, 8>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
    for (; j < n; ++j)
      Tile<1, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
  }
}

void BitpackFloatAvx512(const float* x, std::int64_t k, TWord* out) {
  const __m512 zero = _mm512_setzero_ps();
  std::int64_t w = 0;
  for (; (w + 1) * kWordBits <= k; ++w) {
    const float* xw = x + w * kWordBits;
    const __mmask16 lo =
        _mm512_cmp_ps_mask(_mm512_loadu_ps(xw), zero, _CMP_LT_OQ);
    const __mmask16 hi =
        _mm512_cmp_ps_mask(_mm512_loadu_ps(xw + 16), zero, _CMP_LT_OQ);
    out[w] = TWord(lo) | (TWord(hi) << 16);
  }
  const std::int64_t rest = k - w * kWordBits;
  if (rest > 0) {
    const float* xw = x + w * kWordBits;
    const int r0 = rest > 16 ? 16 : static_cast<int>(rest);
    const int r1 = static_cast<int>(rest) - r0;
    const __mmask16 m0 = static_cast<__mmask16>((1u << r0) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>((1u << r1) - 1u);
    const __mmask16 lo =
        _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m0, xw), zero, _CMP_LT_OQ);
    const __mmask16 hi = _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m1, xw + 16),
                                            zero, _CMP_LT_OQ);
    out[w] = TWord(lo) | (TWord(hi) << 16);
  }
}

// Register-resident XOR+popcount: 4 rows of `a` against 4 rows of `b`
// (64-word chunks, loaded once per chunk and reused 4 times, like the 4x4
// GEMM tile), so the loop measures XOR/VPOPCNTQ/ADD throughput rather than
// load bandwidth. `words` must be a multiple of 64.
std::int64_t XorPopcountRooflineAvx512(const TWord* a, const TWord* b,
                                       std::int64_t words,
                                       std::int64_t iters) {
  __m512i acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_si512();
  for (std::int64_t it = 0; it < iters; ++it) {
    for (std::int64_t w = 0; w + 64 <= words; w += 64) {
      __m512i av[4], bv[4];
      for (int i = 0; i < 4; ++i) {
        av[i] = _mm512_loadu_si512(a + w + 16 * i);
        bv[i] = _mm512_loadu_si512(b + w + 16 * i);
      }
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j)
          acc[i][j] = _mm512_add_epi64(
              acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(av[i], bv[j])));
    }
    // Keep the compiler from hoisting work out of the `it` loop.
    __asm__ volatile("" : "+v"(acc[0][0]), "+v"(acc[1][1]), "+v"(acc[2][2]),
                     "+v"(acc[3][3]));
  }
  __m512i sum = _mm512_setzero_si512();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) sum = _mm512_add_epi64(sum, acc[i][j]);
  volatile std::int64_t sink = _mm512_reduce_add_epi64(sum);
  (void)sink;
  return iters * (words / 64) * 16 * 512;  // binary MACs performed
}

}  // namespace core
}  // namespace tfdisc

#pragma GCC pop_options
#endif  // defined(__x86_64__)
