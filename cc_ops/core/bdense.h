// Binary fully-connected layer on packed operands:
//     dot[i][j] = k - 2 * popcount(x_i XOR w_j)
// followed by the output transform (core/output_transform.h).
#ifndef TFDISC_CC_OPS_CORE_BDENSE_H_
#define TFDISC_CC_OPS_CORE_BDENSE_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/output_transform.h"
#include "cc_ops/core/parallel.h"

namespace tfdisc {
namespace core {

struct BDenseArgs {
  const TWord* x = nullptr;  // [m, words]
  const TWord* w = nullptr;  // [n, words] (one packed row per output unit)
  std::int64_t m = 0, n = 0, words = 0;
  std::int64_t k = 0;  // real (unpadded) bits per row, <= kMaxDotBits
  OutputTransform transform;
  void* out = nullptr;  // [m, out_stride] of int32 / float / TWord
  std::int64_t out_stride = 0;  // in output elements (TWord for bitpacked)
};

// Row and column block sizes of one unit of parallel work. The column block
// is a multiple of 64 so bit-packed output blocks cover whole 32/64-bit
// words.
constexpr std::int64_t kDenseRowBlock = 32;
constexpr std::int64_t kDenseColBlock = 64;
static_assert(kDenseColBlock == kSplitPanelCols,
              "a dense column block is one panel of the table kernel");

// The popcount kernels BinaryDense may use: `gemm` always, and the
// nibble-table transposed kernel (null: none) for batches of at least
// kDenseTransposedMinRows rows of at most kDenseTransposedMaxWords words. Each
// unit of work then is one block of kDenseColBlock weight rows, brought
// into the kernel's panel form once in a per-thread buffer and run against
// every input row (in its row-pair form, made once per call).
//
// Measured with one thread on a Xeon with AVX-512 VPOPCNTDQ (family 6,
// model 167), N = 4096 outputs, median of 31, against the kernel's own
// row-major tile: avx2 (2x2 lookup) at 4096 input bits 0.83 / 1.17 / 1.34 /
// 1.50 / 1.68x for 4 / 8 / 12 / 16 / 32 rows, at 64 rows 1.74 / 1.66 /
// 1.61 / 1.58 / 1.58x for 512 / 1024 / 2048 / 4096 / 8192 words, 8 rows of
// 25 words 2.20x but of 512 words 1.02x; avx512bw (512-bit lookup tile,
// which the lo/hi-split kernel before did not beat) 0.95 / 1.14 / 1.34 /
// 1.46x for 8 / 16 / 32 / 256 rows, 1.26 / 1.20x for 64 rows of 512 / 2048
// words. In the op (two threads, graph loop, 4096x4096 weights, emulated
// AVX2, two alternations): avx2 8 rows no gain (274-279 -> 275-333 us),
// 16 rows 1.2x, 24 rows 1.25x; avx512bw 16 / 24 rows 1.04 / 1.1x; hence
// 16 rows for both. The per-thread panel buffer is 64 * 8 bytes per word
// (4 MiB at kDenseTransposedMaxWords).
struct DenseKernels {
  PopcountGemmFn gemm = nullptr;
  PopcountGemmTransposedSplitFn gemm_ts = nullptr;
};

inline DenseKernels DenseKernelsFor(KernelType type) {
  DenseKernels k;
  k.gemm = GetPopcountGemm(type);
  k.gemm_ts = GetPopcountGemmTransposedSplit(type);
  return k;
}

constexpr std::int64_t kDenseTransposedMinRows = 16;
constexpr std::int64_t kDenseTransposedMaxWords = 8192;

inline bool DenseUsesTransposed(const DenseKernels& kernels, std::int64_t m,
                                std::int64_t words) {
  return kernels.gemm_ts != nullptr && m >= kDenseTransposedMinRows &&
         words <= kDenseTransposedMaxWords;
}

// Writes dot products tmp[i * kDenseColBlock + j] (popcounts on entry) of
// rows i0.. and columns j0.. through the output transform.
inline void WriteDenseBlock(const BDenseArgs& args, std::int64_t i0,
                            std::int64_t mi, std::int64_t j0, std::int64_t nj,
                            std::int32_t* tmp) {
  const std::int64_t element_size =
      args.transform.kind == OutputKind::kBitpacked ? sizeof(TWord) : 4;
  for (std::int64_t i = 0; i < mi; ++i) {
    std::int32_t* dot = tmp + i * kDenseColBlock;
    for (std::int64_t j = 0; j < nj; ++j) dot[j] = DotFromPopcount(args.k, dot[j]);
    char* row = static_cast<char*>(args.out) +
                (i0 + i) * args.out_stride * element_size;
    args.transform.WriteRow(dot, j0, nj, row);
  }
}

// BinaryDense on the nibble-table transposed kernel (any m; BinaryDense calls it
// where DenseUsesTransposed).
inline void BinaryDenseTransposed(const BDenseArgs& args,
                                  PopcountGemmTransposedSplitFn gemm_ts,
                                  const ParallelFor& parallel_for) {
  if (args.m == 0 || args.n == 0) return;
  const std::int64_t words = args.words;
  // The input rows in the table kernel's row form, once per call.
  std::vector<std::uint16_t> x_rows(
      static_cast<std::size_t>(SplitRowsSize(args.m, words)));
  SplitRows(args.x, words, args.m, words, x_rows.data());
  const std::int64_t col_blocks =
      (args.n + kDenseColBlock - 1) / kDenseColBlock;
  const std::int64_t cost = args.m * kDenseColBlock * (words / 8 + 4);
  parallel_for(col_blocks, cost, [&](std::int64_t begin, std::int64_t end) {
    // The weight block (kDenseColBlock = one panel) in the table kernel's
    // column form.
    std::vector<std::uint8_t> panel(
        static_cast<std::size_t>(SplitPanelsSize(kDenseColBlock, words)));
    std::vector<std::int32_t> tmp(kDenseRowBlock * kDenseColBlock);
    for (std::int64_t cb = begin; cb < end; ++cb) {
      const std::int64_t j0 = cb * kDenseColBlock;
      const std::int64_t nj = std::min(kDenseColBlock, args.n - j0);
      // From the weight rows straight into the panel (zero-padded past nj).
      SplitIntoPanels(args.w + j0 * words, words, 1, nj, words, panel.data());
      for (std::int64_t i0 = 0; i0 < args.m; i0 += kDenseRowBlock) {
        const std::int64_t mi = std::min(kDenseRowBlock, args.m - i0);
        // i0 is even: its row pair starts at i0 / 2.
        gemm_ts(x_rows.data() + SplitRowsSize(i0, words), panel.data(),
                static_cast<int>(mi), static_cast<int>(nj), words, tmp.data(),
                kDenseColBlock);
        WriteDenseBlock(args, i0, mi, j0, nj, tmp.data());
      }
    }
  });
}

inline void BinaryDense(const BDenseArgs& args, const DenseKernels& kernels,
                        const ParallelFor& parallel_for) {
  if (args.m == 0 || args.n == 0) return;
  if (DenseUsesTransposed(kernels, args.m, args.words)) {
    BinaryDenseTransposed(args, kernels.gemm_ts, parallel_for);
    return;
  }
  const PopcountGemmFn gemm = kernels.gemm;
  const std::int64_t row_blocks =
      (args.m + kDenseRowBlock - 1) / kDenseRowBlock;
  const std::int64_t col_blocks =
      (args.n + kDenseColBlock - 1) / kDenseColBlock;
  // Rough cycles per block (tensorflow::Shard splits work only when the total
  // is worth waking another thread): a SIMD kernel handles about eight
  // 32-bit word pairs per cycle, plus the output transform.
  const std::int64_t rows = std::min(kDenseRowBlock, args.m);
  const std::int64_t cols = std::min(kDenseColBlock, args.n);
  const std::int64_t cost = rows * cols * (args.words / 8 + 4);
  parallel_for(row_blocks * col_blocks, cost, [&](std::int64_t begin,
                                                  std::int64_t end) {
    // Rows of one block only (one row at batch 1: 256 bytes to clear per
    // call instead of 8 KiB; the spinning pool calls this per small chunk).
    std::vector<std::int32_t> tmp(std::min(kDenseRowBlock, args.m) * kDenseColBlock);
    for (std::int64_t task = begin; task < end; ++task) {
      // Column-block major: consecutive tasks of one thread reuse the same
      // weight block (kept in L1/L2) across all row blocks, and the packed
      // input (batch x words, small) stays in L2.
      const std::int64_t cb = task / row_blocks, rb = task % row_blocks;
      const std::int64_t i0 = rb * kDenseRowBlock, j0 = cb * kDenseColBlock;
      const std::int64_t mi = std::min(kDenseRowBlock, args.m - i0);
      const std::int64_t nj = std::min(kDenseColBlock, args.n - j0);
      gemm(args.x + i0 * args.words, args.words, args.w + j0 * args.words,
           args.words, static_cast<int>(mi), static_cast<int>(nj), args.words,
           tmp.data(), kDenseColBlock);
      WriteDenseBlock(args, i0, mi, j0, nj, tmp.data());
    }
  });
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BDENSE_H_
