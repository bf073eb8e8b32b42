// Popcount-GEMM micro-kernels, one per instruction set, plus run-time
// selection.
//
// Every kernel computes, for i < m and j < n,
//     p[i * ldp + j] = popcount(a_i XOR b_j)
// where a_i = a + i * lda and b_j = b + j * ldb are rows of `words` 32-bit
// words. The +-1 dot product is then K - 2 * p (see core/types.h).
//
// Each ISA kernel lives in its own translation unit (portable.cc, avx2.cc,
// avx512.cc, avx512bw.cc, neon.cc). The x86 ones enable their instruction set
// with `#pragma GCC target` around their own code only, so the library loads
// and runs on any x86-64 CPU; SelectKernel() only returns a kernel whose
// features the CPU reports. Each file compiles to nothing on the other
// architecture (#if defined(__x86_64__) / __aarch64__).
#ifndef TFDISC_CC_OPS_CORE_BGEMM_KERNELS_H_
#define TFDISC_CC_OPS_CORE_BGEMM_KERNELS_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

using PopcountGemmFn = void (*)(const TWord* a, std::int64_t lda,
                                const TWord* b, std::int64_t ldb, int m, int n,
                                std::int64_t words, std::int32_t* p,
                                std::int64_t ldp);

// "Vertical" popcount-GEMM for short rows: the same result as
// PopcountGemmFn, but with b given transposed, bt[w * ldbt + j] = b_j[w],
// where ldbt is a multiple of 64 and columns n..ldbt-1 are readable (zero).
// Each 32-bit word of a_i is broadcast against 16 (AVX-512) or 8 (AVX2)
// columns at once, so the vector lanes run over output channels: no
// horizontal reduction and no partial-vector tail along K, which is what
// limits the row-major kernels when rows are only a few vectors long (3x3
// convolutions over 128 channels: 36 words). Null when the ISA has no such
// kernel.
using PopcountGemmTransposedFn = void (*)(const TWord* a, std::int64_t lda,
                                          const TWord* bt, std::int64_t ldbt,
                                          int m, int n, std::int64_t words,
                                          std::int32_t* p, std::int64_t ldp);

// The transposed kernel on nibble-split operands (see SplitNibbleWords): row
// i of a as alo/ahi + i * lda; the columns of b in panels of
// kSplitPanelCols (SplitIntoPanels): panel q holds columns 16q ..
// 16q + 15 as [words][16] at blo/bhi + q * 16 * words, so the 16 columns a
// register tile reads are one contiguous block (a word-major layout with a
// row stride of 64-512 columns mapped a tile's words onto few L1 sets; the
// panels ran 1.00-1.15x that layout for rows of 36-144 words, one thread).
// The kernel reads whole panels (ceil(n / 16)). The same result as
// PopcountGemmTransposedFn on the unsplit operands. Callers that reuse
// operands (the conv driver: one filter for every pixel block, one patch
// block for every channel block; the dense driver: one weight block for
// every row) split them once. Null when the ISA has no such kernel.
using PopcountGemmTransposedSplitFn = void (*)(
    const TWord* alo, const TWord* ahi, std::int64_t lda, const TWord* blo,
    const TWord* bhi, int m, int n, std::int64_t words, std::int32_t* p,
    std::int64_t ldp);

constexpr std::int64_t kSplitPanelCols = 16;

// Nibble split: lo[w] = x[w] & 0x0f0f0f0f, hi[w] = (x[w] >> 4) & 0x0f0f0f0f,
// so popcount(x ^ y) = popcount(lo(x) ^ lo(y)) + popcount(hi(x) ^ hi(y))
// with every byte of each XOR a 4-bit lookup index.
inline void SplitNibbleWords(const TWord* x, std::int64_t words, TWord* lo,
                             TWord* hi) {
  for (std::int64_t w = 0; w < words; ++w) {
    lo[w] = x[w] & 0x0f0f0f0fu;
    hi[w] = (x[w] >> 4) & 0x0f0f0f0fu;
  }
}

