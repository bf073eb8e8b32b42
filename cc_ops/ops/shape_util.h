// Small shape-function helpers shared by the op registrations.
#ifndef TFDISC_CC_OPS_OPS_SHAPE_UTIL_H_
#define TFDISC_CC_OPS_OPS_SHAPE_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/types.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

namespace si = ::tensorflow::shape_inference;

inline int WordBitsOf(::tensorflow::DataType t) {
  return t == ::tensorflow::DT_INT64 ? 64 : 32;
}

// Words of `word_type` (int32 / int64) that hold `bits` packed bits; unknown
// if `bits` is unknown.
inline si::DimensionHandle PackedWordsDim(si::InferenceContext* c,
                                          si::DimensionHandle bits,
                                          ::tensorflow::DataType word_type) {
  return c->ValueKnown(bits)
             ? c->MakeDim(::tfdisc::core::PackedWords(c->Value(bits),
                                                      WordBitsOf(word_type)))
             : c->UnknownDim();
}

// Spatial output size of a window op; unknown if the input size is unknown.
inline absl::Status WindowedDim(si::InferenceContext* c, si::DimensionHandle in,
                                std::int64_t filter, std::int64_t stride,
                                std::int64_t dilation, bool same,
                                si::DimensionHandle* out) {
  if (!c->ValueKnown(in)) {
    *out = c->UnknownDim();
    return absl::OkStatus();
  }
  ::tfdisc::core::BConv2DParams p;
  p.in_h = p.in_w = c->Value(in);
  p.filter_h = p.filter_w = filter;
  p.stride_h = p.stride_w = stride;
  p.dilation_h = p.dilation_w = dilation;
  std::string error;
  if (!::tfdisc::core::ComputeConvGeometry(same, &p, &error)) {
    return ::tensorflow::errors::InvalidArgument(error);
  }
  *out = c->MakeDim(p.out_h);
  return absl::OkStatus();
}

// Output height and width of a convolution op with `strides`, `dilations`
// and `padding` attributes, for a filter of height / width dimensions
// `filter_h` / `filter_w`; unknown where a size is not known yet.
inline absl::Status ConvOutputHeightWidth(si::InferenceContext* c,
                                          si::ShapeHandle input,
                                          si::DimensionHandle filter_h,
                                          si::DimensionHandle filter_w,
                                          si::DimensionHandle* oh,
                                          si::DimensionHandle* ow) {
  std::vector<::tensorflow::int32> strides, dilations;
  std::string padding;
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
  TF_RETURN_IF_ERROR(c->GetAttr("dilations", &dilations));
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  if (strides.size() != 2 || dilations.size() != 2) {
    return ::tensorflow::errors::InvalidArgument(
        "strides and dilations must have 2 elements [h, w]");
  }
  *oh = c->UnknownDim();
  *ow = c->UnknownDim();
  if (c->ValueKnown(filter_h) && c->ValueKnown(filter_w) && strides[0] >= 1 &&
      strides[1] >= 1 && dilations[0] >= 1 && dilations[1] >= 1) {
    TF_RETURN_IF_ERROR(WindowedDim(c, c->Dim(input, 1), c->Value(filter_h),
                                   strides[0], dilations[0], padding == "SAME", oh));
    TF_RETURN_IF_ERROR(WindowedDim(c, c->Dim(input, 2), c->Value(filter_w),
                                   strides[1], dilations[1], padding == "SAME", ow));
  }
  return absl::OkStatus();
}

}  // namespace ops
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_OPS_SHAPE_UTIL_H_
