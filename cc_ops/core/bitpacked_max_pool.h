// Max pooling on channel-packed +-1 data (Tfdisc>BitpackedMaxPool2D and the
// fused network op, core/network.h).
//
// With bit 1 = -1, max over a window of +-1 values is +1 unless every value
// is -1, so the packed max is the bitwise AND of the window's words (padding
// bits stay zero). Because sign() is monotone, maxpool commutes with it:
// sign(maxpool(y)) = maxpool(sign(y)). When a batch norm with a negative
// multiplier sits between the pooled value and sign(), the order is
// reversed (BN(max y) = min BN(y)), and the channel needs a min, i.e. a
// bitwise OR; `or_mask` marks such channels (bit set = OR). SAME padding
// ignores out-of-image positions, as tf.nn.max_pool does.
#ifndef TFDISC_CC_OPS_CORE_BITPACKED_MAX_POOL_H_
#define TFDISC_CC_OPS_CORE_BITPACKED_MAX_POOL_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/parallel.h"
#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

// Rough cycles of one output row (the unit of work of BitpackedMaxPool).
inline std::int64_t MaxPoolRowCost(const BConv2DParams& p) {
  return p.out_w * (p.filter_h * p.filter_w * p.words + 8);
}

// p: the pool window (filter_*, stride_*), input size and geometry filled by
// ComputeConvGeometry, `words` 32-bit words per pixel. in / dst:
// [batch][in_h][in_w][words] / [batch][out_h][out_w][words]; or_mask:
// [words] or nullptr.
inline void BitpackedMaxPool(const BConv2DParams& p, const TWord* in,
                             const TWord* mask, TWord* dst,
                             const ParallelFor& parallel_for) {
  // One unit of work per output row (image, oy): the window's rows are
  // found once per row and its columns once per pixel, and the words of a
  // pixel are combined in contiguous (vectorizable) loops.
  const std::int64_t out_rows = p.batch * p.out_h;
  parallel_for(out_rows, MaxPoolRowCost(p), [&](std::int64_t begin, std::int64_t end) {
    std::vector<TWord> any(mask != nullptr ? p.words : 0);
    for (std::int64_t r = begin; r < end; ++r) {
      const std::int64_t b = r / p.out_h;
      const std::int64_t y0 = r % p.out_h * p.stride_h - p.pad_top;
      const std::int64_t fy0 = std::max<std::int64_t>(0, -y0);
      const std::int64_t fy1 = std::min(p.filter_h, p.in_h - y0);
      for (std::int64_t ox = 0; ox < p.out_w; ++ox) {
        const std::int64_t x0 = ox * p.stride_w - p.pad_left;
        const std::int64_t fx0 = std::max<std::int64_t>(0, -x0);
        const std::int64_t fx1 = std::min(p.filter_w, p.in_w - x0);
        TWord* o = dst + (r * p.out_w + ox) * p.words;
        for (std::int64_t w = 0; w < p.words; ++w) o[w] = ~TWord{0};
        for (std::int64_t w = 0; w < static_cast<std::int64_t>(any.size()); ++w)
          any[w] = 0;
        for (std::int64_t fy = fy0; fy < fy1; ++fy) {
          for (std::int64_t fx = fx0; fx < fx1; ++fx) {
            const TWord* v =
                in + ((b * p.in_h + y0 + fy) * p.in_w + x0 + fx) * p.words;
            for (std::int64_t w = 0; w < p.words; ++w) o[w] &= v[w];
            if (mask != nullptr)
              for (std::int64_t w = 0; w < p.words; ++w) any[w] |= v[w];
          }
        }
        if (mask != nullptr)
          for (std::int64_t w = 0; w < p.words; ++w)
            o[w] = (o[w] & ~mask[w]) | (any[w] & mask[w]);
      }
    }
  });
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BITPACKED_MAX_POOL_H_
