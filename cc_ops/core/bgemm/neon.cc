// AArch64 NEON popcount-GEMM: vcntq_u8 (per-byte popcount) of a XOR b,
// byte counts summed in registers for up to 31 steps (each step adds at most
// 8 per byte), then widened with pairwise adds (vpaddlq_u8 / vpadalq_u16)
// into 32-bit lanes. NEON is part of the AArch64 base ISA, so no feature
// check is needed; this file compiles to nothing on other architectures.
#include "cc_ops/core/bgemm/kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cstdint>

namespace tfdisc {
namespace core {
namespace {

constexpr int kFlushEvery = 31;

// 4 words = 128 bits per step; the last 1-3 words go through the scalar
// popcount, so rows need no padding beyond `words`.
template <int MR, int NR>
inline void Tile(const TWord* a, std::int64_t lda, const TWord* b,
                 std::int64_t ldb, std::int64_t words, std::int32_t* p,
                 std::int64_t ldp) {
  uint32x4_t acc[MR][NR];
  uint8x16_t bytes[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      acc[i][j] = vdupq_n_u32(0);
      bytes[i][j] = vdupq_n_u8(0);
    }
  const std::int64_t full = words / 4;
  std::int64_t step = 0;
  while (step < full) {
    const std::int64_t end = step + kFlushEvery < full ? step + kFlushEvery : full;
    for (; step < end; ++step) {
      const std::int64_t w = step * 4;
      uint8x16_t av[MR], bv[NR];
      for (int i = 0; i < MR; ++i)
        av[i] = vreinterpretq_u8_u32(vld1q_u32(a + i * lda + w));
      for (int j = 0; j < NR; ++j)
        bv[j] = vreinterpretq_u8_u32(vld1q_u32(b + j * ldb + w));
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
          bytes[i][j] = vaddq_u8(bytes[i][j], vcntq_u8(veorq_u8(av[i], bv[j])));
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        acc[i][j] = vpadalq_u16(acc[i][j], vpaddlq_u8(bytes[i][j]));
        bytes[i][j] = vdupq_n_u8(0);
      }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      std::int64_t total = vaddvq_u32(acc[i][j]);
      for (std::int64_t w = full * 4; w < words; ++w)
        total += __builtin_popcount(a[i * lda + w] ^ b[j * ldb + w]);
      p[i * ldp + j] = static_cast<std::int32_t>(total);
    }
}

}  // namespace

void PopcountGemmNeon(const TWord* a, std::int64_t lda, const TWord* b,
                      std::int64_t ldb, int m, int n, std::int64_t words,
                      std::int32_t* p, std::int64_t ldp) {
  // 2x4: 6 loads feed 8 XOR+VCNT+ADD per step; 8 byte and 8 wide
  // accumulators plus 6 operands stay within the 32 NEON registers.
  int i = 0;
  for (; i + 2 <= m; i += 2) {
    int j = 0;
    for (; j + 4 <= n; j += 4)
      Tile<2, 4>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j, ldp);
    for (; j < n; ++j)
      Tile<2, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j, ldp);
  }
  for (; i < m; ++i) {
    int j = 0;
    for (; j + 4 <= n; j += 4)
      Tile<1, 4>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j, ldp);
    for (; j < n; ++j)
      Tile<1, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j, ldp);
  }
}

std::int64_t XorPopcountRooflineNeon(const TWord* a, const TWord* b,
                                     std::int64_t words, std::int64_t iters) {
  const std::int64_t half = words / 2;
  std::int32_t p[8];
  std::int64_t total = 0;
  for (std::int64_t it = 0; it < iters; ++it) {
    Tile<2, 4>(a, half / 2, b, half / 4, half / 2, p, 4);
    for (int q = 0; q < 8; ++q) total += p[q];  // all used: no dead tile rows
  }
  volatile std::int64_t sink = total;
  (void)sink;
  return iters * 8 * (half / 2) * 32;  // binary MACs performed
}

}  // namespace core
}  // namespace tfdisc

#endif  // defined(__aarch64__)
