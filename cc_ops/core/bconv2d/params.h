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

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_BCONV2D_PARAMS_H_
