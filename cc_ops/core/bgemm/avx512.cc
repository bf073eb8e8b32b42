// AVX-512 popcount-GEMM (AVX-512F + AVX-512 VPOPCNTDQ).
//
// The instruction set is enabled with `#pragma GCC target` for this file's
// own code only (standard headers are included before it), so the rest of the
// library is built for baseline x86-64 and this code runs only when
// SelectKernel() has seen the CPU report both features.
#include <cstdint>
#include <limits>

#include "cc_ops/core/bgemm/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vpopcntdq")
// GCC 12 warns inside its own _mm512_reduce_add_epi64 (uninitialized
// _mm512_undefined_epi32 operand); a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace tfdisc {
namespace core {
namespace {

// Horizontal sums of eight vectors of 8 x int64 at once: returns r with
// r[l] = sum of the lanes of v[l]. Three rounds of pairwise interleave + add
// (21 instructions instead of eight separate reductions of ~6 each), which
// matters when K is small and a tile runs only a few 512-bit steps.
inline __m512i Reduce8(const __m512i v[8]) {
  // Round 1: each 128-bit chunk of s[k] holds (partial v[2k], partial v[2k+1]).
  __m512i s[4];
  for (int k = 0; k < 4; ++k)
    s[k] = _mm512_add_epi64(_mm512_unpacklo_epi64(v[2 * k], v[2 * k + 1]),
                            _mm512_unpackhi_epi64(v[2 * k], v[2 * k + 1]));
  // Round 2: fold 128-bit chunks pairwise; t[0] covers v0..v3, t[1] v4..v7.
  __m512i t[2];
  for (int k = 0; k < 2; ++k)
    t[k] = _mm512_add_epi64(
        _mm512_shuffle_i64x2(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_shuffle_i64x2(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  // t[0] chunks: [v0v1 (c0+c1), v0v1 (c2+c3), v2v3 (c0+c1), v2v3 (c2+c3)].
  // Round 3: add the two halves of each pair and order the chunks v0..v7.
  return _mm512_add_epi64(
      _mm512_shuffle_i64x2(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
      _mm512_shuffle_i64x2(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

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
  if constexpr (MR * NR % 8 == 0 && NR % 4 == 0) {
    // Eight accumulators at a time: lane l of the reduced vector is the sum
    // of accumulator l, in row-major (i, j) order.
    for (int g = 0; g < MR * NR / 8; ++g) {
      __m512i v[8];
      for (int l = 0; l < 8; ++l) v[l] = acc[(8 * g + l) / NR][(8 * g + l) % NR];
      const __m256i sums = _mm512_cvtepi64_epi32(Reduce8(v));
      for (int q = 0; q < 8 / 4; ++q) {
        const int e = 8 * g + 4 * q;  // first element of this 4-lane quarter
        const __m128i part = q == 0 ? _mm256_castsi256_si128(sums)
                                    : _mm256_extracti128_si256(sums, 1);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + (e / NR) * ldp + e % NR),
                         part);
      }
    }
  } else {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        p[i * ldp + j] =
            static_cast<std::int32_t>(_mm512_reduce_add_epi64(acc[i][j]));
  }
}

}  // namespace

void PopcountGemmAvx512(const TWord* a, std::int64_t lda, const TWord* b,
                        std::int64_t ldb, int m, int n, std::int64_t words,
                        std::int32_t* p, std::int64_t ldp) {
  int i = 0;
  if (words < 64) {
    // Short rows (e.g. a 3x3 conv over 128 channels: 36 words): a tile runs
    // only a few steps, so its fixed cost (zeroing, reduction, stores)
    // matters; 2x8 measured faster than 4x4 here, 4x4 faster for long rows.
    for (; i + 2 <= m; i += 2) {
      int j = 0;
      for (; j + 8 <= n; j += 8)
        Tile<2, 8>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                   ldp);
      for (; j < n; ++j)
        Tile<2, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                   ldp);
    }
  }
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

namespace {

// MR rows of a against 64 columns (4 vectors of 16 int32 lanes) of bt.
template <int MR>
inline void TransposedTile(const TWord* a, std::int64_t lda, const TWord* bt,
                           std::int64_t ldbt, int n, std::int64_t words,
                           std::int32_t* p, std::int64_t ldp) {
  __m512i acc[MR][4];
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < 4; ++c) acc[i][c] = _mm512_setzero_si512();
  for (std::int64_t w = 0; w < words; ++w) {
    const TWord* row = bt + w * ldbt;
    __m512i bv[4];
    for (int c = 0; c < 4; ++c) bv[c] = _mm512_loadu_si512(row + 16 * c);
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(static_cast<int>(a[i * lda + w]));
      for (int c = 0; c < 4; ++c)
        acc[i][c] = _mm512_add_epi32(
            acc[i][c], _mm512_popcnt_epi32(_mm512_xor_si512(av, bv[c])));
    }
  }
  for (int c = 0; c < 4; ++c) {
    const int left = n - 16 * c;
    if (left <= 0) break;
    const __mmask16 mask =
        left >= 16 ? static_cast<__mmask16>(0xffff)
                   : static_cast<__mmask16>((1u << left) - 1u);
    for (int i = 0; i < MR; ++i)
      _mm512_mask_storeu_epi32(p + i * ldp + 16 * c, mask, acc[i][c]);
  }
}

}  // namespace

void PopcountGemmTransposedAvx512(const TWord* a, std::int64_t lda,
                                  const TWord* bt, std::int64_t ldbt, int m,
                                  int n, std::int64_t words, std::int32_t* p,
                                  std::int64_t ldp) {
  for (int j = 0; j < n; j += 64) {
    const int nj = n - j < 64 ? n - j : 64;
    int i = 0;
    for (; i + 4 <= m; i += 4)
      TransposedTile<4>(a + i * lda, lda, bt + j, ldbt, nj, words,
                        p + i * ldp + j, ldp);
    for (; i < m; ++i)
      TransposedTile<1>(a + i * lda, lda, bt + j, ldbt, nj, words,
                        p + i * ldp + j, ldp);
  }
}

void BitpackFloatAvx512(const float* x, std::int64_t k, TWord* out) {
  // x <= -FLT_MIN: PacksAsMinusOne (core/types.h), independent of DAZ.
  const __m512 limit = _mm512_set1_ps(-std::numeric_limits<float>::min());
  std::int64_t w = 0;
  for (; (w + 1) * kWordBits <= k; ++w) {
    const float* xw = x + w * kWordBits;
    const __mmask16 lo =
        _mm512_cmp_ps_mask(_mm512_loadu_ps(xw), limit, _CMP_LE_OQ);
    const __mmask16 hi =
        _mm512_cmp_ps_mask(_mm512_loadu_ps(xw + 16), limit, _CMP_LE_OQ);
    out[w] = TWord(lo) | (TWord(hi) << 16);
  }
  const std::int64_t rest = k - w * kWordBits;
  if (rest > 0) {
    const float* xw = x + w * kWordBits;
    const int r0 = rest > 16 ? 16 : static_cast<int>(rest);
    const int r1 = static_cast<int>(rest) - r0;
    const __mmask16 m0 = static_cast<__mmask16>((1u << r0) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>((1u << r1) - 1u);
    const __mmask16 lo = _mm512_mask_cmp_ps_mask(
        m0, _mm512_maskz_loadu_ps(m0, xw), limit, _CMP_LE_OQ);
    const __mmask16 hi = _mm512_mask_cmp_ps_mask(
        m1, _mm512_maskz_loadu_ps(m1, xw + 16), limit, _CMP_LE_OQ);
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
