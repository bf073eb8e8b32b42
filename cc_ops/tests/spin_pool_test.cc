// Standalone test of cc_ops/core/spin_pool.h (no TensorFlow, no gtest); built
// like core_test and run under ASan+UBSan and TSan by cc_ops/sanitize.sh:
//
//   * every index of [0, total) covered exactly once, by chunks of the
//     requested size, for many totals / chunk sizes / worker counts, spin 0
//     and non-zero;
//   * several threads calling one pool at once (a busy pool refuses, the
//     caller falls back to serial), and a nested call from inside a job;
//   * repeated start / stop, with and without jobs, and TryRun after
//     Shutdown;
//   * that the workers take part (a job of slow chunks is shared);
//   * the policy RunOnSpinPool (when it uses the pool) and the global pool;
//   * BinaryDense run through the pool against SerialFor, bit for bit.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cc_ops/core/bdense.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/spin_pool.h"
#include "cc_ops/tests/check.h"

using namespace tfdisc::core;  // NOLINT

namespace {

// Runs one job and returns the number of indices not covered exactly once
// (or covered by a malformed chunk); -1 if the pool refused the job.
std::int64_t CoverOnce(SpinPool* pool, std::int64_t total, std::int64_t chunk,
                       int helpers, std::int64_t spin_us) {
  std::unique_ptr<std::atomic<int>[]> hits(new std::atomic<int>[total > 0 ? total : 1]);
  for (std::int64_t i = 0; i < total; ++i) hits[i].store(0);
  std::atomic<std::int64_t> bad_chunks{0};
  const bool ran = pool->TryRun(total, chunk, helpers, spin_us,
                                [&](std::int64_t b, std::int64_t e) {
    if (b < 0 || e > total || b >= e || b % chunk != 0 ||
        (e - b != chunk && e != total))
      bad_chunks.fetch_add(1);
    for (std::int64_t i = b; i < e && i < total && i >= 0; ++i) hits[i].fetch_add(1);
  });
  if (!ran) return -1;
  std::int64_t wrong = bad_chunks.load();
  for (std::int64_t i = 0; i < total; ++i) wrong += hits[i].load() != 1;
  return wrong;
}

void TestCoverage() {
  for (int workers : {0, 1, 2, 3}) {
    for (std::int64_t spin : {0, 50}) {
      SpinPool pool(workers, spin, /*backoff=*/false);
      for (std::int64_t total : {0, 1, 2, 3, 7, 63, 64, 65, 100, 1000, 4097}) {
        for (std::int64_t chunk : {1, 2, 3, 7, 64, 5000}) {
          for (int helpers : {0, 1, workers}) {
            const std::int64_t wrong = CoverOnce(&pool, total, chunk, helpers, spin);
            CHECK(wrong == 0, "workers %d spin %lld total %lld chunk %lld helpers %d: %lld wrong",
                  workers, static_cast<long long>(spin), static_cast<long long>(total),
                  static_cast<long long>(chunk), helpers, static_cast<long long>(wrong));
          }
        }
      }
    }
  }
}

// Several threads share one pool: each job either runs on the pool or is
// refused and run serially by its caller; every job covers its range once.
void TestConcurrentCallers() {
  for (std::int64_t spin : {0, 100}) {
    SpinPool pool(2, spin, /*backoff=*/false);
    std::atomic<std::int64_t> wrong{0}, on_pool{0}, refused{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&, t] {
        std::mt19937 rng(t);
        for (int job = 0; job < 300; ++job) {
          const std::int64_t total = 1 + rng() % 300, chunk = 1 + rng() % 17;
          const std::int64_t r = CoverOnce(&pool, total, chunk, 2, spin);
          if (r < 0) {
            refused.fetch_add(1);
          } else {
            on_pool.fetch_add(1);
            wrong.fetch_add(r);
          }
        }
      });
    }
    for (std::thread& c : callers) c.join();
    CHECK(wrong.load() == 0, "concurrent callers, spin %lld: %lld wrong",
          static_cast<long long>(spin), static_cast<long long>(wrong.load()));
    CHECK(on_pool.load() + refused.load() == 1200, "jobs lost");
    CHECK(on_pool.load() > 0, "no job ran on the pool");
    std::printf("concurrent callers, spin %lld us: %lld jobs on the pool, %lld refused (busy)\n",
                static_cast<long long>(spin), static_cast<long long>(on_pool.load()),
                static_cast<long long>(refused.load()));
  }
}

