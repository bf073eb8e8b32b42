// Geometry of a binary 2-D convolution (NHWC input, OHWI filter, both packed
// along channels).
#ifndef TFDISC_CC_OPS_CORE_BCONV2D_PARAMS_H_
#define TFDISC_CC_OPS_CORE_BCONV2D_PARAMS_H_

#include <algorithm>
#include <cstdint>
#include <string>

namespace tfdisc {
namespace core {

struct BConv2DParams {
  std::int64_t batch = 0, in_h = 0, in_w = 0;
  std::int64_t channels = 0;  // real input channels C (bits per pixel)
  std::int64_t words = 0;     // 32-bit words per packed pixel
  std::int64_t out_channels = 0, filter_h = 0, filter_w = 0;
  std::int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  std::int64_t out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  // Value of out-of-image pixels for "SAME" padding, as in larq's
  // `pad_values`: +1, -1, or 0 (TensorFlow's zero padding; 0 has no +-1
  // code, so it is handled with a correction term, see optimized.h).
  int pad_value = 0;
};

// Fills out_h/out_w/pad_top/pad_left the way TensorFlow (and larq) do.
// Returns false with a message for an invalid configuration.
inline bool ComputeConvGeometry(bool same_padding, BConv2DParams* p,
                                std::string* error) {
  if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 ||
      p->dilation_w < 1) {
    *error = "strides and dilations must be >= 1";
    return false;
  }
  const std::int64_t eff_h = (p->filter_h - 1) * p->dilation_h + 1;
  const std::int64_t eff_w = (p->filter_w - 1) * p->dilation_w + 1;
  if (same_padding) {
    p->out_h = (p->in_h + p->stride_h - 1) / p->stride_h;
    p->out_w = (p->in_w + p->stride_w - 1) / p->stride_w;
    const std::int64_t total_h =
        std::max<std::int64_t>((p->out_h - 1) * p->stride_h + eff_h - p->in_h, 0);
    const std::int64_t total_w =
        std::max<std::int64_t>((p->out_w - 1) * p->stride_w + eff_w - p->in_w, 0);
    p->pad_top = total_h / 2;
    p->pad_left = total_w / 2;
  } else {
    if (p->in_h < eff_h || p->in_w < eff_w) {
      *error = "VALID convolution needs an input at least as large as the "
               "(dilated) filter, got input " +
               std::to_string(p->in_h) + "x" + std::to_string(p->in_w) +
               " and filter " + std::to_string(eff_h) + "x" +
               std::to_string(eff_w);
      return false;
    }
    p->out_h = (p->in_h - eff_h) / p->stride_h + 1;
    p->out_w = (p->in_w - eff_w) / p->stride_w + 1;
    p->pad_top = p->pad_left = 0;
  }
  return true;
}

// im2col for one output pixel (image b, row oy, column ox) of a geometry
// filled by ComputeConvGeometry: the filter_h * filter_w taps, `per_pixel`
// elements each (a pixel's float channels, or its packed words), into dst
// in filter order (ky, kx). A tap outside the image takes the `per_pixel`
// elements of `pad` and is reported to on_pad(tap index). A filter row
// that lies inside the image undilated is one contiguous copy. Short
// copies (a few elements per tap) are cheaper inline than a memcpy call.
template <typename T, typename OnPad>
inline void GatherPatch(const BConv2DParams& p, const T* input,
                        std::int64_t per_pixel, std::int64_t b, std::int64_t oy,
                        std::int64_t ox, const T* pad, T* dst, OnPad&& on_pad) {
  const auto copy = [](T* d, const T* s, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) d[i] = s[i];
  };
  const std::int64_t ix0 = ox * p.stride_w - p.pad_left;
  const bool row_inside = p.dilation_w == 1 && ix0 >= 0 && ix0 + p.filter_w <= p.in_w;
  for (std::int64_t fy = 0; fy < p.filter_h; ++fy) {
    const std::int64_t iy = oy * p.stride_h - p.pad_top + fy * p.dilation_h;
    const bool iy_inside = iy >= 0 && iy < p.in_h;
    T* row = dst + fy * p.filter_w * per_pixel;
    const T* in_row =
        iy_inside ? input + (b * p.in_h + iy) * p.in_w * per_pixel : nullptr;
    if (row_inside && iy_inside) {
      copy(row, in_row + ix0 * per_pixel, p.filter_w * per_pixel);
      continue;
    }
    for (std::int64_t fx = 0; fx < p.filter_w; ++fx) {
      const std::int64_t ix = ix0 + fx * p.dilation_w;
      if (iy_inside && ix >= 0 && ix < p.in_w) {
        copy(row + fx * per_pixel, in_row + ix * per_pixel, per_pixel);
      } else {
        copy(row + fx * per_pixel, pad, per_pixel);
        on_pad(fy * p.filter_w + fx);
      }
    }
  }
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BCONV2D_PARAMS_H_