// Columns [0, n) of b, word w of column j at b[j * col_stride + w *
// word_stride], split into the panels of PopcountGemmTransposedSplitFn:
// ceil(n / 16) panels of 16 * words words each in lo and hi, columns past n
// zero. From the transposed layout (bt[w * ldbt + j]): col_stride 1,
// word_stride ldbt; from rows (b_j = b + j * ldb): col_stride ldb,
// word_stride 1. The stores are contiguous either way (column-major stores
// into the panels ran 2.7 ns per word in the dense driver, as slow as the
// kernel's work at 32 rows).
inline void SplitIntoPanels(const TWord* b, std::int64_t col_stride,
                            std::int64_t word_stride, std::int64_t n,
                            std::int64_t words, TWord* lo, TWord* hi) {
  const std::int64_t panels = (n + kSplitPanelCols - 1) / kSplitPanelCols;
  for (std::int64_t q = 0; q < panels; ++q) {
    const std::int64_t j0 = q * kSplitPanelCols;
    const std::int64_t nj = n - j0 < kSplitPanelCols ? n - j0 : kSplitPanelCols;
    for (std::int64_t w = 0; w < words; ++w) {
      const TWord* src = b + j0 * col_stride + w * word_stride;
      TWord* l = lo + (q * words + w) * kSplitPanelCols;
      TWord* h = hi + (q * words + w) * kSplitPanelCols;
      for (std::int64_t c = 0; c < nj; ++c) {
        const TWord v = src[c * col_stride];
        l[c] = v & 0x0f0f0f0fu;
        h[c] = (v >> 4) & 0x0f0f0f0fu;
      }
      for (std::int64_t c = nj; c < kSplitPanelCols; ++c) l[c] = h[c] = 0;
    }
  }
}

// Packs `k` float values into PackedWords32(k, 32) words
// (bit = PacksAsMinusOne(x), core/types.h).
using BitpackFloatFn = void (*)(const float* x, std::int64_t k, TWord* out);

// Sign bits of the float rows of a full-precision convolution whose output
// is only packed (core/bconv2d/float_input.h): for i < m, j < n, with
//   v = bias[j] + sum_{t < k} a[i * k + t] * w[t * n + j]
// summed in t order (the AVX2 kernel with fused multiply-adds, the portable
// one with a multiply and an add, so their last bits can differ), bit j of
// row i (word j / 32, bit j % 32, at out + i * ldo) is PacksAsMinusOne(v).
// n is a multiple of kFloatGemmCols (w and bias zero-padded: padding
// columns give v = 0, bit 0); whole 16-bit halves of words are written.
// Stores 16 sign bits as bits [16 * (j / 16), +16) of a packed row (the
// half-word j / 16 of little-endian 32-bit words).
inline void StoreBits16(TWord* row, std::int64_t j, std::uint16_t bits) {
  std::memcpy(reinterpret_cast<char*>(row) + 2 * (j / 16), &bits, 2);
}

using FloatGemmBitsFn = void (*)(const float* a, std::int64_t m, std::int64_t k,
                                 const float* w, const float* bias, std::int64_t n,
                                 TWord* out, std::int64_t ldo);
constexpr std::int64_t kFloatGemmCols = 16;

enum class KernelType { kReference, kPortable, kAvx2, kAvx512Bw, kAvx512, kNeon };

// Straightforward loops; the oracle the optimized kernels are tested against.
void PopcountGemmReference(const TWord* a, std::int64_t lda, const TWord* b,
                           std::int64_t ldb, int m, int n, std::int64_t words,
                           std::int32_t* p, std::int64_t ldp);
// Register-tiled plain C++ (SWAR popcount), no CPU feature required.
void PopcountGemmPortable(const TWord* a, std::int64_t lda, const TWord* b,
                          std::int64_t ldb, int m, int n, std::int64_t words,
                          std::int32_t* p, std::int64_t ldp);
// AVX2: nibble-lookup popcount (vpshufb) with byte accumulators.
void PopcountGemmAvx2(const TWord* a, std::int64_t lda, const TWord* b,
                      std::int64_t ldb, int m, int n, std::int64_t words,
                      std::int32_t* p, std::int64_t ldp);
