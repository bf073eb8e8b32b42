// Reference binary convolution: direct loops, one output value at a time.
// It sums the +-1 dot product tap by tap, skipping zero-padded taps, so it
// needs no correction term and serves as an independent oracle for
// optimized.h.
#ifndef TFDISC_CC_OPS_CORE_BCONV2D_REFERENCE_H_
#define TFDISC_CC_OPS_CORE_BCONV2D_REFERENCE_H_

#include <cstdint>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/output_transform.h"
#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

inline void BConv2DReference(const BConv2DParams& p, const TWord* input,
                             const TWord* filter,
                             const OutputTransform& transform, void* output,
                             std::int64_t out_stride) {
  std::vector<TWord> minus_ones(p.words);
  MinusOnesPattern(p.channels, p.words, minus_ones.data());
  std::vector<std::int32_t> dots(p.out_channels);
  const std::int64_t element_size =
      transform.kind == OutputKind::kBitpacked ? sizeof(TWord) : 4;
  for (std::int64_t b = 0; b < p.batch; ++b)
    for (std::int64_t oy = 0; oy < p.out_h; ++oy)
      for (std::int64_t ox = 0; ox < p.out_w; ++ox) {
        for (std::int64_t o = 0; o < p.out_channels; ++o) {
          std::int32_t dot = 0;
          for (std::int64_t fy = 0; fy < p.filter_h; ++fy)
            for (std::int64_t fx = 0; fx < p.filter_w; ++fx) {
              const std::int64_t iy = oy * p.stride_h - p.pad_top + fy * p.dilation_h;
              const std::int64_t ix = ox * p.stride_w - p.pad_left + fx * p.dilation_w;
              const bool inside = iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w;
              if (!inside && p.pad_value == 0) continue;
              const TWord* w =
                  filter + ((o * p.filter_h + fy) * p.filter_w + fx) * p.words;
              std::vector<TWord> zeros(p.words, 0);
              const TWord* x =
                  inside ? input + ((b * p.in_h + iy) * p.in_w + ix) * p.words
                         : (p.pad_value > 0 ? zeros.data() : minus_ones.data());
              std::int64_t pc = 0;
              for (std::int64_t i = 0; i < p.words; ++i)
                pc += PopcountPortable(x[i] ^ w[i]);
              dot += DotFromPopcount(p.channels, pc);
            }
          dots[o] = dot;
        }
        char* row = static_cast<char*>(output) +
                    ((b * p.out_h + oy) * p.out_w + ox) * out_stride * element_size;
        transform.WriteRow(dots.data(), 0, p.out_channels, row);
      }
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BCONV2D_REFERENCE_H_
