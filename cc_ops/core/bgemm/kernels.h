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

#if defined(__SSE2__)
#include <emmintrin.h>  // baseline on x86-64: the operand preparation below
#endif

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

// The transposed kernel on operands prepared once in its nibble form
// (issue 13, "nibble tables"). popcount(x ^ y) is the sum over the 4-bit
// nibbles of x and y of popcount(nx ^ ny), and for a fixed nibble nx that
// is a 16-entry table T_nx[ny]. The tables of two rows share one register
// (one per 128-bit lane), so one vpshufb looks up 16 columns' nibbles for
// both rows and one byte add accumulates them: 2 vector ops per 128 binary
// MACs (the lookup on lo/hi-split words took 3). The operand forms (bytes
// in memory order, i.e. little-endian words, as on x86-64 where the only
// such kernel runs):
//   * rows (SplitRows): for each pair of rows (2r, 2r + 1), for each
//     nibble step s (byte t = s / 2 of the packed row, its low nibble for
//     even s, its high nibble for odd s), the uint16 byte offset
//     32 * (nibble of row 2r | nibble of row 2r + 1 << 4) of that pair's
//     table; an odd last row is paired with a row of zeros. 8 steps per
//     word, (m + 1) / 2 * 8 * words entries.
//   * columns (SplitIntoPanels): panels of kSplitPanelCols = 64 columns,
//     panel q as [8 * words steps][64] bytes, the step's nibble of each
//     column (columns past n are zero).
// Same result as PopcountGemmTransposedFn on the unprepared operands. The
// kernel reads whole panels (ceil(n / 64)). Callers that reuse operands
// (the conv driver: one filter for every pixel block, one patch block for
// every channel block; the dense driver: one weight block for every row)
// prepare them once. Null when the ISA has no such kernel.
using PopcountGemmTransposedSplitFn = void (*)(const std::uint16_t* rows,
                                               const std::uint8_t* panels,
                                               int m, int n,
                                               std::int64_t words,
                                               std::int32_t* p,
                                               std::int64_t ldp);

constexpr std::int64_t kSplitPanelCols = 64;
constexpr std::int64_t kSplitStepsPerWord = 2 * sizeof(TWord);

// Entries of SplitRows' output for m rows of `words` words.
inline std::int64_t SplitRowsSize(std::int64_t m, std::int64_t words) {
  return (m + 1) / 2 * kSplitStepsPerWord * words;
}

// Rows i = 0..m-1 of a (row i at a + i * lda) in the kernel's row form.
inline void SplitRows(const TWord* a, std::int64_t lda, std::int64_t m,
                      std::int64_t words, std::uint16_t* out) {
  const std::int64_t bytes = words * static_cast<std::int64_t>(sizeof(TWord));
  for (std::int64_t r = 0; r < m; r += 2) {
    const auto* x0 = reinterpret_cast<const std::uint8_t*>(a + r * lda);
    std::uint16_t* o = out + (r / 2) * 2 * bytes;
    if (r + 1 < m) {
      const auto* x1 = reinterpret_cast<const std::uint8_t*>(a + (r + 1) * lda);
      std::int64_t t = 0;
#if defined(__SSE2__)
      // 16 bytes of each row -> 32 steps: the even steps' index bytes
      // (low nibbles) and the odd ones' (high nibbles), interleaved, then
      // widened to uint16 offsets (x 32).
      const __m128i low = _mm_set1_epi8(0x0f), zero = _mm_setzero_si128();
      for (; t + 16 <= bytes; t += 16) {
        const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x0 + t));
        const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x1 + t));
        const __m128i even = _mm_or_si128(_mm_and_si128(v0, low),
                                          _mm_slli_epi16(_mm_and_si128(v1, low), 4));
        const __m128i odd = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(v0, 4), low),
                                         _mm_andnot_si128(low, v1));
        const __m128i steps[2] = {_mm_unpacklo_epi8(even, odd), _mm_unpackhi_epi8(even, odd)};
        for (int h = 0; h < 2; ++h) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * t + 16 * h),
                           _mm_slli_epi16(_mm_unpacklo_epi8(steps[h], zero), 5));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * t + 16 * h + 8),
                           _mm_slli_epi16(_mm_unpackhi_epi8(steps[h], zero), 5));
        }
      }