// AVX-512F + BW without VPOPCNTDQ: the AVX2 method on 512-bit vectors.
void PopcountGemmAvx512Bw(const TWord* a, std::int64_t lda, const TWord* b,
                          std::int64_t ldb, int m, int n, std::int64_t words,
                          std::int32_t* p, std::int64_t ldp);
// AVX-512F + VPOPCNTDQ: vpopcntq on 512-bit vectors, 4x4 register tile.
void PopcountGemmAvx512(const TWord* a, std::int64_t lda, const TWord* b,
                        std::int64_t ldb, int m, int n, std::int64_t words,
                        std::int32_t* p, std::int64_t ldp);

// AArch64 NEON: vcntq_u8 byte popcounts with pairwise-add widening.
void PopcountGemmNeon(const TWord* a, std::int64_t lda, const TWord* b,
                      std::int64_t ldb, int m, int n, std::int64_t words,
                      std::int32_t* p, std::int64_t ldp);

// Transposed kernels (PopcountGemmTransposedFn). The AVX2 one also serves
// kAvx512Bw (AVX-512BW CPUs implement AVX2).
void PopcountGemmTransposedAvx2(const TWord* a, std::int64_t lda,
                                const TWord* bt, std::int64_t ldbt, int m,
                                int n, std::int64_t words, std::int32_t* p,
                                std::int64_t ldp);
void PopcountGemmTransposedSplitAvx2(const TWord* alo, const TWord* ahi,
                                     std::int64_t lda, const TWord* blo,
                                     const TWord* bhi, int m, int n,
                                     std::int64_t words, std::int32_t* p,
                                     std::int64_t ldp);
void PopcountGemmTransposedAvx512(const TWord* a, std::int64_t lda,
                                  const TWord* bt, std::int64_t ldbt, int m,
                                  int n, std::int64_t words, std::int32_t* p,
                                  std::int64_t ldp);

void BitpackFloatPortable(const float* x, std::int64_t k, TWord* out);
void FloatGemmBitsPortable(const float* a, std::int64_t m, std::int64_t k,
                           const float* w, const float* bias, std::int64_t n,
                           TWord* out, std::int64_t ldo);
void BitpackFloatAvx2(const float* x, std::int64_t k, TWord* out);
void BitpackFloatAvx512(const float* x, std::int64_t k, TWord* out);

// XOR+popcount roofline: `iters` passes of the kernel's fastest register
// tile over L1-resident data made from rows a, b of `words` words (a
// multiple of 64), so that the loop is bound by XOR/popcount/add
// throughput, not by memory. Returns the number of binary
// multiply-accumulates performed (the benchmark divides by time); the work
// of one pass differs between kernels.
std::int64_t XorPopcountRoofline(KernelType type, const TWord* a,
                                 const TWord* b, std::int64_t words,
                                 std::int64_t iters);

// Whether the running CPU can execute kernel `type`.
bool KernelSupported(KernelType type);

// The kernel to use:
// TFDISC_OPS_KERNEL=auto|reference|portable|avx2|avx512bw|avx512|neon
// if set (an unsupported or unknown request is an error reported through
// `error`), else the fastest supported one. Evaluated on every call so that
// tests can switch kernels by changing the environment variable.
bool SelectKernel(KernelType* type, std::string* error);

PopcountGemmFn GetPopcountGemm(KernelType type);
PopcountGemmTransposedFn GetPopcountGemmTransposed(KernelType type);
PopcountGemmTransposedSplitFn GetPopcountGemmTransposedSplit(KernelType type);
BitpackFloatFn GetBitpackFloat(KernelType type);
// The x86 kernels (avx2, avx512bw, avx512) run the AVX2 + FMA float rows
// when the CPU has FMA; everything else the portable loop.
FloatGemmBitsFn GetFloatGemmBits(KernelType type);
const char* KernelName(KernelType type);

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BGEMM_KERNELS_H_