// A job calling the pool again from inside a chunk is refused (no deadlock).
void TestNested() {
  SpinPool pool(1, 100, /*backoff=*/false);
  std::atomic<int> inner_ran{0}, inner_refused{0};
  const bool ran = pool.TryRun(8, 1, 1, 100, [&](std::int64_t, std::int64_t) {
    if (pool.TryRun(4, 1, 1, 100, [](std::int64_t, std::int64_t) {}))
      inner_ran.fetch_add(1);
    else
      inner_refused.fetch_add(1);
  });
  CHECK(ran, "outer job refused");
  CHECK(inner_ran.load() == 0 && inner_refused.load() == 8, "nested: %d ran, %d refused",
        inner_ran.load(), inner_refused.load());
}

void TestStartStop() {
  for (int round = 0; round < 40; ++round) {
    const int workers = round % 4;
    const std::int64_t spin = (round / 4) % 2 ? 200 : 0;
    SpinPool pool(workers, spin, /*backoff=*/false);
    if (round % 3 != 0) {
      CHECK(CoverOnce(&pool, 500, 3, workers, spin) == 0, "start/stop round %d", round);
    }
    if (round % 2 == 0) {
      pool.Shutdown();
      CHECK(CoverOnce(&pool, 10, 1, workers, spin) == -1,
            "TryRun after Shutdown must refuse (round %d)", round);
      pool.Shutdown();  // idempotent; the destructor calls it a third time
    }
  }
  // Stopping while a worker sleeps, and while it spins right after a job.
  for (std::int64_t spin : {0, 100000}) {
    SpinPool pool(2, spin, /*backoff=*/false);
    CHECK(CoverOnce(&pool, 64, 1, 2, spin) == 0, "job before stop");
  }
}

// With workers spinning, a job of slow chunks is shared with them.
void TestWorkersTakePart() {
  if (std::thread::hardware_concurrency() < 2) {
    std::printf("one hardware thread: skipping the participation test\n");
    return;
  }
  SpinPool pool(1, 20000, /*backoff=*/false);
  int shared = 0, incomplete = 0;
  for (int job = 0; job < 20; ++job) {
    std::mutex mu;
    std::set<std::thread::id> ids;
    std::atomic<int> done{0};
    pool.TryRun(16, 1, 1, 20000, [&](std::int64_t, std::int64_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(300));
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
      done.fetch_add(1);
    });
    // TryRun returns only after the worker's claimed chunks have finished.
    incomplete += done.load() != 16;
    shared += ids.size() > 1;
  }
  CHECK(incomplete == 0, "%d of 20 jobs returned before all chunks finished", incomplete);
  CHECK(shared > 0, "no job out of 20 was shared with the worker");
  std::printf("participation: %d of 20 slow jobs shared with the worker\n", shared);
}

// A worker that holds a chunk for long (as when it loses its CPU) in 4 of
// the last 64 jobs makes the pool refuse jobs for a while (one such job, a
// glitch, does not); then the pool accepts jobs again.
void TestBackoff() {
  SpinPool pool(1, 20000);
  const std::thread::id caller = std::this_thread::get_id();
  int slow_jobs = 0;
  for (int attempt = 0; attempt < 400 && pool.backoffs() == 0; ++attempt) {
    std::atomic<bool> worker_took{false};
    const bool ran = pool.TryRun(64, 1, 1, 20000, [&](std::int64_t, std::int64_t) {
      if (std::this_thread::get_id() != caller) {
        // Much longer than the caller's share, even if the caller loses its
        // CPU for a time slice: the caller has to wait for this chunk.
        if (!worker_took.exchange(true))
          std::this_thread::sleep_for(std::chrono::milliseconds(30));
      } else {  // slow caller chunks give the worker time to join
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(5);
        while (std::chrono::steady_clock::now() < until) {
        }
      }
    });
    CHECK(ran, "refused before any back-off");
    slow_jobs += worker_took.load();
    if (slow_jobs < 4) CHECK(pool.backoffs() == 0, "backed off after %d slow jobs", slow_jobs);
  }
  if (pool.backoffs() == 0) {
    std::printf("back-off: the worker took chunks in only %d jobs; not checked\n", slow_jobs);
    return;
  }
  CHECK(slow_jobs >= 4, "backed off after %d slow jobs, expected 4", slow_jobs);
  CHECK(CoverOnce(&pool, 64, 1, 1, 20000) == -1, "no back-off after a preempted worker");
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  CHECK(CoverOnce(&pool, 64, 1, 1, 20000) == 0, "the pool did not come back after its back-off");
}

