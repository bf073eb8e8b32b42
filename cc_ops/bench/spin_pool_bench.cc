// Batch-1 dense (GEMV 1x4096x4096) through core::BinaryDense, one thread
// (SerialFor) against the spinning pool (core/spin_pool.h, one worker, the
// caller taking part), no TensorFlow. Rounds of 200 back-to-back calls, as in
// a graph of dependent layers; median and minimum over 31 rounds, per chunk
// size (units of 64 output columns). "helpers 0" is the pool's own overhead.
//
//   g++ -std=c++17 -O3 -ffp-contract=off -pthread -I. cc_ops/bench/spin_pool_bench.cc \
//       cc_ops/core/bgemm/*.cc -o /tmp/spin_pool_bench && /tmp/spin_pool_bench avx2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cc_ops/core/bdense.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/spin_pool.h"

using namespace tfdisc::core;  // NOLINT

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "avx2";
  KernelType type = KernelType::kAvx2;
  for (KernelType t : {KernelType::kPortable, KernelType::kAvx2, KernelType::kAvx512Bw,
                       KernelType::kAvx512, KernelType::kNeon})
    if (name == KernelName(t)) type = t;
  if (!KernelSupported(type)) {
    std::printf("kernel %s not supported here\n", KernelName(type));
    return 1;
  }
  const std::int64_t k = 4096, n = 4096, words = k / 32;
  std::vector<TWord> x(words), w(n * words);
  std::mt19937 rng(1);
  for (TWord& v : x) v = static_cast<TWord>(rng());
  for (TWord& v : w) v = static_cast<TWord>(rng());
  std::vector<float> out(n);
  BDenseArgs args;
  args.x = x.data();
  args.w = w.data();
  args.m = 1;
  args.n = n;
  args.words = words;
  args.k = k;
  args.transform.kind = OutputKind::kFloat;
  args.out = out.data();
  args.out_stride = n;
  const DenseKernels kernels = DenseKernelsFor(type);
  constexpr std::int64_t kBenchSpinMicros = 200;  // the opt-in value measured
  SpinPool pool(1, kBenchSpinMicros);
  const double macs = static_cast<double>(k) * n;
  std::printf("GEMV 1x%lldx%lld, kernel %s, rounds of 200 calls, median / min of 31 rounds\n",
              static_cast<long long>(k), static_cast<long long>(n), KernelName(type));
  auto bench = [&](const char* label, const ParallelFor& pf) {
    std::vector<double> us;
    for (int r = 0; r < 31; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 200; ++i) BinaryDense(args, kernels, pf);
      us.push_back(std::chrono::duration<double, std::micro>(
                       std::chrono::steady_clock::now() - t0).count() / 200);
    }
    std::sort(us.begin(), us.end());
    std::printf("  %-26s median %7.1f us (%6.1f G binary MAC/s)  min %7.1f us | pool: "
                "%lld worker chunks, %lld back-offs so far\n",
                label, us[15], macs / us[15] / 1e3, us[0],
                static_cast<long long>(pool.worker_chunks()),
                static_cast<long long>(pool.backoffs()));
  };
  for (int rep = 0; rep < 2; ++rep) {
    bench("one thread (SerialFor)", SerialFor);
    bench("pool, helpers 0, chunk 4", [&](std::int64_t total, std::int64_t cost,
                                          const std::function<void(std::int64_t, std::int64_t)>& fn) {
      if (!pool.TryRun(total, 4, 0, kBenchSpinMicros, fn)) SerialFor(total, cost, fn);
    });
    for (std::int64_t chunk : {1, 2, 4, 8, 16}) {
      char label[64];
      std::snprintf(label, sizeof(label), "pool, 1 worker, chunk %lld", static_cast<long long>(chunk));
      bench(label, [&](std::int64_t total, std::int64_t cost,
                       const std::function<void(std::int64_t, std::int64_t)>& fn) {
        if (!pool.TryRun(total, chunk, 1, kBenchSpinMicros, fn)) SerialFor(total, cost, fn);
      });
    }
  }
  return 0;
}
