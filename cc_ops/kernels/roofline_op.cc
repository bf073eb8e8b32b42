// Tfdisc>XorPopcountRoofline: benchmark-only op. Each of `threads` workers of
// the intra-op pool runs the selected kernel's register-tile XOR+popcount
// loop over L1-resident rows of `words` 32-bit words, `iters` times
// (core::XorPopcountRoofline), and the op returns the total number of binary
// MACs performed. The caller times the op; MACs / time is the binary-MAC
// ceiling that tfdisc.benchmarks.ops compares the real kernels against.
#include <atomic>
#include <cstdint>
#include <vector>

#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/kernels/common.h"
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfdisc {
namespace kernels {

class XorPopcountRooflineOp : public tf::OpKernel {
 public:
  explicit XorPopcountRooflineOp(tf::OpKernelConstruction* ctx)
      : tf::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("words", &words_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("iters", &iters_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("threads", &threads_));
    OP_REQUIRES(ctx, words_ >= 64 && words_ % 64 == 0,
                tf::errors::InvalidArgument("words must be a positive multiple of 64"));
    OP_REQUIRES(ctx, iters_ >= 1 && threads_ >= 1,
                tf::errors::InvalidArgument("iters and threads must be >= 1"));
  }

  void Compute(tf::OpKernelContext* ctx) override {
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    std::atomic<std::int64_t> total{0};
    auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    const std::int64_t words = words_, iters = iters_;
    // One unit of work per thread; cost large so each unit gets a thread.
    workers->ParallelFor(threads_, /*cost_per_unit=*/1LL << 40,
                         [&](std::int64_t begin, std::int64_t end) {
      std::vector<core::TWord> a(words), b(words);
      for (std::int64_t i = 0; i < words; ++i) {
        a[i] = static_cast<core::TWord>(i * 2654435761u);
        b[i] = static_cast<core::TWord>(i * 40503u + 7);
      }
      for (std::int64_t t = begin; t < end; ++t)
        total += core::XorPopcountRoofline(type, a.data(), b.data(), words, iters);
    });
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<tf::int64>()() = total.load();
  }

 private:
  tf::int64 words_ = 0, iters_ = 0, threads_ = 1;
};

REGISTER_OP("Tfdisc>XorPopcountRoofline")
    .Output("binary_macs: int64")
    .Attr("words: int")
    .Attr("iters: int")
    .Attr("threads: int = 1")
    .SetIsStateful()  // never constant-fold or deduplicate a benchmark
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc("Benchmark only: XOR+popcount roofline loop (see roofline_op.cc).");

REGISTER_KERNEL_BUILDER(Name("Tfdisc>XorPopcountRoofline").Device(tf::DEVICE_CPU),
                        XorPopcountRooflineOp);

// Tfdisc>SelectedKernel: the name of the kernel the ops would run now
// (TFDISC_OPS_KERNEL, or what `auto` resolves to on this CPU), so that the
// benchmark can say which kernel produced each figure.
class SelectedKernelOp : public tf::OpKernel {
 public:
  using tf::OpKernel::OpKernel;
  void Compute(tf::OpKernelContext* ctx) override {
    core::KernelType type;
    if (!GetKernelType(ctx, &type)) return;
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<tf::tstring>()() = core::KernelName(type);
  }
};

REGISTER_OP("Tfdisc>SelectedKernel")
    .Output("name: string")
    .SetIsStateful()  // depends on the environment
    .SetShapeFn(::tensorflow::shape_inference::ScalarShape)
    .Doc("The kernel the binary ops run now (see roofline_op.cc).");

REGISTER_KERNEL_BUILDER(Name("Tfdisc>SelectedKernel").Device(tf::DEVICE_CPU),
                        SelectedKernelOp);

// Tfdisc>SpinPoolStats: [workers, jobs run, chunks run by workers, back-offs,
// backing off now (0/1)] of the op
// library's spinning pool (core/spin_pool.h; zeros before its first use), so
// tests and benchmarks can see whether it ran and whether its workers helped.
class SpinPoolStatsOp : public tf::OpKernel {
 public:
  using tf::OpKernel::OpKernel;
  void Compute(tf::OpKernelContext* ctx) override {
    tf::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {5}, &out));
    auto v = out->vec<tf::int64>();
    const core::SpinPool* pool = core::CreatedSpinPool().load();
    v(0) = pool != nullptr ? pool->workers() : 0;
    v(1) = pool != nullptr ? pool->jobs() : 0;
    v(2) = pool != nullptr ? pool->worker_chunks() : 0;
    v(3) = pool != nullptr ? pool->backoffs() : 0;
    v(4) = pool != nullptr && pool->backing_off() ? 1 : 0;
  }
};

REGISTER_OP("Tfdisc>SpinPoolStats")
    .Output("stats: int64")
    .SetIsStateful()
    .SetShapeFn([](::tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(5));
      return absl::OkStatus();
    })
    .Doc("[workers, jobs, worker chunks, back-offs, backing off] of the spinning pool (see roofline_op.cc).");

REGISTER_KERNEL_BUILDER(Name("Tfdisc>SpinPoolStats").Device(tf::DEVICE_CPU),
                        SpinPoolStatsOp);

}  // namespace kernels
}  // namespace tfdisc
