// A small persistent worker pool for work too small for TensorFlow's
// intra-op pool (batch-1 layers), framework-free.
//
// Why: TensorFlow's sharder wakes a sleeping intra-op thread per parallel
// call. Where that wake-up is expensive (a KVM guest waking a halted vCPU:
// 34-80 us measured, more than a whole 1x4096x4096 GEMV on one core), its
// cost model rightly keeps such a layer on one thread. This pool removes the
// wake-up from the critical path instead, as pthreadpool/XNNPACK, ruy and
// OpenMP runtimes (KMP_BLOCKTIME) do: its workers spin for a bounded time
// after each job before they sleep, so back-to-back layers find them awake.
//
// It can never be much slower than one thread: the caller and the workers
// take chunks from atomic counters (each starts on its own contiguous region,
// for cache affinity across calls, then takes what is left of the others');
// the caller never waits for a worker to start (a sleeping worker is
// signalled and the caller starts on the chunks at once), it waits only for
// chunks a worker has already claimed. One job at a time: TryRun returns
// false when another job is running (concurrent or nested op invocations),
// and the caller then runs its work another way. Bounded: spin time, wait
// for a claimed chunk (with back-off when workers keep losing their CPU).
#ifndef TFDISC_CC_OPS_CORE_SPIN_POOL_H_
#define TFDISC_CC_OPS_CORE_SPIN_POOL_H_

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tfdisc {
namespace core {

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class SpinPool {
  using Clock = std::chrono::steady_clock;

 public:
  using Fn = std::function<void(std::int64_t, std::int64_t)>;
  static constexpr int kMaxWorkers = 64;
  static constexpr std::int64_t kMaxSpinMicros = 100000;

  // Starts `workers` threads (clamped to [0, kMaxWorkers]); they spin for
  // `spin_us` after start and after each job (TryRun can change it).
  // `backoff`: refuse jobs for a while after a worker was found preempted
  // (see WaitForWorkers).
  explicit SpinPool(int workers, std::int64_t spin_us = 0, bool backoff = true)
      : backoff_(backoff) {
    SetSpin(spin_us);
    const int n = std::max(0, std::min(workers, kMaxWorkers));
    threads_.reserve(n);
    for (int i = 0; i < n; ++i) threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
  ~SpinPool() { Shutdown(); }
  SpinPool(const SpinPool&) = delete;
  SpinPool& operator=(const SpinPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }

  // Calls fn(begin, end) on chunks of `chunk` units (the last one shorter)
  // covering [0, total) exactly once, on the calling thread and on up to
  // `helpers` workers, and returns when all are done. Workers spin for
  // `spin_us` after this job. Returns false without calling fn when the pool
  // is running another job or has been shut down.
  bool TryRun(std::int64_t total, std::int64_t chunk, int helpers,
              std::int64_t spin_us, const Fn& fn) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    if (helpers > 0 && backing_off()) {
      busy_.store(false, std::memory_order_release);
      return false;
    }
    if (total <= 0) {
      busy_.store(false, std::memory_order_release);
      return true;
    }
    fn_ = &fn;
    total_ = total;
    chunk_ = std::max<std::int64_t>(1, chunk);
    helpers_ = std::max(0, std::min(helpers, workers()));
    // One contiguous region of chunks per participant (the caller: region 0,
    // worker i: region i + 1), so that back-to-back calls give each thread
    // the same part of the work (its weights stay in that core's cache).
    const std::int64_t chunks = (total + chunk_ - 1) / chunk_;
    const std::int64_t parts = helpers_ + 1;
    for (std::int64_t r = 0; r < parts; ++r) {
      regions_[r].next.store(r * chunks / parts, std::memory_order_relaxed);
      regions_[r].end = (r + 1) * chunks / parts;
    }
    SetSpin(spin_us);
    // Odd epoch = a job is open. The seq_cst store / load pairs with the
    // workers' seq_cst sleeping_ increment / epoch load (no lost wake-up).
    const std::uint64_t open = epoch_.load(std::memory_order_relaxed) + 1;
    epoch_.store(open, std::memory_order_seq_cst);
    if (helpers > 0 && sleeping_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(mu_); }
      cv_.notify_all();
    }
    RunChunks(0);
    // Close the job, then wait for the workers that joined it: they hold at
    // most one claimed chunk each. A worker that increments active_ after
    // this load sees the closed epoch and leaves without touching the job
    // (seq_cst on both sides: Dekker's pattern).
    epoch_.store(open + 1, std::memory_order_seq_cst);
    if (active_.load(std::memory_order_seq_cst) != 0) WaitForWorkers();
    jobs_.fetch_add(1, std::memory_order_relaxed);
    busy_.store(false, std::memory_order_release);
    return true;
  }

  // Jobs run so far, and chunks of them run by workers (not the caller).
  std::int64_t jobs() const { return jobs_.load(std::memory_order_relaxed); }
  std::int64_t worker_chunks() const {
    return worker_chunks_.load(std::memory_order_relaxed);
  }
  // Jobs after which the pool backed off (a worker had lost its CPU), and
  // whether it is backing off now.
  std::int64_t backoffs() const { return backoffs_.load(std::memory_order_relaxed); }
  bool backing_off() const {
    return Clock::now().time_since_epoch().count() <
           backoff_until_.load(std::memory_order_relaxed);
  }

  // Stops and joins the workers; later TryRun calls return false. Waits for a
  // job in progress. Idempotent.
  void Shutdown() {
    std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
    if (shut_down_) return;
    for (int i = 0; busy_.exchange(true, std::memory_order_acquire); ++i) {
      if (i < 4096) {
        CpuRelax();
      } else {
        std::this_thread::yield();
      }
    }
    shut_down_ = true;  // busy_ stays true: no more jobs
    stop_.store(true, std::memory_order_seq_cst);
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  // After fork() the child has none of the workers: make the pool refuse
  // jobs (never joined there, see GlobalSpinPool).
  void MarkForked() { busy_.store(true, std::memory_order_relaxed); }

 private:
  // Waits for the workers still inside the closed job. A chunk is a few
  // microseconds; a wait much longer than that means a worker lost its CPU.
  // That happens now and then anyway (interrupts, kernel threads); when it
  // happens in kSlowJobsToBackoff of the last 64 jobs, more threads than
  // cores are runnable (other processes), and the pool stays unused for a
  // while (TryRun returns false, callers run serially), so that an
  // oversubscribed machine does not make every small op wait for a
  // descheduled worker: kMinBackoff, doubled (up to kMaxBackoff) when the
  // next back-off follows within a second of the previous one's end.
  void WaitForWorkers() {
    const auto start = Clock::now();
    bool slow = false;
    for (unsigned i = 1; active_.load(std::memory_order_seq_cst) != 0; ++i) {
      if (slow) {
        std::this_thread::yield();
      } else {
        CpuRelax();
        if ((i & 63) == 0 && Clock::now() - start > kPreemptedWait) slow = true;
      }
    }
    // Only the caller that owns the pool (busy_) gets here: plain fields.
    slow_history_ = (slow_history_ << 1) | (slow ? 1u : 0u);
    if (backoff_ && slow && __builtin_popcountll(slow_history_) >= kSlowJobsToBackoff) {
      const auto now = Clock::now();
      backoff_ns_ = now - last_backoff_end_ < std::chrono::seconds(1)
                        ? std::min<Clock::duration>(2 * backoff_ns_, kMaxBackoff)
                        : Clock::duration(kMinBackoff);
      last_backoff_end_ = now + backoff_ns_;
      backoff_until_.store(last_backoff_end_.time_since_epoch().count(),
                           std::memory_order_relaxed);
      backoffs_.fetch_add(1, std::memory_order_relaxed);
      slow_history_ = 0;
    }
  }

  void SetSpin(std::int64_t spin_us) {
    spin_us = std::max<std::int64_t>(0, std::min(spin_us, kMaxSpinMicros));
    spin_ns_.store(spin_us * 1000, std::memory_order_relaxed);
  }

  // Runs chunks of region `own` (0: the caller), then takes what is left in
  // the other regions (of a worker that is asleep or slower).
  void RunChunks(int own) {
    const Fn& fn = *fn_;
    const std::int64_t total = total_, chunk = chunk_;
    const int parts = helpers_ + 1;
    std::int64_t chunks = 0;
    for (int i = 0; i < parts; ++i) {
      Region& region = regions_[(own + i) % parts];
      for (;; ++chunks) {
        const std::int64_t c = region.next.fetch_add(1, std::memory_order_relaxed);
        if (c >= region.end) break;
        fn(c * chunk, std::min((c + 1) * chunk, total));
      }
    }
    if (own > 0 && chunks > 0) worker_chunks_.fetch_add(chunks, std::memory_order_relaxed);
  }

  static bool IsNewJob(std::uint64_t epoch, std::uint64_t seen) {
    return (epoch & 1) != 0 && epoch != seen;
  }

  // The epoch of an open job this worker has not joined yet, or 0 on stop:
  // spins for spin_ns_, then sleeps on the condition variable.
  std::uint64_t WaitForJob(std::uint64_t seen) {
    const auto start = Clock::now();
    const std::int64_t spin_ns = spin_ns_.load(std::memory_order_relaxed);
    for (unsigned i = 0;; ++i) {
      if (stop_.load(std::memory_order_acquire)) return 0;
      const std::uint64_t e = epoch_.load(std::memory_order_seq_cst);
      if (IsNewJob(e, seen)) return e;
      if ((i & (kYieldEvery - 1)) == kYieldEvery - 1) {
        if (std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start)
                .count() >= spin_ns)
          break;
        std::this_thread::yield();
      }
      CpuRelax();
    }
    std::unique_lock<std::mutex> lock(mu_);
    sleeping_.fetch_add(1, std::memory_order_seq_cst);
    std::uint64_t result = 0;
    for (;;) {
      if (stop_.load(std::memory_order_seq_cst)) break;
      const std::uint64_t e = epoch_.load(std::memory_order_seq_cst);
      if (IsNewJob(e, seen)) {
        result = e;
        break;
      }
      cv_.wait(lock);
    }
    sleeping_.fetch_sub(1, std::memory_order_relaxed);
    return result;
  }

  void WorkerLoop(int index) {
    std::uint64_t seen = 0;
    for (;;) {
      const std::uint64_t e = WaitForJob(seen);
      if (e == 0) return;
      seen = e;
      active_.fetch_add(1, std::memory_order_seq_cst);
      // Still the same open job? Then its fields are stable until active_
      // drops back to 0; otherwise leave without reading them.
      if (epoch_.load(std::memory_order_seq_cst) == e && index < helpers_) RunChunks(index + 1);
      active_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  static constexpr std::chrono::microseconds kPreemptedWait{50};
  static constexpr int kSlowJobsToBackoff = 4;
  static constexpr std::chrono::milliseconds kMinBackoff{20};
  static constexpr std::chrono::milliseconds kMaxBackoff{640};
  // While spinning, a worker yields its CPU every kYieldEvery pauses (a few
  // microseconds), so that on an oversubscribed machine a spinning worker
  // gives way to runnable threads (the op's caller among them).
  static constexpr unsigned kYieldEvery = 64;

  // The current job (written by the caller while no worker is inside it).
  const bool backoff_;
  const Fn* fn_ = nullptr;
  std::int64_t total_ = 0, chunk_ = 1;
  int helpers_ = 0;
  // Hot atomics on their own cache lines: workers spin on epoch_ while
  // participants take chunks from the regions.
  struct alignas(64) Region {
    std::atomic<std::int64_t> next{0};  // next chunk index to take
    std::int64_t end = 0;               // one past the region's last chunk
  };
  Region regions_[kMaxWorkers + 1];
  alignas(64) std::atomic<std::uint64_t> epoch_{0};  // odd: a job is open
  alignas(64) std::atomic<int> active_{0};           // workers inside the current job
  std::atomic<int> sleeping_{0};
  std::atomic<bool> busy_{false};                    // a caller owns the pool
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> spin_ns_{0};
  std::atomic<Clock::rep> backoff_until_{0};
  Clock::duration backoff_ns_{kMinBackoff};
  Clock::time_point last_backoff_end_{};
  std::uint64_t slow_history_ = 0;  // bit i: job i ago had a slow wait
  std::atomic<std::int64_t> jobs_{0}, worker_chunks_{0}, backoffs_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
  std::vector<std::thread> threads_;
};

// --- The op library's pool and the policy that decides when to use it. ---

// TFDISC_OPS_SPIN_US: how long (microseconds) the pool's workers spin after a
// job before sleeping; unset, empty or 0: the pool is off (all work goes to
// TensorFlow's sharder). Opt-in: measured on a 2-vCPU KVM guest, it halves
// eager batch-1 dense calls but slows batch-1 convs in a graph by up to ~15 %
// (its spinning worker holds a core TensorFlow's pool wants); see
// cc_ops/README.md. Read on every op call. Returns false, with `error` set,
// for a value that is not a non-negative integer.
constexpr std::int64_t kDefaultSpinMicros = 0;

inline bool SpinMicrosFromEnv(std::int64_t* us, std::string* error) {
  *us = kDefaultSpinMicros;
  const char* value = std::getenv("TFDISC_OPS_SPIN_US");
  if (value == nullptr || *value == '\0') return true;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(value, &end, 10);
  if (end == value || *end != '\0' || parsed < 0 || errno == ERANGE) {
    *error = std::string("TFDISC_OPS_SPIN_US must be a non-negative integer "
                         "(microseconds; 0 or unset: pool off), got '") +
             value + "'";
    return false;
  }
  *us = std::min<std::int64_t>(parsed, SpinPool::kMaxSpinMicros);
  return true;
}

// Set in a forked child (whose pool has no workers).
inline std::atomic<bool>& SpinPoolForked() {
  static std::atomic<bool> forked{false};
  return forked;
}

// The global pool if GlobalSpinPool has created it, else nullptr (for stats).
inline std::atomic<SpinPool*>& CreatedSpinPool() {
  static std::atomic<SpinPool*> created{nullptr};
  return created;
}

// The process-wide pool, created on first use with `workers` threads (capped
// at the hardware threads - 1); nullptr if that is 0. Its threads are joined
// at exit (library unload); the object itself is never freed, so a late
// caller finds a shut-down pool (TryRun false) rather than freed memory.
inline SpinPool* GlobalSpinPool(int workers) {
  static SpinPool* pool = [workers]() -> SpinPool* {
    const int hw = static_cast<int>(std::thread::hardware_concurrency());
    const int n = std::min(workers, hw > 1 ? hw - 1 : 0);
    if (n < 1) return nullptr;
    auto* p = new SpinPool(n);
    CreatedSpinPool().store(p);
    return p;
  }();
  static struct JoinAtExit {
    explicit JoinAtExit(SpinPool* p) : pool(p) {
      // In a forked child the workers do not exist: refuse jobs, never join.
      if (pool != nullptr) pthread_atfork(nullptr, nullptr, [] {
        SpinPoolForked().store(true);
        GlobalSpinPool(0)->MarkForked();
      });
    }
    ~JoinAtExit() {
      if (pool != nullptr && !SpinPoolForked().load()) pool->Shutdown();
    }
    SpinPool* pool;
  } join_at_exit(pool);
  return pool;
}

// Rough cycle count below which TensorFlow's sharder (Eigen's cost model:
// 100000 cycles to start, 100000 per extra thread) runs on one thread.
constexpr double kShardSerialBelowCycles = 210000;
// Below this estimate a job is too short to split at all.
constexpr double kSpinPoolMinCycles = 20000;
// Chunks per participating thread (balance) and minimum chunk size.
constexpr std::int64_t kChunksPerThread = 8;
constexpr double kMinChunkCycles = 2000;

// Runs fn over [0, total) on the pool when the sharder would keep it on one
// thread (`threads` = the intra-op thread count, `cost_per_unit` in cycles as
// for tensorflow::Shard) and the pool is free. Returns false if it ran
// nothing; the caller then runs the work its usual way.
inline bool RunOnSpinPool(int threads, std::int64_t spin_us, std::int64_t total,
                          std::int64_t cost_per_unit, const SpinPool::Fn& fn) {
  if (spin_us <= 0 || threads < 2 || total < 2) return false;
  const double work = static_cast<double>(total) * static_cast<double>(cost_per_unit);
  if (work >= kShardSerialBelowCycles || work < kSpinPoolMinCycles) return false;
  SpinPool* pool = GlobalSpinPool(threads - 1);
  if (pool == nullptr) return false;
  const int helpers = std::min(threads - 1, pool->workers());
  const std::int64_t by_balance =
      (total + kChunksPerThread * (helpers + 1) - 1) / (kChunksPerThread * (helpers + 1));
  const std::int64_t by_size = static_cast<std::int64_t>(
      kMinChunkCycles / std::max<double>(1.0, static_cast<double>(cost_per_unit)) + 1);
  const std::int64_t chunk = std::max<std::int64_t>(1, std::max(by_balance, by_size));
  return pool->TryRun(total, chunk, helpers, spin_us, fn);
}

}  // namespace core
}  // namespace tfdisc

#endif  // TFDISC_CC_OPS_CORE_SPIN_POOL_H_
