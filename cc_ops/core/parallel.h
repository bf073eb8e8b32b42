// The one threading hook core/ needs: the TF kernels pass a wrapper around
// the intra-op thread pool (tensorflow::Shard); tests pass SerialFor.
#ifndef TFDISC_CC_OPS_CORE_PARALLEL_H_
#define TFDISC_CC_OPS_CORE_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace tfdisc {
namespace core {

// Calls fn(begin, end) over disjoint ranges covering [0, total), possibly
// concurrently. `cost_per_unit` is a rough cycle count per unit of work.
using ParallelFor = std::function<void(
    std::int64_t total, std::int64_t cost_per_unit,
    const std::function<void(std::int64_t, std::int64_t)>& fn)>;

inline void SerialFor(std::int64_t total, std::int64_t,
                      const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (total > 0) fn(0, total);
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_PARALLEL_H_
