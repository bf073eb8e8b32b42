// Small shape-function helpers shared by the op registrations.
#ifndef TFDISC_CC_OPS_OPS_SHAPE_UTIL_H_
#define TFDISC_CC_OPS_OPS_SHAPE_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace ops {

namespace si = ::tensorflow::shape_inference;

inline int WordBitsOf(::tensorflow::DataType t) {
  return t == ::tensorflow::DT_INT64 ? 64 : 32;
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

}  // namespace ops
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_OPS_SHAPE_UTIL_H_
