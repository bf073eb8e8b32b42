// Run-time kernel selection: the one place that knows every KernelType.
#include <cstdlib>
#include <cstring>
#include <string>

#include "cc_ops/core/bgemm/kernels.h"

namespace tfdisc {
namespace core {

#if defined(__x86_64__)
std::int64_t XorPopcountRooflineAvx512(const TWord* a, const TWord* b,
                                       std::int64_t words, std::int64_t iters);
std::int64_t XorPopcountRooflineAvx2(const TWord* a, const TWord* b,
                                     std::int64_t words, std::int64_t iters);
std::int64_t XorPopcountRooflineAvx512Bw(const TWord* a, const TWord* b,
                                         std::int64_t words, std::int64_t iters);
#endif
#if defined(__aarch64__)
std::int64_t XorPopcountRooflineNeon(const TWord* a, const TWord* b,
                                     std::int64_t words, std::int64_t iters);
#endif

bool KernelSupported(KernelType type) {
  switch (type) {
    case KernelType::kReference:
    case KernelType::kPortable:
      return true;
#if defined(__x86_64__)
    case KernelType::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    case KernelType::kAvx512Bw:
      return __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw");
    case KernelType::kAvx512:
      return __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512vpopcntdq");
#endif
#if defined(__aarch64__)
    case KernelType::kNeon:
      return true;  // Advanced SIMD is mandatory in AArch64
#endif
    default:
      return false;
  }
}

const char* KernelName(KernelType type) {
  switch (type) {
    case KernelType::kReference:
      return "reference";
    case KernelType::kPortable:
      return "portable";
    case KernelType::kAvx2:
      return "avx2";
    case KernelType::kAvx512Bw:
      return "avx512bw";
    case KernelType::kAvx512:
      return "avx512";
    case KernelType::kNeon:
      return "neon";
  }
  return "unknown";
}

bool SelectKernel(KernelType* type, std::string* error) {
  const char* env = std::getenv("TFDISC_OPS_KERNEL");
  if (env == nullptr || env[0] == '\0' || std::strcmp(env, "auto") == 0) {
    if (KernelSupported(KernelType::kNeon)) {
      *type = KernelType::kNeon;
    } else if (KernelSupported(KernelType::kAvx512)) {
      *type = KernelType::kAvx512;
    } else if (KernelSupported(KernelType::kAvx512Bw)) {
      *type = KernelType::kAvx512Bw;
    } else if (KernelSupported(KernelType::kAvx2)) {
      *type = KernelType::kAvx2;
    } else {
      *type = KernelType::kPortable;
    }
    return true;
  }
  for (KernelType t : {KernelType::kReference, KernelType::kPortable,
                       KernelType::kAvx2, KernelType::kAvx512Bw,
                       KernelType::kAvx512, KernelType::kNeon}) {
    if (std::strcmp(env, KernelName(t)) == 0) {
      if (!KernelSupported(t)) {
        *error = std::string("TFDISC_OPS_KERNEL=") + env +
                 " requested, but this CPU does not support it";
        return false;
      }
      *type = t;
      return true;
    }
  }
  *error = std::string("TFDISC_OPS_KERNEL must be one of auto, reference, "
                       "portable, avx2, avx512bw, avx512, neon; got '") +
           env + "'";
  return false;
}

PopcountGemmFn GetPopcountGemm(KernelType type) {
  switch (type) {
#if defined(__x86_64__)
    case KernelType::kAvx512:
      return &PopcountGemmAvx512;
    case KernelType::kAvx512Bw:
      return &PopcountGemmAvx512Bw;
    case KernelType::kAvx2:
      return &PopcountGemmAvx2;
#endif
#if defined(__aarch64__)
    case KernelType::kNeon:
      return &PopcountGemmNeon;
#endif
    case KernelType::kPortable:
      return &PopcountGemmPortable;
    default:
      return &PopcountGemmReference;
  }
}

PopcountGemmTransposedFn GetPopcountGemmTransposed(KernelType type) {
#if defined(__x86_64__)
  if (type == KernelType::kAvx512) return &PopcountGemmTransposedAvx512;
  // avx512bw too: below kTransposedMaxWords its 512-bit row-major tiles
  // measured 1.2-1.6x slower than this AVX2 kernel (bconv2d/optimized.h).
  if (type == KernelType::kAvx2 || type == KernelType::kAvx512Bw)
    return &PopcountGemmTransposedAvx2;
#endif
  (void)type;
  return nullptr;
}

PopcountGemmTransposedSplitFn GetPopcountGemmTransposedSplit(KernelType type) {
#if defined(__x86_64__)
  // The kernels whose transposed kernel is the AVX2 one.
  if (type == KernelType::kAvx2 || type == KernelType::kAvx512Bw)
    return &PopcountGemmTransposedSplitAvx2;
#endif
  (void)type;
  return nullptr;
}

BitpackFloatFn GetBitpackFloat(KernelType type) {
#if defined(__x86_64__)
  if (type == KernelType::kAvx512) return &BitpackFloatAvx512;
  if (type == KernelType::kAvx512Bw || type == KernelType::kAvx2)
    return &BitpackFloatAvx2;
#endif
  (void)type;
  return &BitpackFloatPortable;
}

#if defined(__x86_64__)
void FloatGemmBitsAvx2(const float* a, std::int64_t m, std::int64_t k,
                       const float* w, const float* bias, std::int64_t n,
                       TWord* out, std::int64_t ldo);
#endif

FloatGemmBitsFn GetFloatGemmBits(KernelType type) {
#if defined(__x86_64__)
  if ((type == KernelType::kAvx2 || type == KernelType::kAvx512Bw ||
       type == KernelType::kAvx512) &&
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return &FloatGemmBitsAvx2;
#endif
  (void)type;
  return &FloatGemmBitsPortable;
}

std::int64_t XorPopcountRoofline(KernelType type, const TWord* a,
                                 const TWord* b, std::int64_t words,
                                 std::int64_t iters) {
#if defined(__x86_64__)
  if (type == KernelType::kAvx512)
    return XorPopcountRooflineAvx512(a, b, words, iters);
  if (type == KernelType::kAvx512Bw)
    return XorPopcountRooflineAvx512Bw(a, b, words, iters);
  if (type == KernelType::kAvx2)
    return XorPopcountRooflineAvx2(a, b, words, iters);
#endif
#if defined(__aarch64__)
  if (type == KernelType::kNeon)
    return XorPopcountRooflineNeon(a, b, words, iters);
#endif
  std::int32_t p[4];
  std::int64_t total = 0;
  const std::int64_t half = words / 2;
  PopcountGemmFn fn = GetPopcountGemm(type);
  for (std::int64_t it = 0; it < iters; ++it) {
    fn(a, half, b, half, 2, 2, half, p, 2);
    total += p[0];
  }
  volatile std::int64_t sink = total;
  (void)sink;
  return iters * 4 * half * 32;
}

}  // namespace core
}  // namespace tfdisc
