// A full-precision 2-D convolution whose output is consumed only as sign
// bits: the first layer of a BNN (its batch norm folded into kernel and
// bias) feeding a binary layer.
//
// TensorFlow would write the float output (16 MiB for alexnet_cifar's
// 32x32x128 at batch 32), and the next layer would read it back to pack its
// signs. Here each block of output pixels is gathered (im2col with zero
// padding) and FloatGemmBitsFn computes the float values in registers and
// writes only their sign bits (PacksAsMinusOne).
//
// Rounding: sums run in filter order (ky, kx, c) from the bias, the AVX2
// kernel with fused multiply-adds; TensorFlow's (oneDNN's) order is its
// own, so a value within rounding of zero can take the other sign (the same
// caveat as folding the batch norm, see the converter's "Exactness").
#ifndef TFDISC_CC_OPS_CORE_BCONV2D_FLOAT_INPUT_H_
#define TFDISC_CC_OPS_CORE_BCONV2D_FLOAT_INPUT_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/parallel.h"
#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

// A multiple of the AVX2 kernel's 6-row tile.
constexpr std::int64_t kFloatConvPixelBlock = 48;

// The filter [filter_h][filter_w][channels][out_channels] (HWIO, i.e. rows
// t = (ky * filter_w + kx) * channels + c) and bias [out_channels] with
// the columns padded with zeros to a multiple of kFloatGemmCols.
struct PaddedFloatFilter {
  std::int64_t cols = 0;
  std::vector<float> w, bias;
};

inline void PadFloatFilter(const float* filter, const float* bias,
                           std::int64_t rows, std::int64_t out_channels,
                           PaddedFloatFilter* padded) {
  const std::int64_t cols =
      (out_channels + kFloatGemmCols - 1) / kFloatGemmCols * kFloatGemmCols;
  padded->cols = cols;
  padded->w.assign(rows * cols, 0.0f);
  padded->bias.assign(cols, 0.0f);
  for (std::int64_t t = 0; t < rows; ++t)
    std::copy(filter + t * out_channels, filter + (t + 1) * out_channels,
              padded->w.begin() + t * cols);
  if (bias != nullptr) std::copy(bias, bias + out_channels, padded->bias.begin());
}

// input [batch][in_h][in_w][channels] floats; p's geometry filled by
// ComputeConvGeometry (pad_value is ignored: out-of-image taps are 0).
// out: `out_words` 32-bit words per output pixel (>= PackedWords32 of
// out_channels; the rest are zeroed).
inline void FloatConv2DBits(const BConv2DParams& p, const float* input,
                            const PaddedFloatFilter& filter, FloatGemmBitsFn gemm,
                            TWord* out, std::int64_t out_words,
                            const ParallelFor& parallel_for) {
  const std::int64_t pixels = p.batch * p.out_h * p.out_w;
  if (pixels == 0 || p.out_channels == 0) return;
  const std::int64_t row = p.filter_h * p.filter_w * p.channels;
  const std::int64_t cols = filter.cols;
  const std::int64_t blocks =
      (pixels + kFloatConvPixelBlock - 1) / kFloatConvPixelBlock;
  const std::int64_t cost =
      std::min(kFloatConvPixelBlock, pixels) * (row * cols / 4 + row + cols);
  parallel_for(blocks, cost, [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> patches(kFloatConvPixelBlock * row);
    const std::vector<float> zeros(p.channels, 0.0f);  // out-of-image taps
    for (std::int64_t blk = begin; blk < end; ++blk) {
      const std::int64_t q0 = blk * kFloatConvPixelBlock;
      const std::int64_t nq = std::min(kFloatConvPixelBlock, pixels - q0);
      std::int64_t b = q0 / (p.out_h * p.out_w);
      std::int64_t oy = q0 / p.out_w % p.out_h;
      std::int64_t ox = q0 % p.out_w;
      for (std::int64_t q = 0; q < nq; ++q) {
        GatherPatch(p, input, p.channels, b, oy, ox, zeros.data(),
                    patches.data() + q * row, [](std::int64_t) {});
        if (++ox == p.out_w) {  // next output pixel
          ox = 0;
          if (++oy == p.out_h) {
            oy = 0;
            ++b;
          }
        }
      }
      // The kernel writes the first cols / 16 half-words of each row; the
      // rest (a 64-bit word's high half) stays zero.
      std::fill(out + q0 * out_words, out + (q0 + nq) * out_words, TWord{0});
      gemm(patches.data(), nq, row, filter.w.data(), filter.bias.data(), cols,
           out + q0 * out_words, out_words);
    }
  });
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BCONV2D_FLOAT_INPUT_H_
