// Optimized binary convolution: packed im2col + popcount-GEMM.
//
// Work is split into blocks of kConvPixelBlock output pixels (over batch,
// rows and columns together), and for small images also into groups of
// output channels. For each block the packed patches are gathered
// into a [pixels, taps * words] buffer (a 1x1, stride-1 convolution reads the
// input in place), multiplied against the OHWI filter with the selected
// popcount kernel, corrected for zero padding, and written through the
// output transform.
//
// Padding. Out-of-image taps are gathered as the packed pattern of the pad
// value: all-zero words for +1, the first C bits set for -1 (padding bits
// stay zero). For pad value 0 (TensorFlow's zero padding, larq's default) a
// zero pixel has no +-1 code; it is gathered as +1 and the error is removed
// afterwards: a +1 pixel contributes
//     S[o][t] = sum_c w[o, t, c] = C - 2 * popcount(w[o, t])
// to channel o through tap t, while a zero pixel contributes nothing, so
//     dot_true[o] = dot_gathered[o] - sum_{t out of image} S[o][t].
// S is computed once per call (out_channels * taps popcounts).
#ifndef TFDISC_CC_OPS_CORE_BCONV2D_OPTIMIZED_H_
#define TFDISC_CC_OPS_CORE_BCONV2D_OPTIMIZED_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/output_transform.h"
#include "cc_ops/core/parallel.h"
#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

constexpr std::int64_t kConvPixelBlock = 32;

constexpr std::int64_t kConvChannelBlock = 64;  // multiple of 64, see dense
static_assert(kConvChannelBlock % kSplitPanelCols == 0,
              "channel blocks start at a table-kernel panel");
// Below this many pixel blocks, work is also split over output channels.
constexpr std::int64_t kConvMinPixelBlocks = 8;

// Filter rows [out_channels][row_words] -> [row_words][ldbt] with
// ldbt = out_channels rounded up to 64 and zero padding: the layout of the
// transposed kernel. Returns ldbt.
inline std::int64_t TransposeFilter(const TWord* filter, std::int64_t out_channels,
                                    std::int64_t row_words, std::vector<TWord>* out) {
  const std::int64_t ldbt = (out_channels + 63) / 64 * 64;
  out->assign(row_words * ldbt, 0);
  for (std::int64_t o = 0; o < out_channels; ++o)
    for (std::int64_t w = 0; w < row_words; ++w)
      (*out)[w * ldbt + o] = filter[o * row_words + w];
  return ldbt;
}

// The popcount kernels the driver may use: `gemm` always; the transposed
// kernel where UsesTransposed says so (null: row-major only); its
// nibble-table form (null: none), which the driver feeds with operands
// prepared once, the filter per filter and the patches per pixel block,
// instead of once per call.
struct ConvKernels {
  PopcountGemmFn gemm = nullptr;
  PopcountGemmTransposedFn gemm_t = nullptr;
  PopcountGemmTransposedSplitFn gemm_ts = nullptr;
};

inline ConvKernels ConvKernelsFor(KernelType type) {
  ConvKernels k;
  k.gemm = GetPopcountGemm(type);
  k.gemm_t = GetPopcountGemmTransposed(type);
  k.gemm_ts = GetPopcountGemmTransposedSplit(type);
  return k;
}

// The filter in the transposed kernels' layout (TransposeFilter), and for a
// kernel with a nibble-table form also its panels (SplitIntoPanels): built
// once per filter (the TF op keeps it across calls).
struct TransposedFilter {
  // The filter's shape: the copy serves only a conv of this geometry.
  std::int64_t out_channels = 0;
  std::int64_t row_words = 0;
  std::int64_t ldbt = 0;
  std::vector<TWord> t;       // [row_words][ldbt]
  std::vector<std::uint8_t> panels;  // t in the table kernel's panels
                                     // (SplitIntoPanels); empty when not
                                     // built for split
};

