// The check macro and summary of the framework-free C++ tests (core_test,
// spin_pool_test): a failed CHECK prints its location and message and the
// test carries on; CheckSummary() prints "N checks, M failures" (what
// tests/ops/native_cc_test.py reads) and gives the exit status.
#ifndef TFDISC_CC_OPS_TESTS_CHECK_H_
#define TFDISC_CC_OPS_TESTS_CHECK_H_

#include <cstdio>

namespace tfdisc_test {

inline int g_failures = 0;
inline int g_checks = 0;

inline int CheckSummary() {
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace tfdisc_test

#define CHECK(cond, ...)                                        \
  do {                                                          \
    ++tfdisc_test::g_checks;                                    \
    if (!(cond)) {                                              \
      ++tfdisc_test::g_failures;                                \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                        \
      std::fprintf(stderr, "\n");                               \
    }                                                           \
  } while (0)

#endif  // TFDISC_CC_OPS_TESTS_CHECK_H_
