// A chain of packed layers run as one op (issue 31, Tfdisc>PackedNetwork).
//
// On the 2-core AVX2 machine of issue 31, a converted network spent much of
// its batch-1 time in TensorFlow's per-op cost rather than in the kernels
// (alexnet_cifar's per-layer graph: ~72 ops, 22 of them variable reads).
// Here a chain of layers is a list of steps run back to back inside
// one op, on the same drivers the per-layer ops call (bconv2d/optimized.h,
// bconv2d/reference.h, bconv2d/float_input.h, bdense.h,
// bitpacked_max_pool.h, bitpack.h), so every step computes exactly what the
// per-layer op computes; only the buffers between the steps and the
// thread choice differ.
//
// Steps and their integer parameters (the op's `step_ints`, concatenated in
// step order; the weight inputs they consume, in order, in brackets):
//   bitpack          [channels]                      float -> bits
//   float_conv_bits  [channels_in, out_channels, filter_h, filter_w,
//                     stride_h, stride_w, dilation_h, dilation_w, same]
//                    [kernel HWIO float, bias float]  float NHWC -> bits
//   conv             [channels_in, out_channels, filter_h, filter_w,
//                     stride_h, stride_w, dilation_h, dilation_w, same,
//                     pad_value, bits_out, has_multiplier, has_bias]
//                    [filter OHWI words, (multiplier), (bias)]  bits NHWC ->
//                    bits (bits_out) or float
//   max_pool         [pool_h, pool_w, stride_h, stride_w, same, has_or_mask]
//                    [(or_mask words)]                bits NHWC -> bits
//   flatten          []                               NHWC -> [batch, h*w*c]
//                    (packed data only when the channels fill whole words,
//                    so that the flat row has no padding bits)
//   dense            [k, units, bits_out, has_multiplier, has_bias]
//                    [weights [units, words], (multiplier), (bias)]  bits ->
//                    bits or float
// "bits" is packed data in `word_bits`-bit words (PackedWords32 32-bit words
// per pixel or row, as the per-layer ops store it).
//
// The weights travel in two 1-D tensors, so that a network reads two
// variables instead of one per weight (each read is an op too): `words`
// (the packed filters, dense weights and or_masks, in the word type) and
// `floats` (multipliers, biases, float kernels), each weight in step order
// and starting at a multiple of kWeightAlignBytes bytes (zeros between), the
// layout of WeightOffsets and of tfdisc.ops.packed_network.pack_weights.
//
// This header: the steps, their parsing and checks, the shapes between them
// (PlanNetwork), their cost and the weights' layout. network.h runs them.
#ifndef TFDISC_CC_OPS_CORE_NETWORK_PLAN_H_
#define TFDISC_CC_OPS_CORE_NETWORK_PLAN_H_

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "cc_ops/core/bconv2d/params.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/bitpacked_max_pool.h"
#include "cc_ops/core/types.h"

namespace tfdisc {
namespace core {

enum class StepKind { kBitpack, kFloatConvBits, kConv, kMaxPool, kFlatten, kDense };

struct StepLayout {
  const char* name;
  StepKind kind;
  int ints;
};

constexpr StepLayout kStepLayouts[] = {
    {"bitpack", StepKind::kBitpack, 1},
    {"float_conv_bits", StepKind::kFloatConvBits, 9},
    {"conv", StepKind::kConv, 13},
    {"max_pool", StepKind::kMaxPool, 6},
    {"flatten", StepKind::kFlatten, 0},
    {"dense", StepKind::kDense, 5},
};

// The type of a weight input.
enum class WeightType { kWords, kFloat };

struct Step {
  StepKind kind = StepKind::kFlatten;
  std::string name;
  // Window steps: channels, out_channels, filter, strides, dilations,
  // pad_value (conv); the sizes are filled per call (PlanNetwork).
  BConv2DParams window;
  bool same = false;
  std::int64_t k = 0;      // bitpack: channels; dense: input bits
  std::int64_t units = 0;  // dense
  bool bits_out = false;
  // Weight inputs (index into the op's `weights`; -1: none).
  int weight = -1, multiplier = -1, bias = -1;
};

// What flows between steps.
struct Flow {
  bool bits = false;
  int rank = 0;                   // 2 or 4; 0: not known yet (the input)
  std::int64_t batch = 0, h = 1, w = 1;
  std::int64_t channels = -1;     // real channels; -1: not known (packed input)
  std::int64_t row = 0;           // 32-bit words (bits) or floats per pixel / row

