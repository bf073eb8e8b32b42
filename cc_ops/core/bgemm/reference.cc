// Reference popcount-GEMM: one output at a time, one 32-bit word at a time.
#include "cc_ops/core/bgemm/kernels.h"

namespace tfdisc {
namespace core {

void PopcountGemmReference(const TWord* a, std::int64_t lda, const TWord* b,
                           std::int64_t ldb, int m, int n, std::int64_t words,
                           std::int32_t* p, std::int64_t ldp) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      std::int32_t count = 0;
      for (std::int64_t w = 0; w < words; ++w) {
        count += PopcountPortable(a[i * lda + w] ^ b[j * ldb + w]);
      }
      p[i * ldp + j] = count;
    }
  }
}

}  // namespace core
}  // namespace tfdisc