#endif
      for (; t < bytes; ++t) {
        const unsigned b0 = x0[t], b1 = x1[t];
        o[2 * t] = static_cast<std::uint16_t>(((b0 & 15u) | (b1 & 15u) << 4) << 5);
        o[2 * t + 1] = static_cast<std::uint16_t>(((b0 >> 4) | (b1 & 0xf0u)) << 5);
      }
    } else {
      for (std::int64_t t = 0; t < bytes; ++t) {
        const unsigned b0 = x0[t];
        o[2 * t] = static_cast<std::uint16_t>((b0 & 15u) << 5);
        o[2 * t + 1] = static_cast<std::uint16_t>((b0 >> 4) << 5);
      }
    }
  }
}

// Bytes of SplitIntoPanels' output for n columns of `words` words.
inline std::int64_t SplitPanelsSize(std::int64_t n, std::int64_t words) {
  return (n + kSplitPanelCols - 1) / kSplitPanelCols * kSplitPanelCols *
         kSplitStepsPerWord * words;
}

// Columns j = 0..n-1 of b (word w of column j at b[j * col_stride +
// w * word_stride]) in the kernel's panels.
inline void SplitIntoPanels(const TWord* b, std::int64_t col_stride,
                            std::int64_t word_stride, std::int64_t n,
                            std::int64_t words, std::uint8_t* out) {
  constexpr std::int64_t kCols = kSplitPanelCols;
  const std::int64_t panels = (n + kCols - 1) / kCols;
  for (std::int64_t q = 0; q < panels; ++q) {
    const std::int64_t j0 = q * kCols;
    const std::int64_t nj = n - j0 < kCols ? n - j0 : kCols;
    std::uint8_t* panel = out + q * kCols * kSplitStepsPerWord * words;
    std::int64_t w0 = 0;
#if defined(__SSE2__)
    // Row-major b (a column's words contiguous: dense weights), whole
    // panels: 4 words of 16 columns at a time, their 16 x 16 bytes
    // transposed (four rounds of unpacking rows i and i + 8), so that each
    // vector holds one byte of 16 columns; its nibbles are two steps.
    if (word_stride == 1 && nj == kCols) {
      const __m128i low = _mm_set1_epi8(0x0f);
      for (; w0 + 4 <= words; w0 += 4) {
        for (std::int64_t c0 = 0; c0 < kCols; c0 += 16) {
          __m128i x[16], y[16];
          for (int i = 0; i < 16; ++i)
            x[i] = _mm_loadu_si128(
                reinterpret_cast<const __m128i*>(b + (j0 + c0 + i) * col_stride + w0));
          for (int round = 0; round < 4; ++round) {
            for (int i = 0; i < 8; ++i) {
              y[2 * i] = _mm_unpacklo_epi8(x[i], x[i + 8]);
              y[2 * i + 1] = _mm_unpackhi_epi8(x[i], x[i + 8]);
            }
            for (int i = 0; i < 16; ++i) x[i] = y[i];
          }
          // x[t]: byte t of the 4 words (word w0 + t / 4) of the 16 columns.
          std::uint8_t* o = panel + w0 * kSplitStepsPerWord * kCols + c0;
          for (int t = 0; t < 16; ++t) {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(o + (2 * t) * kCols),
                             _mm_and_si128(x[t], low));
            _mm_storeu_si128(reinterpret_cast<__m128i*>(o + (2 * t + 1) * kCols),
                             _mm_and_si128(_mm_srli_epi16(x[t], 4), low));
          }
        }
      }
    }
#endif
    for (std::int64_t w = w0; w < words; ++w) {
      std::uint8_t* o = panel + w * kSplitStepsPerWord * kCols;
      const TWord* src = b + j0 * col_stride + w * word_stride;
      for (std::int64_t c = 0; c < nj; ++c) {
        const TWord v = src[c * col_stride];
        for (std::int64_t k = 0; k < static_cast<std::int64_t>(sizeof(TWord)); ++k) {
          const unsigned byte = (v >> (8 * k)) & 0xffu;
          o[(2 * k) * kCols + c] = static_cast<std::uint8_t>(byte & 15u);
          o[(2 * k + 1) * kCols + c] = static_cast<std::uint8_t>(byte >> 4);
        }
      }
      for (std::int64_t s = 0; s < kSplitStepsPerWord; ++s)
        for (std::int64_t c = nj; c < kCols; ++c) o[s * kCols + c] = 0;
    }
  }
}

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
void PopcountGemmTransposedSplitAvx2(const std::uint16_t* rows,
                                     const std::uint8_t* panels, int m, int n,
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
