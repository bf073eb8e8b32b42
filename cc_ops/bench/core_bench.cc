// Single-thread benchmark of cc_ops/core (no TensorFlow): for every kernel
// this CPU supports, the XOR+popcount roofline tile and the dense / conv
// drivers at the shapes of tfdisc.benchmarks.ops, each as binary MAC/s and
// as a percentage of the same kernel's roofline measured in the same run.
//
// Why beside the TensorFlow benchmark: on a machine shared with other jobs
// the op timings include waiting for a core. Here every figure is timed
// over many short repetitions (a few ms each) on one thread, and both the
// median and the minimum are printed; the minimum estimates the undisturbed
// speed, the median what a run saw. Built and run by cc_ops/bench/run.sh.
// Conv lines marked (T) ran the transposed ("vertical") kernel, which the
// driver picks where UsesTransposed says so (on operands prepared once in
// the nibble-table form where the kernel has one); the (U) line below is
// that kernel preparing them per call, the (R) line the row-major kernel.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "cc_ops/core/bconv2d/optimized.h"
#include "cc_ops/core/bdense.h"
#include "cc_ops/core/bgemm/kernels.h"

using namespace tfdisc::core;  // NOLINT

namespace {

struct Timing {
  double median, min;
};

// Times fn() `reps` times (each call a few ms at most) after one warm-up.
template <class F>
Timing Time(F fn, int reps) {
  fn();
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return {s[s.size() / 2], s.front()};
}

void Fill(std::vector<TWord>* v, std::uint32_t seed) {
  std::uint32_t x = seed;
  for (auto& w : *v) {
    x = x * 1664525u + 1013904223u;
    w = x;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 101;
  std::printf("cc_ops core benchmark, one thread, %d repetitions per figure: "
              "median (min) G binary MAC/s and %% of the kernel's own roofline "
              "median (the roofline's median)\n", reps);
  for (KernelType t : {KernelType::kAvx512, KernelType::kAvx512Bw, KernelType::kAvx2,
                       KernelType::kNeon, KernelType::kPortable}) {
    if (!KernelSupported(t)) continue;
    std::vector<TWord> ra(256), rb(256);
    Fill(&ra, 1);
    Fill(&rb, 2);
    std::int64_t macs = 0;
    const std::int64_t iters = t == KernelType::kPortable ? 500 : 2000;
    const Timing roof = Time([&] {
      macs = XorPopcountRoofline(t, ra.data(), rb.data(), 256, iters);
    }, reps);
    const double roof_rate = macs / roof.median;
    std::printf("\nkernel %s\n  roofline tile (rows in L1): %8.1f (%8.1f) G/s\n",
                KernelName(t), roof_rate / 1e9, macs / roof.min / 1e9);
    PopcountGemmFn gemm = GetPopcountGemm(t);
    const ConvKernels all = ConvKernelsFor(t);
    // Dense over a 4096x4096 layer: batch 1 (GEMV), a 32-row slice and 256
    // rows. Where the driver runs the table transposed kernel (T), also the
    // row-major kernel (R) on the same shape.
    const DenseKernels dense_all = DenseKernelsFor(t);
    DenseKernels dense_row_major;
    dense_row_major.gemm = gemm;
    for (std::int64_t m : {1, 32, 256}) {
      BDenseArgs a;
      a.m = m;
      a.n = 4096;
      a.k = 4096;
      a.words = 128;
      std::vector<TWord> x(m * 128), w(4096 * 128);
      Fill(&x, 3);
      Fill(&w, 4);
      std::vector<float> out(m * 4096);
      a.x = x.data();
      a.w = w.data();
      a.out = out.data();
      a.out_stride = 4096;
      a.transform.kind = OutputKind::kFloat;
      const bool transposed = DenseUsesTransposed(dense_all, m, a.words);
      std::vector<std::pair<const char*, DenseKernels>> paths = {
          {transposed ? " (T): " : ":     ", dense_all}};
      if (transposed) paths.push_back({" (R): ", dense_row_major});
      for (const auto& [label, k] : paths) {
        const Timing tm = Time([&] { BinaryDense(a, k, SerialFor); },
                               m == 1 ? reps : static_cast<int>(std::max<std::int64_t>(5, reps / (m / 8))));
        const double ops = static_cast<double>(m) * 4096 * 4096;
        std::printf("  dense %3ldx4096x4096%s       %8.1f (%8.1f) G/s  %5.1f%% of roofline\n",
                    static_cast<long>(m), label, ops / tm.median / 1e9, ops / tm.min / 1e9,
                    100 * ops / tm.median / roof_rate);
      }
    }
    const int shapes[][4] = {{32, 32, 128, 128}, {16, 16, 128, 256}, {16, 16, 256, 256},
                             {8, 8, 256, 512}, {8, 8, 512, 512}};
    for (const auto& s : shapes) {
      BConv2DParams p;
      p.batch = 1;
      p.in_h = s[0];
      p.in_w = s[1];
      p.channels = s[2];
      p.words = s[2] / 32;
      p.out_channels = s[3];
      p.filter_h = p.filter_w = 3;
      p.pad_value = 1;
      std::string error;
      ComputeConvGeometry(true, &p, &error);
      std::vector<TWord> in(p.in_h * p.in_w * p.words), f(p.out_channels * 9 * p.words);
      Fill(&in, 5);
      Fill(&f, 6);
      std::vector<float> out(p.out_h * p.out_w * p.out_channels);
      OutputTransform tr;
      tr.kind = OutputKind::kFloat;
      TransposedFilter filter_t;
      if (all.gemm_t != nullptr)
        BuildTransposedFilter(f.data(), p.out_channels, 9 * p.words, all.gemm_ts != nullptr,
                              &filter_t);
      const double ops = 9.0 * p.out_h * p.out_w * p.channels * p.out_channels;
      // What the driver runs; where it picks the transposed kernel, also the
      // row-major kernel (R) on the same shape, and for a split kernel the
      // transposed kernel splitting its operands per call (U).
      const bool transposed = UsesTransposed(all, 9 * p.words, p.out_h * p.out_w);
      ConvKernels row_major, unsplit = all;
      row_major.gemm = gemm;
      unsplit.gemm_ts = nullptr;
      std::vector<std::pair<const char*, ConvKernels>> paths = {{" (T): ", all}};
      if (transposed && all.gemm_ts != nullptr) paths.push_back({" (U): ", unsplit});
      if (transposed) paths.push_back({" (R): ", row_major});
      for (const auto& [label, k] : paths) {
        const Timing tm = Time([&] {
          BConv2DOptimized(p, in.data(), f.data(), tr, out.data(), p.out_channels, k,
                           SerialFor, kTransposedMinPixels,
                           k.gemm_t == nullptr ? nullptr : &filter_t);
        }, reps);
        std::printf("  conv N=1 %2dx%2dx%3d->%3d%s %8.1f (%8.1f) G/s  %5.1f%% of roofline\n",
                    s[0], s[1], s[2], s[3], transposed ? label : ":     ",
                    ops / tm.median / 1e9, ops / tm.min / 1e9,
                    100 * ops / tm.median / roof_rate);
      }
    }
  }
  return 0;
}