void TestPolicy() {
  std::atomic<std::int64_t> covered{0};
  const SpinPool::Fn count = [&](std::int64_t b, std::int64_t e) { covered.fetch_add(e - b); };
  // Disabled, one thread, one unit, too little or too much work: not used.
  CHECK(!RunOnSpinPool(2, 0, 64, 1280, count), "spin 0 must not use the pool");
  CHECK(!RunOnSpinPool(1, 200, 64, 1280, count), "one thread must not use the pool");
  CHECK(!RunOnSpinPool(2, 200, 1, 50000, count), "one unit must not use the pool");
  CHECK(!RunOnSpinPool(2, 200, 64, 10, count), "tiny work must not use the pool");
  CHECK(!RunOnSpinPool(2, 200, 64, 1 << 20, count), "large work belongs to the sharder");
  CHECK(covered.load() == 0, "a refused call ran work");
  // 64 blocks x 1280 cycles: the 1x4096x4096 GEMV's estimate.
  const bool used = RunOnSpinPool(2, 200, 64, 1280, count);
  if (std::thread::hardware_concurrency() >= 2) {
    // (Unless the pool backs off: its worker kept losing the CPU.)
    CHECK((used && covered.load() == 64) || (!used && GlobalSpinPool(1)->backing_off()),
          "GEMV-sized work: used %d, covered %lld", used,
          static_cast<long long>(covered.load()));
  } else {
    CHECK(!used && GlobalSpinPool(1) == nullptr, "one hardware thread: no pool");
  }
  {
    std::int64_t us = -1;
    std::string error;
    unsetenv("TFDISC_OPS_SPIN_US");
    CHECK(SpinMicrosFromEnv(&us, &error) && us == 0, "unset: pool off (got %lld)",
          static_cast<long long>(us));
    setenv("TFDISC_OPS_SPIN_US", "150", 1);
    CHECK(SpinMicrosFromEnv(&us, &error) && us == 150, "150 us");
    for (const char* bad : {"-1", "2x", "abc", "99999999999999999999"}) {
      setenv("TFDISC_OPS_SPIN_US", bad, 1);
      error.clear();
      CHECK(!SpinMicrosFromEnv(&us, &error) && error.find(bad) != std::string::npos,
            "invalid TFDISC_OPS_SPIN_US '%s' rejected with its value named", bad);
    }
    unsetenv("TFDISC_OPS_SPIN_US");
  }
}

// BinaryDense through the global pool equals SerialFor, bit for bit.
void TestDenseThroughPool() {
  const KernelType type = KernelSupported(KernelType::kAvx2) ? KernelType::kAvx2
                                                              : KernelType::kPortable;
  std::mt19937 rng(7);
  for (std::int64_t m : {1, 2, 33}) {
    for (std::int64_t n : {64, 200, 4096}) {
      const std::int64_t words = 17 + static_cast<std::int64_t>(rng() % 100);
      std::vector<TWord> x(m * words), w(n * words);
      for (TWord& v : x) v = static_cast<TWord>(rng());
      for (TWord& v : w) v = static_cast<TWord>(rng());
      BDenseArgs args;
      args.x = x.data();
      args.w = w.data();
      args.m = m;
      args.n = n;
      args.words = words;
      args.k = words * 32;
      args.transform.kind = OutputKind::kInt32;
      args.out_stride = n;
      std::vector<std::int32_t> serial(m * n, -7), pooled(m * n, -9);
      args.out = serial.data();
      BinaryDense(args, DenseKernelsFor(type), SerialFor);
      args.out = pooled.data();
      int pool_calls = 0;
      const ParallelFor pooled_for = [&](std::int64_t total, std::int64_t cost,
                                         const std::function<void(std::int64_t, std::int64_t)>& fn) {
        // Bypass the cost thresholds: always try the pool.
        SpinPool* pool = GlobalSpinPool(1);
        if (pool != nullptr && pool->TryRun(total, 1 + total / 16, 1, 200, fn)) {
          ++pool_calls;
        } else {
          SerialFor(total, cost, fn);
        }
      };
      BinaryDense(args, DenseKernelsFor(type), pooled_for);
      CHECK(serial == pooled, "dense %lldx%lldx%lld through the pool differs",
            static_cast<long long>(m), static_cast<long long>(words),
            static_cast<long long>(n));
    }
  }
}

}  // namespace

int main() {
  TestCoverage();
  TestConcurrentCallers();
  TestNested();
  TestStartStop();
  TestWorkersTakePart();
  TestBackoff();
  TestPolicy();
  TestDenseThroughPool();
  return tfdisc_test::CheckSummary();
}
