// Runs a chain of packed layers planned by network_plan.h (issue 31,
// Tfdisc>PackedNetwork): the weight forms prepared once, the scratch
// buffers between steps, and RunNetwork, which calls for each step the
// driver its per-layer op calls (bconv2d/optimized.h, bconv2d/reference.h,
// bconv2d/float_input.h, bdense.h, bitpacked_max_pool.h, bitpack.h).
#ifndef TFDISC_CC_OPS_CORE_NETWORK_H_
#define TFDISC_CC_OPS_CORE_NETWORK_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "cc_ops/core/bconv2d/float_input.h"
#include "cc_ops/core/bconv2d/optimized.h"
#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bconv2d/reference.h"
#include "cc_ops/core/bdense.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/bitpack.h"
#include "cc_ops/core/bitpacked_max_pool.h"
#include "cc_ops/core/network_plan.h"
#include "cc_ops/core/output_transform.h"
#include "cc_ops/core/parallel.h"
#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

// Weight forms prepared once per set of weights: the conv filters in the
// transposed kernels' layout (with the nibble-table panels when `split`),
// and the float first layer's padded filter.
struct PreparedNetwork {
  bool transposed = false;  // conv filters have their transposed forms
  bool split = false;       // ... with panels
  std::vector<std::unique_ptr<TransposedFilter>> filters;  // per step (conv)
  std::vector<std::unique_ptr<PaddedFloatFilter>> float_filters;  // per step
};

// Builds the forms the kernels `kernels` need for `steps` (after
// PlanNetwork: the conv steps' `words` are set).
inline void PrepareNetwork(const std::vector<Step>& steps, const std::vector<WeightView>& weights,
                           bool transposed, bool split, PreparedNetwork* out) {
  out->transposed = transposed;
  out->split = split;
  out->filters.clear();
  out->float_filters.clear();
  out->filters.resize(steps.size());
  out->float_filters.resize(steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const BConv2DParams& p = s.window;
    if (s.kind == StepKind::kConv && transposed) {
      out->filters[i].reset(new TransposedFilter);
      BuildTransposedFilter(static_cast<const TWord*>(weights[s.weight].data), p.out_channels,
                            p.filter_h * p.filter_w * p.words, split, out->filters[i].get());
    } else if (s.kind == StepKind::kFloatConvBits) {
      out->float_filters[i].reset(new PaddedFloatFilter);
      PadFloatFilter(static_cast<const float*>(weights[s.weight].data),
                     static_cast<const float*>(weights[s.bias].data),
                     p.filter_h * p.filter_w * p.channels, p.out_channels,
                     out->float_filters[i].get());
    }
  }
}

// 64-byte aligned, growing scratch memory.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { std::free(data_); }

  void* Get(std::size_t bytes) {
    if (bytes > size_) {
      std::free(data_);
      size_ = (bytes + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, size_);
      if (data_ == nullptr) size_ = 0;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

// The two buffers the steps write into in turn (the last writes the output).
struct NetworkScratch {
  ScratchBuffer buffers[2];
};

// Bytes of a flow's data.
inline std::size_t FlowBytes(const Flow& f) {
  return static_cast<std::size_t>(f.Elements()) * 4;  // 32-bit words or floats
}

// Runs the steps (planned for `in` by PlanNetwork into `flows`) from
// `input` into `output` (flows.back()'s data). `parallel(i)` gives the
// ParallelFor of step i. Returns false if scratch memory ran out.
template <typename ParallelForOf>
inline bool RunNetwork(const std::vector<Step>& steps, const std::vector<Flow>& flows,
                       const Flow& in, const void* input, void* output,
                       const std::vector<WeightView>& weights, const PreparedNetwork& prepared,
                       KernelType type, NetworkScratch* scratch, ParallelForOf&& parallel) {
  // The last step that writes data (flatten only relabels it).
  std::size_t last = steps.size();
  while (last > 0 && steps[last - 1].kind == StepKind::kFlatten) --last;
  if (last == 0) return false;
  --last;
  // A flatten after the last writing step: the output is that step's data.
  const void* src = input;
  int next = 0;
  const BitpackFloatFn pack = GetBitpackFloat(type);
  const auto words_of = [&](int index) {
    return index < 0 ? nullptr : static_cast<const TWord*>(weights[index].data);
  };
  const auto floats_of = [&](int index) {
    return index < 0 ? nullptr : static_cast<const float*>(weights[index].data);
  };
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const Flow& before = i == 0 ? in : flows[i - 1];
    const Flow& after = flows[i];
    if (s.kind == StepKind::kFlatten) continue;
    void* dst = output;
    if (i != last) {
      dst = scratch->buffers[next].Get(FlowBytes(after));
      if (dst == nullptr) return false;
      next ^= 1;
    }
    const ParallelFor& parallel_for = parallel(i);
    const BConv2DParams& p = s.window;
    switch (s.kind) {
      case StepKind::kBitpack: {
        const float* x = static_cast<const float*>(src);
        TWord* out = static_cast<TWord*>(dst);
        const std::int64_t rows = before.batch * before.h * before.w;
        parallel_for(rows, s.k * 2 + 8, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r)
            BitpackFloatRow(pack, x + r * s.k, s.k, after.row, out + r * after.row);
        });
        break;
      }
      case StepKind::kFloatConvBits:
        FloatConv2DBits(p, static_cast<const float*>(src), *prepared.float_filters[i],
                        GetFloatGemmBits(type), static_cast<TWord*>(dst), after.row,
                        parallel_for);
        break;
      case StepKind::kConv:
      case StepKind::kDense: {
        OutputTransform transform;
        transform.kind = s.bits_out ? OutputKind::kBitpacked : OutputKind::kFloat;
        transform.multiplier = floats_of(s.multiplier);
        transform.bias = floats_of(s.bias);
        transform.pack = pack;
        const std::int64_t channels = s.kind == StepKind::kConv ? p.out_channels : s.units;
        if (s.bits_out && after.row != PackedWords(channels, kWordBits)) {
          // The high half of a 64-bit word past the last channel.
          std::memset(dst, 0, FlowBytes(after));
        }
        if (s.kind == StepKind::kDense) {
          BDenseArgs args;
          args.x = static_cast<const TWord*>(src);
          args.w = words_of(s.weight);
          args.m = before.batch;
          args.n = s.units;
          args.words = before.row;
          args.k = s.k;
          args.transform = transform;
          args.out = dst;
          args.out_stride = after.row;
          BinaryDense(args, DenseKernelsFor(type), parallel_for);
        } else if (type == KernelType::kReference) {
          BConv2DReference(p, static_cast<const TWord*>(src), words_of(s.weight), transform, dst,
                           after.row);
        } else {
          const TransposedFilter* filter_t =
              prepared.transposed ? prepared.filters[i].get() : nullptr;
          BConv2DOptimized(p, static_cast<const TWord*>(src), words_of(s.weight), transform,
                           dst, after.row, ConvKernelsFor(type), parallel_for,
                           kTransposedMinPixels, filter_t);
        }
        break;
      }
      case StepKind::kMaxPool:
        BitpackedMaxPool(p, static_cast<const TWord*>(src), words_of(s.weight),
                         static_cast<TWord*>(dst), parallel_for);
        break;
      case StepKind::kFlatten:
        break;
    }
    src = dst;
  }
  return true;
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_NETWORK_H_