inline void BuildTransposedFilter(const TWord* filter, std::int64_t out_channels,
                                  std::int64_t row_words, bool split,
                                  TransposedFilter* out) {
  out->out_channels = out_channels;
  out->row_words = row_words;
  out->ldbt = TransposeFilter(filter, out_channels, row_words, &out->t);
  out->panels.clear();
  if (split) {
    out->panels.resize(static_cast<std::size_t>(SplitPanelsSize(out_channels, row_words)));
    SplitIntoPanels(out->t.data(), 1, out->ldbt, out_channels, row_words,
                    out->panels.data());
  }
}

// Rows shorter than this use the transposed kernel when there is one.
// Measured speed-up of the transposed over the row-major path (one thread,
// whole conv driver at batch 1, 3x3 filters, one run on a Xeon with AVX-512
// VPOPCNTDQ, the AVX2 and AVX-512BW kernels forced) at 36 / 72 / 144 / 288 /
// 576 / 1152 words per row: avx2 1.7 / 1.25 / 1.13 / 1.05 / 0.95 / 0.47;
// avx512bw (the same AVX2 transposed kernel against its 512-bit row-major
// one) 1.6 / 1.2 / 0.90 / 0.9 / 0.78 / 0.38. Long rows presumably lose
// because a tile's 16 or 64 columns take one cache line per word of the
// row, which stops fitting L1. With 128 every kernel runs its faster path
// except that avx2 (1.05-1.13) and avx512 (1.08 at 144 words) leave a small
// gain unused between 128 and ~300 words; one threshold for all kernels
// keeps the TF op's filter cache simple.
constexpr std::int64_t kTransposedMaxWords = 128;
constexpr std::int64_t kTransposedMinPixels = 256;
// With the nibble-table kernel (ConvKernels::gemm_ts), every row length
// takes the transposed path once there are kSplitTransposedMinPixels output
// pixels (one 4-row register tile). One thread in C++, avx2, batch 1, 3x3
// filters into 512 channels, bit outputs, against the row-major path:
// 2x2 / 4x4 / 6x6 x 512 channels 1.68 / 1.71 / 1.72x, 8x8 x 1024 and x 2048
// channels 1.80 / 1.64x, 4x4 x 4096 channels (1152 words) 1.55x; one pixel
// 0.71x. In the op, emulated AVX2, two threads, in a graph loop, old and
// new rule alternating three times: 8x8x512->512 at batch 1 (64 pixels,
// 144 words) 338-355 -> 263-270 us. (With the lo/hi-split lookup kernel
// before it, the long rows needed 256 pixels: batch 1 lost there.)
constexpr std::int64_t kSplitTransposedMinPixels = 4;

// Whether the driver runs the transposed kernel on `pixels` output pixels
// with rows of `row_words` words.
inline bool UsesTransposed(const ConvKernels& k, std::int64_t row_words,
                           std::int64_t pixels) {
  if (k.gemm_t == nullptr) return false;
  if (row_words < kTransposedMaxWords) return true;
  return k.gemm_ts != nullptr && pixels >= kSplitTransposedMinPixels;
}