  std::int64_t Elements() const { return batch * h * w * row; }
};

namespace network_internal {

inline bool Fail(std::string* error, const std::string& message) {
  *error = message;
  return false;
}

inline std::string StepName(std::size_t i, const char* kind) {
  return "step " + std::to_string(i) + " (" + kind + ")";
}

}  // namespace network_internal

// Parses the op's attributes into steps and checks what does not depend on
// the input shape: known kinds, the number of integers, their ranges, that
// each step gets the data it takes (float or bits, rank), and the weight
// inputs (their types in `weight_types`, in order). `input_bits`: the
// network input is packed (else float). `output_bits`: what it returns.
inline bool ParseNetwork(const std::vector<std::string>& kinds,
                         const std::vector<std::int64_t>& ints, int word_bits,
                         bool input_bits, std::vector<Step>* steps,
                         std::vector<WeightType>* weight_types, bool* output_bits,
                         std::string* error) {
  using network_internal::Fail;
  steps->clear();
  weight_types->clear();
  if (word_bits != 32 && word_bits != 64)
    return Fail(error, "word_bits must be 32 or 64, got " + std::to_string(word_bits));
  if (kinds.empty()) return Fail(error, "steps must not be empty");
  std::size_t pos = 0;
  bool bits = input_bits;
  int rank = 0;  // not known
  const auto take_weight = [&](WeightType t) {
    weight_types->push_back(t);
    return static_cast<int>(weight_types->size()) - 1;
  };
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    const StepLayout* layout = nullptr;
    for (const StepLayout& l : kStepLayouts)
      if (kinds[i] == l.name) layout = &l;
    if (layout == nullptr) {
      std::string known;
      for (const StepLayout& l : kStepLayouts) known += std::string(known.empty() ? "" : ", ") + l.name;
      return Fail(error, "step " + std::to_string(i) + ": unknown kind '" + kinds[i] +
                             "' (known: " + known + ")");
    }
    const std::string name = network_internal::StepName(i, layout->name);
    if (pos + layout->ints > ints.size())
      return Fail(error, name + " needs " + std::to_string(layout->ints) +
                             " integers in step_ints, but only " +
                             std::to_string(ints.size() - pos) + " are left");
    const std::int64_t* v = ints.data() + pos;
    pos += layout->ints;
    Step s;
    s.kind = layout->kind;
    s.name = name;
    const auto positive = [&](std::int64_t x, const char* what) {
      if (x >= 1 && x <= kMaxDotBits) return true;
      *error = name + ": " + what + " must be in [1, 2^31 - 1], got " + std::to_string(x);
      return false;
    };
    const auto flag = [&](std::int64_t x, const char* what) {
      if (x == 0 || x == 1) return true;
      *error = name + ": " + what + " must be 0 or 1, got " + std::to_string(x);
      return false;
    };
    const auto window = [&](const std::int64_t* w, bool with_channels) {
      BConv2DParams& p = s.window;
      if (with_channels) {
        if (!positive(w[0], "channels_in") || !positive(w[1], "out_channels")) return false;
        p.channels = w[0];
        p.out_channels = w[1];
        w += 2;
      }
      if (!positive(w[0], "filter height") || !positive(w[1], "filter width") ||
          !positive(w[2], "stride height") || !positive(w[3], "stride width"))
        return false;
      p.filter_h = w[0];
      p.filter_w = w[1];
      p.stride_h = w[2];
      p.stride_w = w[3];
      return true;
    };
    const auto needs = [&](bool want_bits, int want_rank) {
      if (bits != want_bits)
        return Fail(error, name + " takes " + (want_bits ? "packed bits" : "float data") +
                               " but the previous step gives " +
                               (bits ? "packed bits" : "float data"));
      if (want_rank != 0 && rank != 0 && rank != want_rank)
        return Fail(error, name + " takes rank-" + std::to_string(want_rank) +
                               " data but gets rank " + std::to_string(rank));
      return true;
    };
    switch (s.kind) {
      case StepKind::kBitpack:
        if (!needs(false, 0) || !positive(v[0], "channels")) return false;
        s.k = v[0];
        bits = true;
        break;
      case StepKind::kFloatConvBits:
        if (!needs(false, 4) || !window(v, true) || !positive(v[6], "dilation height") ||
            !positive(v[7], "dilation width") || !flag(v[8], "same"))
          return false;
        s.window.dilation_h = v[6];
        s.window.dilation_w = v[7];
        s.same = v[8] == 1;
        s.weight = take_weight(WeightType::kFloat);
        s.bias = take_weight(WeightType::kFloat);
        bits = true;
        rank = 4;
        break;
      case StepKind::kConv:
        if (!needs(true, 4) || !window(v, true) || !positive(v[6], "dilation height") ||
            !positive(v[7], "dilation width") || !flag(v[8], "same") ||
            !flag(v[10], "bits_out") || !flag(v[11], "has_multiplier") ||
            !flag(v[12], "has_bias"))
          return false;
        if (v[9] < -1 || v[9] > 1)
          return Fail(error, name + ": pad_value must be -1, 0 or 1, got " +
                                 std::to_string(v[9]));
        if (!DotBitsWithinLimit(v[0], v[2], v[3]))
          return Fail(error, name + ": channels_in * filter height * filter width must be "
                                    "<= 2^31 - 1 (dot products are int32)");
        s.window.dilation_h = v[6];
        s.window.dilation_w = v[7];
        s.same = v[8] == 1;
        s.window.pad_value = static_cast<int>(v[9]);
        s.bits_out = v[10] == 1;
        s.weight = take_weight(WeightType::kWords);
        if (v[11] == 1) s.multiplier = take_weight(WeightType::kFloat);
        if (v[12] == 1) s.bias = take_weight(WeightType::kFloat);
        bits = s.bits_out;
        rank = 4;
        break;
      case StepKind::kMaxPool:
        if (!needs(true, 4) || !window(v, false) || !flag(v[4], "same") ||
            !flag(v[5], "has_or_mask"))
          return false;
        s.same = v[4] == 1;
        if (v[5] == 1) s.weight = take_weight(WeightType::kWords);
        rank = 4;
        break;
      case StepKind::kFlatten:
        if (rank == 2) return Fail(error, name + " takes rank-4 data but gets rank 2");
        rank = 2;
        break;
      case StepKind::kDense:
        if (!needs(true, 2) || !positive(v[0], "k") || !positive(v[1], "units") ||
            !flag(v[2], "bits_out") || !flag(v[3], "has_multiplier") ||
            !flag(v[4], "has_bias"))
          return false;
        s.k = v[0];
        s.units = v[1];
        s.bits_out = v[2] == 1;
        s.weight = take_weight(WeightType::kWords);
        if (v[3] == 1) s.multiplier = take_weight(WeightType::kFloat);
        if (v[4] == 1) s.bias = take_weight(WeightType::kFloat);
        bits = s.bits_out;
        rank = 2;
        break;
    }
    steps->push_back(s);
  }
  if (pos != ints.size())
    return Fail(error, "step_ints has " + std::to_string(ints.size()) + " integers but the " +
                           std::to_string(kinds.size()) + " steps take " + std::to_string(pos));
  bool any_compute = false;
  for (const Step& s : *steps) any_compute = any_compute || s.kind != StepKind::kFlatten;
  if (!any_compute) return Fail(error, "the steps must compute something (not only flatten)");
  *output_bits = bits;
  return true;
}

// Follows the data through the steps for an input of `in` (rank, sizes;
// for packed input `row` words and channels -1), checking every size, and
// fills each window step's geometry. flows[i] is step i's output.
inline bool PlanNetwork(std::vector<Step>* steps, int word_bits, const Flow& in,
                        std::vector<Flow>* flows, std::string* error) {
  using network_internal::Fail;
  flows->clear();
  Flow f = in;
  if (f.rank != 2 && f.rank != 4)
    return Fail(error, "the input must be rank 2 or 4, got rank " + std::to_string(f.rank));
  for (Step& s : *steps) {
    const std::string& name = s.name;
    const auto check_channels = [&](std::int64_t want, const char* what) {
      const std::int64_t words = PackedWords32(want, word_bits);
      if (f.bits ? (f.row != words || (f.channels >= 0 && f.channels != want))
                 : f.row != want) {
        *error = name + ": " + what + "=" + std::to_string(want) + " needs " +
                 (f.bits ? std::to_string(PackedWords(want, word_bits)) + " " +
                               std::to_string(word_bits) + "-bit words"
                         : std::to_string(want) + " values") +
                 " per " + (f.rank == 4 ? "pixel" : "row") + ", got " +
                 (f.bits ? std::to_string(f.row * 32 / word_bits) + " words" +
                               (f.channels >= 0 ? " of " + std::to_string(f.channels) +
                                                      " channels"
                                                : std::string())
                         : std::to_string(f.row) + " values");
        return false;
      }
      f.channels = want;
      return true;
    };
    const auto window_geometry = [&]() {
      BConv2DParams& p = s.window;
      p.batch = f.batch;
      p.in_h = f.h;
      p.in_w = f.w;
      std::string message;
      if (!ComputeConvGeometry(s.same, &p, &message)) return Fail(error, name + ": " + message);
      f.h = p.out_h;
      f.w = p.out_w;
      return true;
    };
    switch (s.kind) {
      case StepKind::kBitpack:
        if (!check_channels(s.k, "channels")) return false;
        f.bits = true;
        f.row = PackedWords32(s.k, word_bits);
        break;
      case StepKind::kFloatConvBits:
      case StepKind::kConv:
        if (f.rank != 4) return Fail(error, name + " takes rank-4 (NHWC) data, got rank 2");
        if (!check_channels(s.window.channels, "channels_in")) return false;
        s.window.words = s.kind == StepKind::kConv ? PackedWords32(s.window.channels, word_bits)
                                                   : 0;
        if (!window_geometry()) return false;
        f.bits = s.kind == StepKind::kFloatConvBits || s.bits_out;
        f.channels = s.window.out_channels;
        f.row = f.bits ? PackedWords32(f.channels, word_bits) : f.channels;
        break;
      case StepKind::kMaxPool:
        if (f.rank != 4) return Fail(error, name + " takes rank-4 (NHWC) data, got rank 2");
        s.window.words = f.row;
        if (!window_geometry()) return false;
        break;
      case StepKind::kFlatten:
        if (f.rank != 4) return Fail(error, name + " takes rank-4 (NHWC) data, got rank 2");
        if (f.bits && f.h * f.w > 1 &&
            (f.channels < 0 ? f.row * 32 % word_bits != 0 : f.channels % word_bits != 0))
          return Fail(error, name + ": packed pixels of " + std::to_string(f.channels) +
                                 " channels have padding bits, so their flat rows are not "
                                 "packed rows (channels must be a multiple of " +
                                 std::to_string(word_bits) + ")");
        if (f.channels >= 0) f.channels *= f.h * f.w;
        f.row *= f.h * f.w;
        f.h = f.w = 1;
        f.rank = 2;
        break;
      case StepKind::kDense:
        if (f.rank != 2) return Fail(error, name + " takes rank-2 data, got rank 4");
        if (!check_channels(s.k, "k")) return false;
        f.bits = s.bits_out;
        f.channels = s.units;
        f.row = f.bits ? PackedWords32(s.units, word_bits) : s.units;
        break;
    }
    flows->push_back(f);
  }
  return true;
}

// Rough cycles of a step's work (the cost models of its driver), for the
// thread choice.
inline std::int64_t StepCost(const Step& s, const Flow& in, const Flow& out) {
  const BConv2DParams& p = s.window;
  switch (s.kind) {
    case StepKind::kBitpack:
      return in.batch * in.h * in.w * (s.k * 2 + 8);
    case StepKind::kFloatConvBits: {
      const std::int64_t row = p.filter_h * p.filter_w * p.channels;
      const std::int64_t cols = (p.out_channels + kFloatGemmCols - 1) / kFloatGemmCols *
                                kFloatGemmCols;
      return out.batch * out.h * out.w * (row * cols / 4 + row + cols);
    }
    case StepKind::kConv: {
      const std::int64_t row_words = p.filter_h * p.filter_w * p.words;
      return out.batch * out.h * out.w * (p.out_channels * (row_words / 8 + 4) + row_words);
    }
    case StepKind::kMaxPool:
      return p.batch * p.out_h * MaxPoolRowCost(p);
    case StepKind::kFlatten:
      return 0;
    case StepKind::kDense:
      return in.batch * s.units * (in.row / 8 + 4);
  }
  return 0;
}

// A step runs on the intra-op thread pool only when its estimated work is at
// least this many rough cycles (StepCost), i.e. when its one-thread time is
// well above what waking a second thread costs. The dispatch benchmark
// (tfdisc.benchmarks.dispatch, cc_ops/README.md "Batch 1 inside a graph")
// measured that a 2-thread op costs 25-246 us more than a 1-thread op for
// the same work per thread, so a layer gains from a second core only when
// its one-thread time exceeds about 2x that; these rough cycles run at
// about 1-2 per ns in the drivers (1x4096x4096 dense: 82 k cycles, ~80 us
// on one thread), so 200 k is ~100-200 us of one-thread work. Below it
// the step runs on the calling thread. TFDISC_OPS_FUSED_PARALLEL_COST
// overrides it (0: every step parallel, as TensorFlow's sharder decides).
constexpr std::int64_t kFusedParallelMinCost = 200000;

inline std::int64_t FusedParallelMinCost() {
  const char* env = std::getenv("TFDISC_OPS_FUSED_PARALLEL_COST");
  if (env == nullptr || env[0] == '\0') return kFusedParallelMinCost;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  if (end == env || *end != '\0' || v < 0) return kFusedParallelMinCost;
  return static_cast<std::int64_t>(v);
}

// A weight: its data and its element count.
struct WeightView {
  const void* data = nullptr;
  std::int64_t size = 0;
};

constexpr std::int64_t kWeightAlignBytes = 64;

// Element counts of the weights (by index; packed words in `word_bits`-bit
// words) of steps planned by PlanNetwork.
inline std::vector<std::int64_t> WeightSizes(const std::vector<Step>& steps,
                                             std::size_t num_weights, int word_bits) {
  std::vector<std::int64_t> sizes(num_weights, 0);
  for (const Step& s : steps) {
    const BConv2DParams& p = s.window;
    const std::int64_t channels = s.kind == StepKind::kDense ? s.units : p.out_channels;
    switch (s.kind) {
      case StepKind::kFloatConvBits:
        sizes[s.weight] = p.filter_h * p.filter_w * p.channels * p.out_channels;
        break;
      case StepKind::kConv:
        sizes[s.weight] = p.out_channels * p.filter_h * p.filter_w *
                          PackedWords(p.channels, word_bits);
        break;
      case StepKind::kDense:
        sizes[s.weight] = s.units * PackedWords(s.k, word_bits);
        break;
      case StepKind::kMaxPool:
        if (s.weight >= 0) sizes[s.weight] = p.words * kWordBits / word_bits;
        break;
      default:
        break;
    }
    if (s.multiplier >= 0) sizes[s.multiplier] = channels;
    if (s.bias >= 0) sizes[s.bias] = channels;
  }
  return sizes;
}

// Element offsets of the weights in their tensor (`words` or `floats`, by
// `types`), each at a multiple of kWeightAlignBytes; totals[0] / totals[1]:
// the elements `words` / `floats` must hold.
inline std::vector<std::int64_t> WeightOffsets(const std::vector<WeightType>& types,
                                               const std::vector<std::int64_t>& sizes,
                                               int word_bits, std::int64_t totals[2]) {
  std::vector<std::int64_t> offsets(types.size());
  totals[0] = totals[1] = 0;
  for (std::size_t i = 0; i < types.size(); ++i) {
    const int t = types[i] == WeightType::kWords ? 0 : 1;
    const std::int64_t per = kWeightAlignBytes / (t == 0 ? word_bits / 8 : 4);
    offsets[i] = (totals[t] + per - 1) / per * per;
    totals[t] = offsets[i] + sizes[i];
  }
  return offsets;
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_NETWORK_PLAN_H_
