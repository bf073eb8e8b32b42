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

inline void BinaryDense(const BDenseArgs& args, PopcountGemmFn gemm,
                        const ParallelFor& parallel_for) {
  if (args.m == 0 || args.n == 0) return;
  const std::int64_t row_blocks =
      (args.m + kDenseRowBlock - 1) / kDenseRowBlock;
  const std::int64_t col_blocks =
      (args.n + kDenseColBlock - 1) / kDenseColBlock;
  const std::int64_t element_size =
      args.transform.kind == OutputKind::kBitpacked ? sizeof(TWord) : 4;
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
      for (std::int64_t i = 0; i < mi; ++i) {
        std::int32_t* dot = tmp.data() + i * kDenseColBlock;
        for (std::int64_t j = 0; j < nj; ++j)
          dot[j] = DotFromPopcount(args.k, dot[j]);
        char* row = static_cast<char*>(args.out) +
                    (i0 + i) * args.out_stride * element_size;
        args.transform.WriteRow(dot, j0, nj, row);
      }
    }
  });
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BDENSE_H_