inline void BConv2DOptimized(const BConv2DParams& p, const TWord* input,
                             const TWord* filter,
                             const OutputTransform& transform, void* output,
                             std::int64_t out_stride,
                             const ConvKernels& kernels,
                             const ParallelFor& parallel_for,
                             std::int64_t min_transposed_pixels =
                                 kTransposedMinPixels,
                             const TransposedFilter* filter_t_given = nullptr) {
  const std::int64_t pixels = p.batch * p.out_h * p.out_w;
  if (pixels == 0 || p.out_channels == 0) return;
  const std::int64_t taps = p.filter_h * p.filter_w;
  const std::int64_t row_words = taps * p.words;
  // taps * channels <= kMaxDotBits (the op checks DotBitsWithinLimit).
  const std::int64_t k_total = taps * p.channels;

  std::vector<TWord> pad_pattern(p.words, 0);
  if (p.pad_value < 0) MinusOnesPattern(p.channels, p.words, pad_pattern.data());

  const bool has_padding =
      p.pad_top > 0 || p.pad_left > 0 ||
      (p.out_h - 1) * p.stride_h + (p.filter_h - 1) * p.dilation_h >= p.in_h + p.pad_top ||
      (p.out_w - 1) * p.stride_w + (p.filter_w - 1) * p.dilation_w >= p.in_w + p.pad_left;
  std::vector<std::int32_t> tap_sums;  // S[o][t], zero padding only
  if (p.pad_value == 0 && has_padding) {
    tap_sums.resize(p.out_channels * taps);
    for (std::int64_t o = 0; o < p.out_channels; ++o)
      for (std::int64_t t = 0; t < taps; ++t) {
        const TWord* w = filter + (o * taps + t) * p.words;
        std::int64_t pc = 0;
        for (std::int64_t i = 0; i < p.words; ++i) pc += PopcountPortable(w[i]);
        tap_sums[o * taps + t] = DotFromPopcount(p.channels, pc);
      }
  }
  const bool direct = taps == 1 && p.stride_h == 1 && p.stride_w == 1 &&
                      !has_padding;
  // Transposed filter for the vertical kernel (TransposedFilter), either
  // given by the caller (cached across calls) or built here. Building costs
  // out_channels * row_words word moves, about what 16 output pixels cost in
  // the kernel, so without a cached copy it is only done when there are many
  // pixels. A given filter without the split runs the unsplit kernel.
  TransposedFilter filter_t_local;
  const TransposedFilter* filter_t = nullptr;
  if (UsesTransposed(kernels, row_words, pixels)) {
    // A given filter built for another factorization of the same words
    // ([2, 1, 1, W] against [1, 1, 2, W]) is not used.
    if (filter_t_given != nullptr &&
        filter_t_given->out_channels == p.out_channels &&
        filter_t_given->row_words == row_words) {
      filter_t = filter_t_given;
    } else if (pixels >= min_transposed_pixels) {
      BuildTransposedFilter(filter, p.out_channels, row_words,
                            kernels.gemm_ts != nullptr, &filter_t_local);
      filter_t = &filter_t_local;
    }
  }
  const bool split = filter_t != nullptr && kernels.gemm_ts != nullptr &&
                     !filter_t->panels.empty();
  const std::int64_t element_size =
      transform.kind == OutputKind::kBitpacked ? sizeof(TWord) : 4;
  const std::int64_t blocks = (pixels + kConvPixelBlock - 1) / kConvPixelBlock;
  // Small images (batch 1, late layers: 8x8 = 2 pixel blocks) leave too few
  // pixel blocks to feed the threads; then each unit of work is a pixel
  // block x a group of kConvChannelBlock output channels, and the patch
  // gather is repeated per group (row_words words per pixel against
  // 64 * row_words word pairs of popcount: a few percent).
  const std::int64_t channel_blocks =
      (p.out_channels + kConvChannelBlock - 1) / kConvChannelBlock;
  const std::int64_t groups =
      blocks < kConvMinPixelBlocks ? channel_blocks : 1;
  const std::int64_t group_channels =
      (channel_blocks + groups - 1) / groups * kConvChannelBlock;
  // Rough cycles per unit, as in bdense.h, plus the patch gather.
  const std::int64_t cost =
      std::min(kConvPixelBlock, pixels) *
      (std::min(group_channels, p.out_channels) * (row_words / 8 + 4) + row_words);

  parallel_for(blocks * groups, cost, [&](std::int64_t begin, std::int64_t end) {
    std::vector<TWord> patches(direct ? 0 : kConvPixelBlock * row_words);
    // The block's rows (patches or, direct, input pixels) in the table
    // kernel's row form, prepared once for all its channel blocks.
    std::vector<std::uint16_t> split_rows(
        split ? static_cast<std::size_t>(SplitRowsSize(kConvPixelBlock, row_words)) : 0);
    std::vector<std::int32_t> tmp(kConvPixelBlock * kConvChannelBlock);
    // Per pixel of the block: list of out-of-image taps (zero padding only).
    std::vector<std::int64_t> oob_begin(kConvPixelBlock + 1);
    std::vector<std::int32_t> oob_taps;
    oob_taps.reserve(kConvPixelBlock * taps);
    for (std::int64_t unit = begin; unit < end; ++unit) {
      const std::int64_t blk = unit / groups;
      const std::int64_t o_begin = unit % groups * group_channels;
      const std::int64_t o_end = std::min(o_begin + group_channels, p.out_channels);
      const std::int64_t q0 = blk * kConvPixelBlock;
      const std::int64_t nq = std::min(kConvPixelBlock, pixels - q0);
      const TWord* a = input + q0 * p.words;
      std::int64_t lda = p.words;
      oob_taps.clear();
      if (!direct) {
        for (std::int64_t q = 0; q < nq; ++q) {
          oob_begin[q] = static_cast<std::int64_t>(oob_taps.size());
          const std::int64_t pix = q0 + q;
          const std::int64_t b = pix / (p.out_h * p.out_w);
          const std::int64_t oy = (pix / p.out_w) % p.out_h;
          const std::int64_t ox = pix % p.out_w;
          GatherPatch(p, input, p.words, b, oy, ox, pad_pattern.data(),
                      patches.data() + q * row_words, [&](std::int64_t tap) {
                        if (!tap_sums.empty())
                          oob_taps.push_back(static_cast<std::int32_t>(tap));
                      });
        }
        oob_begin[nq] = static_cast<std::int64_t>(oob_taps.size());
        a = patches.data();
        lda = row_words;
      }
      // lda == row_words here (direct: one tap), so the rows are contiguous.
      if (split) SplitRows(a, lda, nq, row_words, split_rows.data());
      for (std::int64_t o0 = o_begin; o0 < o_end; o0 += kConvChannelBlock) {
        const std::int64_t no = std::min(kConvChannelBlock, o_end - o0);
        if (split) {
          // o0 is a multiple of 64: panel o0 / 64 starts at
          // o0 * kSplitStepsPerWord * row_words.
          kernels.gemm_ts(split_rows.data(),
                          filter_t->panels.data() + o0 * kSplitStepsPerWord * row_words,
                          static_cast<int>(nq), static_cast<int>(no),
                          row_words, tmp.data(), kConvChannelBlock);
        } else if (filter_t != nullptr) {
          kernels.gemm_t(a, lda, filter_t->t.data() + o0, filter_t->ldbt,
                         static_cast<int>(nq), static_cast<int>(no), row_words,
                         tmp.data(), kConvChannelBlock);
        } else {
          kernels.gemm(a, lda, filter + o0 * row_words, row_words,
                       static_cast<int>(nq), static_cast<int>(no), row_words,
                       tmp.data(), kConvChannelBlock);
        }
        for (std::int64_t q = 0; q < nq; ++q) {
          std::int32_t* dot = tmp.data() + q * kConvChannelBlock;
          for (std::int64_t j = 0; j < no; ++j)
            dot[j] = DotFromPopcount(k_total, dot[j]);
          if (!direct && !tap_sums.empty()) {
            for (std::int64_t e = oob_begin[q]; e < oob_begin[q + 1]; ++e) {
              const std::int32_t t = oob_taps[e];
              for (std::int64_t j = 0; j < no; ++j)
                dot[j] -= tap_sums[(o0 + j) * taps + t];
            }
          }
          char* row = static_cast<char*>(output) +
                      (q0 + q) * out_stride * element_size;
          transform.WriteRow(dot, o0, no, row);
        }
      }
    }
  });
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BCONV2D_OPTIMIZED_H_
