// Standalone tests of cc_ops/core (no TensorFlow, no gtest), built and run
// under AddressSanitizer + UndefinedBehaviorSanitizer by cc_ops/sanitize.sh:
//
//   * BitpackRow / BitpackFloat*: every bit and the zero padding bits;
//   * every supported popcount-GEMM kernel against the reference on random
//     shapes, with row lengths around the vector widths and odd strides;
//   * the transposed kernels on every row length 1..130 words, odd m and n;
//   * BConv2DOptimized (every kernel) against BConv2DReference over kernel
//     sizes, strides, dilations, SAME/VALID, pad values -1/0/+1 and all
//     output transforms, with the exact buffers the ops use (so an
//     out-of-bounds read or write is reported by ASan);
//   * RunNetwork (core/network.h, every kernel, 32- and 64-bit words)
//     against the reference drivers applied one layer at a time, and
//     ParseNetwork / PlanNetwork on malformed steps.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cc_ops/core/bconv2d/float_input.h"
#include "cc_ops/core/bconv2d/optimized.h"
#include "cc_ops/core/bconv2d/reference.h"
#include "cc_ops/core/bdense.h"
#include "cc_ops/core/bgemm/kernels.h"
#include "cc_ops/core/bitpack.h"
#include "cc_ops/core/bitpacked_max_pool.h"
#include "cc_ops/core/network.h"
#include "cc_ops/tests/check.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

using namespace tfdisc::core;  // NOLINT

namespace {

std::vector<KernelType> SupportedKernels() {
  std::vector<KernelType> out;
  for (KernelType t : {KernelType::kReference, KernelType::kPortable,
                       KernelType::kAvx2, KernelType::kAvx512Bw,
                       KernelType::kAvx512, KernelType::kNeon}) {
    if (KernelSupported(t)) out.push_back(t);
    else std::printf("skipping kernel %s: not supported by this CPU\n", KernelName(t));
  }
  return out;
}

void TestBitpack() {
  std::mt19937 rng(1);
  for (int k : {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257}) {
    // Exactly sized heap buffers so ASan catches any overrun.
    std::vector<float> x(k);
    std::normal_distribution<float> dist;
    for (auto& v : x) v = dist(rng);
    x[0] = -0.0f;
    const std::int64_t words = PackedWords32(k, 32);
    for (BitpackFloatFn fn : {GetBitpackFloat(KernelType::kPortable),
                              KernelSupported(KernelType::kAvx512)
                                  ? GetBitpackFloat(KernelType::kAvx512)
                                  : GetBitpackFloat(KernelType::kPortable),
                              KernelSupported(KernelType::kAvx2)
                                  ? GetBitpackFloat(KernelType::kAvx2)
                                  : GetBitpackFloat(KernelType::kPortable)}) {
      std::vector<TWord> out(words, 0xdeadbeef);
      fn(x.data(), k, out.data());
      std::vector<TWord> ref(PackedWords32(k, 64));
      BitpackRow<float>(x.data(), k, ref.size(), ref.data());
      for (int i = 0; i < k; ++i) {
        const bool bit = (out[i / 32] >> (i % 32)) & 1u;
        CHECK(bit == (x[i] < 0.0f), "bitpack k=%d bit %d", k, i);
      }
      for (int i = k; i < words * 32; ++i)
        CHECK(((out[i / 32] >> (i % 32)) & 1u) == 0, "padding bit k=%d %d", k, i);
      for (std::int64_t w = 0; w < words; ++w)
        CHECK(out[w] == ref[w], "BitpackRow k=%d word %ld", k, static_cast<long>(w));
      for (std::size_t w = words; w < ref.size(); ++w)
        CHECK(ref[w] == 0, "64-bit high half k=%d", k);
    }
  }
}

void TestGemm(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(2);
  int cases = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int m = 1 + rng() % 13, n = 1 + rng() % 21;
    // Every fourth trial: long rows (the Harley-Seal path of avx2 from 128
    // words, whole 128-word blocks plus a remainder).
    const std::int64_t words = trial % 4 == 0 ? 100 + rng() % 300 : 1 + rng() % 70;
    const std::int64_t lda = words + rng() % 3, ldb = words + rng() % 3;
    std::vector<TWord> a(m * lda), b(n * ldb);
    for (auto& v : a) v = rng();
    for (auto& v : b) v = rng();
    std::vector<std::int32_t> want(m * n), got(m * n);
    PopcountGemmReference(a.data(), lda, b.data(), ldb, m, n, words, want.data(), n);
    // Brute-force check of the reference itself on a few entries.
    std::int32_t brute = 0;
    for (std::int64_t w = 0; w < words; ++w)
      for (int bit = 0; bit < 32; ++bit)
        brute += ((a[w] ^ b[w]) >> bit) & 1u;
    CHECK(brute == want[0], "reference popcount");
    for (KernelType t : kernels) {
      std::fill(got.begin(), got.end(), -1);
      GetPopcountGemm(t)(a.data(), lda, b.data(), ldb, m, n, words, got.data(), n);
      CHECK(got == want, "gemm %s m=%d n=%d words=%ld", KernelName(t), m, n,
            static_cast<long>(words));
      ++cases;
      PopcountGemmTransposedFn gemm_t = GetPopcountGemmTransposed(t);
      if (gemm_t != nullptr) {
        const std::int64_t ldbt = (n + 63) / 64 * 64;
        std::vector<TWord> bt(words * ldbt, 0);
        for (int j = 0; j < n; ++j)
          for (std::int64_t w = 0; w < words; ++w) bt[w * ldbt + j] = b[j * ldb + w];
        std::fill(got.begin(), got.end(), -1);
        gemm_t(a.data(), lda, bt.data(), ldbt, m, n, words, got.data(), n);
        CHECK(got == want, "transposed gemm %s m=%d n=%d words=%ld", KernelName(t), m,
              n, static_cast<long>(words));
        ++cases;
      }
    }
  }
  std::printf("gemm: %d kernel cases\n", cases);
}

// The transposed kernels on their own: every row length 1..130 words (one
// and several flushes of the AVX2 byte counters, which flush every 31
// words, or every 63 nibble steps in the table kernel), a few past 2040
// (the table kernel's row chunks), n around the vector widths (8 and 16 columns for AVX2, 16 and 64
// for AVX-512) and past one 64-column block, m around the row tiles, and
// output rows with a gap (ldp > n) whose sentinels must survive: the
// masked stores may write columns < n only. bt is exactly words * ldbt
// words (ldbt = n rounded up to 64, zero-padded), so ASan sees any read
// past what the contract allows.
void TestGemmTransposed(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(7);
  const int ms[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 31, 32, 33};
  const int ns[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 23, 31, 33, 47, 63, 64, 65, 71, 100, 130};
  int cases = 0;
  for (KernelType t : kernels) {
    PopcountGemmTransposedFn gemm_t = GetPopcountGemmTransposed(t);
    if (gemm_t == nullptr) continue;
    int pick = 0;
    // Every row length to 130 words, then a few long ones (several flushes
    // of the byte counters; the drivers pick the transposed path below
    // kTransposedMaxWords, but the kernels take any length).
    std::vector<std::int64_t> lengths;
    for (std::int64_t words = 1; words <= 130; ++words) lengths.push_back(words);
    for (std::int64_t words : {144, 200, 288, 383}) lengths.push_back(words);
    // Past 2040 words the table kernel runs its rows in chunks (its 16-bit
    // column counters), adding each chunk into p.
    for (std::int64_t words : {2040, 2041, 4100}) lengths.push_back(words);
    for (std::int64_t words : lengths) {
      for (int rep = 0; rep < 3; ++rep, ++pick) {
        const int m = ms[(pick * 5) % 12], n = ns[(pick * 7) % 20];
        const std::int64_t lda = words + rng() % 3, ldb = words;
        const std::int64_t ldbt = (n + 63) / 64 * 64, ldp = n + 3;
        std::vector<TWord> a(m * lda), b(n * ldb), bt(words * ldbt, 0);
        for (auto& v : a) v = rng();
        for (auto& v : b) v = rng();
        if (rep == 2) {  // all ones: every byte counter at its maximum
          std::fill(a.begin(), a.end(), 0xffffffffu);
          std::fill(b.begin(), b.end(), 0u);
        }
        for (int j = 0; j < n; ++j)
          for (std::int64_t w = 0; w < words; ++w) bt[w * ldbt + j] = b[j * ldb + w];
        std::vector<std::int32_t> want(m * ldp, -7), got(m * ldp, -7);
        PopcountGemmReference(a.data(), lda, b.data(), ldb, m, n, words, want.data(), ldp);
        gemm_t(a.data(), lda, bt.data(), ldbt, m, n, words, got.data(), ldp);
        CHECK(got == want, "transposed gemm %s m=%d n=%d words=%ld lda=%ld%s",
              KernelName(t), m, n, static_cast<long>(words), static_cast<long>(lda),
              rep == 2 ? " (all ones)" : "");
        ++cases;
        if (PopcountGemmTransposedSplitFn gemm_ts = GetPopcountGemmTransposedSplit(t)) {
          // The same product on operands prepared in the table kernel's form
          // (every m, odd ones included, no internal preparation), rows and
          // panels sized exactly (ASan sees a read past either).
          std::vector<std::uint16_t> rows(static_cast<std::size_t>(SplitRowsSize(m, words)));
          std::vector<std::uint8_t> panels(static_cast<std::size_t>(SplitPanelsSize(n, words)));
          SplitRows(a.data(), lda, m, words, rows.data());
          SplitIntoPanels(bt.data(), 1, ldbt, n, words, panels.data());
          std::fill(got.begin(), got.end(), -7);
          gemm_ts(rows.data(), panels.data(), m, n, words, got.data(), ldp);
          CHECK(got == want, "table transposed gemm %s m=%d n=%d words=%ld lda=%ld%s",
                KernelName(t), m, n, static_cast<long>(words), static_cast<long>(lda),
                rep == 2 ? " (all ones)" : "");
          ++cases;
        }
      }
    }
  }
  std::printf("transposed gemm: %d kernel cases\n", cases);
}

void TestDense(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 60; ++trial) {
    BDenseArgs args;
    // Up to 80 rows: the table kernel's path from kDenseTransposedMinRows.
    args.m = rng() % 80;
    args.n = 1 + rng() % 150;
    args.k = 1 + rng() % 300;
    args.words = PackedWords32(args.k, 32);
    std::vector<TWord> x(args.m * args.words), w(args.n * args.words);
    const TWord last_mask =
        args.k % 32 ? (TWord{1} << (args.k % 32)) - 1 : ~TWord{0};
    for (std::int64_t i = 0; i < args.m * args.words; ++i)
      x[i] = rng() & ((i % args.words == args.words - 1) ? last_mask : ~TWord{0});
    for (std::int64_t i = 0; i < args.n * args.words; ++i)
      w[i] = rng() & ((i % args.words == args.words - 1) ? last_mask : ~TWord{0});
    args.x = x.data();
    args.w = w.data();
    std::vector<float> mult(args.n), bias(args.n);
    for (auto& v : mult) v = static_cast<float>(static_cast<int>(rng() % 7) - 3) * 0.5f;
    for (auto& v : bias) v = static_cast<float>(static_cast<int>(rng() % 21) - 10);
    const int kind = trial % 3;
    args.transform.kind = kind == 0 ? OutputKind::kInt32
                          : kind == 1 ? OutputKind::kFloat : OutputKind::kBitpacked;
    if (kind != 0) {
      args.transform.multiplier = mult.data();
      args.transform.bias = bias.data();
    }
    args.out_stride = kind == 2 ? PackedWords32(args.n, 32) : args.n;
    // Every other trial packs through the dispatched (vectorized) packer.
    if (trial % 2 && KernelSupported(KernelType::kAvx512))
      args.transform.pack = GetBitpackFloat(KernelType::kAvx512);
    if (trial % 4 == 3 && KernelSupported(KernelType::kAvx2))
      args.transform.pack = GetBitpackFloat(KernelType::kAvx2);
    std::vector<char> want, got;
    for (std::size_t ki = 0; ki < kernels.size(); ++ki) {
      std::vector<char>& buf = ki == 0 ? want : got;
      buf.assign(args.m * args.out_stride * 4, 0);
      args.out = buf.data();
      BinaryDense(args, DenseKernelsFor(kernels[ki]), SerialFor);
      if (ki > 0) CHECK(got == want, "dense %s trial %d", KernelName(kernels[ki]), trial);
      // The table transposed path at any row count, where the kernel has it.
      const PopcountGemmTransposedSplitFn gemm_ts =
          GetPopcountGemmTransposedSplit(kernels[ki]);
      if (ki > 0 && gemm_ts != nullptr) {
        std::fill(got.begin(), got.end(), 0);
        BinaryDenseTransposed(args, gemm_ts, SerialFor);
        CHECK(got == want, "dense %s transposed table, trial %d (m %ld, n %ld, k %ld)",
              KernelName(kernels[ki]), trial, static_cast<long>(args.m),
              static_cast<long>(args.n), static_cast<long>(args.k));
      }
    }
    // Independent check of the int32 path against a bit-level dot product.
    if (kind == 0 && args.m > 0) {
      const std::int32_t* out = reinterpret_cast<const std::int32_t*>(want.data());
      std::int32_t dot = 0;
      for (std::int64_t c = 0; c < args.k; ++c) {
        const int xb = (x[c / 32] >> (c % 32)) & 1, wb = (w[c / 32] >> (c % 32)) & 1;
        dot += (xb == wb) ? 1 : -1;
      }
      CHECK(out[0] == dot, "dense dot %d vs %d", out[0], dot);
    }
  }
}

// Random packed input [batch, in_h, in_w, words] and filter [out_channels,
// taps, words] for `p`, with the padding bits past `channels` zero.
void RandomConvOperands(const BConv2DParams& p, std::mt19937* rng, std::vector<TWord>* in,
                        std::vector<TWord>* filter) {
  std::vector<TWord> mask(p.words);
  MinusOnesPattern(p.channels, p.words, mask.data());
  in->resize(p.batch * p.in_h * p.in_w * p.words);
  filter->resize(p.out_channels * p.filter_h * p.filter_w * p.words);
  for (std::size_t i = 0; i < in->size(); ++i) (*in)[i] = (*rng)() & mask[i % p.words];
  for (std::size_t i = 0; i < filter->size(); ++i) (*filter)[i] = (*rng)() & mask[i % p.words];
}

// Rows of 144 to 375 words (3x3 over 512 channels, 5x5 over 256 / 460),
// the long-row paths of every kernel against the reference: SAME padding
// with both pad values, batch 2.
void TestConvLongRows(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(11);
  const int shapes[][3] = {{3, 512, 40}, {5, 256, 70}, {5, 460, 17}};  // filter, C, O
  int cases = 0;
  // Output pixels: 2 x 12 x 11 = 264, 1 x 2 x 3 = 6 (both past
  // kSplitTransposedMinPixels: the table kernel where there is one) and one
  // (row-major).
  const int images[][3] = {{2, 12, 11}, {1, 2, 3}, {1, 1, 1}};
  for (const auto& s : shapes) {
    for (int pad_value : {0, 1}) for (const auto& image : images) {
      BConv2DParams p;
      p.batch = image[0];
      p.in_h = image[1];
      p.in_w = image[2];
      p.channels = s[1];
      p.words = PackedWords32(p.channels, 32);
      p.out_channels = s[2];
      p.filter_h = p.filter_w = s[0];
      p.pad_value = pad_value;
      std::string error;
      CHECK(ComputeConvGeometry(true, &p, &error), "geometry: %s", error.c_str());
      std::vector<TWord> in, filter;
      RandomConvOperands(p, &rng, &in, &filter);
      OutputTransform transform;
      transform.kind = OutputKind::kInt32;
      const std::int64_t pixels = p.batch * p.out_h * p.out_w;
      const std::size_t n = pixels * p.out_channels;
      std::vector<std::int32_t> want(n), got(n);
      BConv2DReference(p, in.data(), filter.data(), transform, want.data(), p.out_channels);
      for (KernelType t : kernels) {
        // What the driver picks (UsesTransposed) and row-major.
        ConvKernels row_major;
        row_major.gemm = GetPopcountGemm(t);
        for (const ConvKernels& k : {ConvKernelsFor(t), row_major}) {
          std::fill(got.begin(), got.end(), -1);
          BConv2DOptimized(p, in.data(), filter.data(), transform, got.data(), p.out_channels,
                           k, SerialFor, /*min_transposed_pixels=*/0);
          CHECK(got == want, "conv long rows %s%s %dx%d C=%d O=%d pad %d, %ld pixels",
                KernelName(t),
                UsesTransposed(k, p.filter_h * p.filter_w * p.words, pixels) ? " transposed" : "",
                s[0], s[0], s[1], s[2], pad_value, static_cast<long>(pixels));
          ++cases;
          if (k.gemm_t == nullptr) break;  // no transposed kernel: one path
        }
      }
    }
  }
  std::printf("conv long rows: %d kernel cases\n", cases);
}

void TestConv(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(4);
  int cases = 0;
  for (int trial = 0; trial < 150; ++trial) {
    BConv2DParams p;
    p.batch = rng() % 3;
    p.in_h = 1 + rng() % 8;
    p.in_w = 1 + rng() % 8;
    const int channel_choices[] = {1, 3, 31, 32, 33, 64, 65, 100};
    p.channels = channel_choices[rng() % 8];
    p.words = PackedWords32(p.channels, (trial % 2) ? 64 : 32);
    p.out_channels = 1 + rng() % 70;
    p.filter_h = 1 + rng() % 5;
    p.filter_w = 1 + rng() % 5;
    p.stride_h = 1 + rng() % 3;
    p.stride_w = 1 + rng() % 3;
    p.dilation_h = 1 + rng() % 2;
    p.dilation_w = 1 + rng() % 2;
    p.pad_value = static_cast<int>(rng() % 3) - 1;
    const bool same = rng() % 2;
    std::string error;
    if (!ComputeConvGeometry(same, &p, &error)) {
      CHECK(!same, "SAME geometry must not fail");
      continue;
    }
    const std::int64_t taps = p.filter_h * p.filter_w;
    std::vector<TWord> in, filter;
    RandomConvOperands(p, &rng, &in, &filter);
    std::vector<float> mult(p.out_channels), bias(p.out_channels);
    for (auto& v : mult) v = static_cast<float>(static_cast<int>(rng() % 9) - 4) * 0.25f;
    for (auto& v : bias) v = static_cast<float>(static_cast<int>(rng() % 11) - 5);
    OutputTransform transform;
    const int kind = trial % 3;
    transform.kind = kind == 0 ? OutputKind::kInt32
                     : kind == 1 ? OutputKind::kFloat : OutputKind::kBitpacked;
    if (kind != 0) {
      transform.multiplier = mult.data();
      transform.bias = bias.data();
    }
    const std::int64_t stride =
        kind == 2 ? PackedWords32(p.out_channels, 32) : p.out_channels;
    const std::size_t bytes = p.batch * p.out_h * p.out_w * stride * 4;
    std::vector<char> want(bytes, 0), got(bytes, 0);
    BConv2DReference(p, in.data(), filter.data(), transform, want.data(), stride);
    if (trial % 2 && KernelSupported(KernelType::kAvx512))
      transform.pack = GetBitpackFloat(KernelType::kAvx512);
    if (trial % 4 == 3 && KernelSupported(KernelType::kAvx2))
      transform.pack = GetBitpackFloat(KernelType::kAvx2);
    for (KernelType t : kernels) {
      // The driver's paths: row-major, transposed, transposed on split
      // operands (as far as the kernel has them).
      const ConvKernels all = ConvKernelsFor(t);
      ConvKernels row_major, unsplit = all;
      row_major.gemm = all.gemm;
      unsplit.gemm_ts = nullptr;
      std::vector<std::pair<const char*, ConvKernels>> paths;
      if (all.gemm_t == nullptr || trial % 2 == 0)
        paths.push_back({"", row_major});  // such kernels: every other trial
      if (all.gemm_t != nullptr) paths.push_back({" transposed", unsplit});
      if (all.gemm_ts != nullptr) paths.push_back({" transposed split", all});
      for (const auto& [label, k] : paths) {
        std::fill(got.begin(), got.end(), 0);
        BConv2DOptimized(p, in.data(), filter.data(), transform, got.data(), stride, k,
                         SerialFor, /*min_transposed_pixels=*/0);
        CHECK(got == want, "conv %s%s trial %d (pad %d, %s)", KernelName(t), label, trial,
              p.pad_value, same ? "SAME" : "VALID");
        ++cases;
        if (!UsesTransposed(k, taps * p.words, p.batch * p.out_h * p.out_w)) continue;
        // With a caller-provided (cached) filter: built for this path, and
        // for a split kernel also one built without the split (the driver
        // then runs the unsplit kernel).
        for (bool with_split : {k.gemm_ts != nullptr, false}) {
          TransposedFilter filter_t;
          BuildTransposedFilter(filter.data(), p.out_channels, taps * p.words, with_split,
                                &filter_t);
          std::fill(got.begin(), got.end(), 0);
          BConv2DOptimized(p, in.data(), filter.data(), transform, got.data(), stride, k,
                           SerialFor, kTransposedMinPixels, &filter_t);
          CHECK(got == want, "conv %s%s given filter (%s split), trial %d", KernelName(t),
                label, with_split ? "with" : "without", trial);
          ++cases;
          if (!with_split) break;
        }
        // One built from the same words under another [out, row] shape (the
        // TF op's cache once matched on the words alone): not used.
        if (p.out_channels > 1) {
          TransposedFilter other;
          BuildTransposedFilter(filter.data(), 1, p.out_channels * taps * p.words,
                                k.gemm_ts != nullptr, &other);
          std::fill(got.begin(), got.end(), 0);
          BConv2DOptimized(p, in.data(), filter.data(), transform, got.data(), stride, k,
                           SerialFor, kTransposedMinPixels, &other);
          CHECK(got == want, "conv %s%s given filter of another shape, trial %d",
                KernelName(t), label, trial);
          ++cases;
        }
      }
    }
  }
  std::printf("conv: %d kernel cases\n", cases);
}

// Subnormals, -0.0, NaN (issue 7 item 12): a negative float32/float64
// subnormal packs as +1 (as larq's sign under TensorFlow's flush-to-zero), a
// half-precision-range value is not special; the same bits with the
// thread's denormals-are-zero mode on and off.
void TestBitpackSpecialValues() {
  const float sub = -std::numeric_limits<float>::denorm_min() * 1000.0f;
  const float fx[] = {sub, -std::numeric_limits<float>::min(), -0.0f,
                      std::numeric_limits<float>::quiet_NaN(),
                      -std::numeric_limits<float>::infinity(), -1e-30f, 0.0f};
  const TWord want = 0b0110010;  // -FLT_MIN, -inf, -1e-30
  const double dsub = -std::numeric_limits<double>::denorm_min() * 1000.0;
  const double dx[] = {dsub, -std::numeric_limits<double>::min(), -0.0,
                       std::numeric_limits<double>::quiet_NaN(),
                       -std::numeric_limits<double>::infinity(), -1e-300, 0.0};
#if defined(__x86_64__)
  const unsigned saved = _mm_getcsr();
  for (unsigned mode : {saved & ~0x8040u, saved | 0x8040u}) {  // FTZ | DAZ
    _mm_setcsr(mode);
#else
  {
    const unsigned mode = 0;
#endif
    std::vector<KernelType> packers = {KernelType::kPortable};
    if (KernelSupported(KernelType::kAvx512)) packers.push_back(KernelType::kAvx512);
    if (KernelSupported(KernelType::kAvx2)) packers.push_back(KernelType::kAvx2);
    for (KernelType t : packers) {
      std::vector<TWord> out(1, 0xdeadbeef);
      GetBitpackFloat(t)(fx, 7, out.data());
      CHECK(out[0] == want, "BitpackFloat %s special values (mxcsr %x): %x",
            KernelName(t), mode, out[0]);
    }
    std::vector<TWord> out(2, 0xdeadbeef);
    BitpackRow<float>(fx, 7, 2, out.data());
    CHECK(out[0] == want && out[1] == 0, "BitpackRow<float> special values: %x", out[0]);
    BitpackRow<double>(dx, 7, 2, out.data());
    CHECK(out[0] == want && out[1] == 0, "BitpackRow<double> special values: %x", out[0]);
    OutputTransform transform;
    transform.kind = OutputKind::kBitpacked;
    const float mult[] = {sub, 1.0f};  // dot 1 * subnormal stays subnormal
    transform.multiplier = mult;
    const std::int32_t dot[] = {1, -1};
    TWord word = 0xdeadbeef;
    transform.WriteRow(dot, 0, 2, &word);
    CHECK(word == 0b10, "output transform subnormal: %x", word);
  }
#if defined(__x86_64__)
  _mm_setcsr(saved);
#endif
}

// Dot products at the int32 limit (issue 7: K >= 2^31 used to wrap to
// -2.1e9). Buffers stay one word long: k is passed separately from the row
// length, so the arithmetic is exercised without gigabytes of input.
void TestDotLimits(const std::vector<KernelType>& kernels) {
  const std::int64_t kmax = kMaxDotBits;
  CHECK(kmax == 2147483647, "kMaxDotBits");
  CHECK(DotFromPopcount(kmax, 0) == 2147483647, "dot(kmax, 0)");
  CHECK(DotFromPopcount(kmax, kmax) == -2147483647, "dot(kmax, kmax)");
  CHECK(DotFromPopcount(kmax, std::int64_t{1} << 30) == -1, "dot(kmax, 2^30)");
  CHECK(DotBitsWithinLimit(kmax, 1, 1), "limit kmax");
  CHECK(!DotBitsWithinLimit(kmax + 1, 1, 1), "limit kmax + 1");
  CHECK(DotBitsWithinLimit((std::int64_t{1} << 30) - 1, 1, 2), "limit (2^30-1)*2");
  CHECK(!DotBitsWithinLimit(std::int64_t{1} << 30, 1, 2), "limit 2^30*2");
  CHECK(!DotBitsWithinLimit(std::int64_t{1} << 30, 2, 1), "limit 2^30*2 (h)");
  CHECK(!DotBitsWithinLimit(1, std::int64_t{1} << 40, std::int64_t{1} << 40),
        "limit with taps overflowing int64");
  CHECK(!DotBitsWithinLimit(INT64_MAX, INT64_MAX, INT64_MAX), "limit int64 max");
  CHECK(!DotBitsWithinLimit(-1, 1, 1), "limit negative");

  for (KernelType t : kernels) {
    // Dense, k = 2^31 - 1 over one word: x == w gives +k, x = ~w gives k - 64.
    std::vector<TWord> x = {0u, ~TWord{0}}, w = {0u};
    for (int kind = 0; kind < 2; ++kind) {
      BDenseArgs args;
      args.x = x.data();
      args.w = w.data();
      args.m = 2;
      args.n = 1;
      args.words = 1;
      args.k = kmax;
      args.transform.kind = kind == 0 ? OutputKind::kInt32 : OutputKind::kFloat;
      args.out_stride = 1;
      std::vector<std::int32_t> out(2, 0);
      args.out = out.data();
      BinaryDense(args, DenseKernelsFor(t), SerialFor);
      if (kind == 0) {
        CHECK(out[0] == 2147483647 && out[1] == 2147483647 - 64,
              "dense k=2^31-1 %s int32: %d %d", KernelName(t), out[0], out[1]);
      } else {
        float f[2];
        std::memcpy(f, out.data(), sizeof(f));
        CHECK(f[0] == 2147483647.0f && f[1] == static_cast<float>(2147483647 - 64),
              "dense k=2^31-1 %s float: %g %g", KernelName(t), f[0], f[1]);
      }
    }
    // Conv, 1x2 filter over channels = 2^30 - 1 (k_total = 2^31 - 2), one
    // word per pixel, a 1x1 image with SAME zero padding: tap 1 lies outside,
    // so the result is the in-image tap alone, +channels; and VALID over a
    // 1x2 image: +k_total.
    for (bool same : {true, false}) {
      BConv2DParams p;
      p.batch = 1;
      p.in_h = 1;
      p.in_w = same ? 1 : 2;
      p.channels = (std::int64_t{1} << 30) - 1;
      p.words = 1;
      p.out_channels = 1;
      p.filter_h = 1;
      p.filter_w = 2;
      p.pad_value = 0;
      std::string error;
      CHECK(ComputeConvGeometry(same, &p, &error), "limit conv geometry");
      CHECK(DotBitsWithinLimit(p.channels, p.filter_h, p.filter_w), "conv limit");
      std::vector<TWord> in(p.in_w, 0), filter(2, 0);
      OutputTransform transform;
      transform.kind = OutputKind::kInt32;
      std::int32_t want = 0, got = 0;
      BConv2DReference(p, in.data(), filter.data(), transform, &want, 1);
      BConv2DOptimized(p, in.data(), filter.data(), transform, &got, 1,
                       ConvKernelsFor(t), SerialFor);
      const std::int32_t expect = same ? (1 << 30) - 1 : 2147483646;
      CHECK(want == expect && got == expect, "conv k=2^31-2 %s %s: ref %d got %d",
            KernelName(t), same ? "SAME" : "VALID", want, got);
    }
  }
}

}  // namespace

// The float first layer (core/bconv2d/float_input.h) of each kernel against
// a double-precision direct convolution: every bit agrees except for values
// within rounding of zero, and the padding words are zero.
void TestFloatConvBits(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(12);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int cases = 0;
  for (int trial = 0; trial < 40; ++trial) {
    BConv2DParams p;
    p.batch = 1 + rng() % 2;
    p.channels = 1 + rng() % 5;
    p.out_channels = 1 + rng() % 70;
    p.filter_h = 1 + rng() % 3;
    p.filter_w = 1 + rng() % 3;
    p.stride_h = 1 + rng() % 2;
    p.stride_w = 1 + rng() % 2;
    p.in_h = p.filter_h + rng() % 9;
    p.in_w = p.filter_w + rng() % 9;
    std::string error;
    if (!ComputeConvGeometry(trial % 2 == 0, &p, &error)) continue;
    const std::int64_t taps = p.filter_h * p.filter_w;
    std::vector<float> x(p.batch * p.in_h * p.in_w * p.channels);
    std::vector<float> w(taps * p.channels * p.out_channels), bias(p.out_channels);
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
    for (float& v : bias) v = normal(rng);
    const std::int64_t pixels = p.batch * p.out_h * p.out_w;
    const std::int64_t out_words = PackedWords32(p.out_channels, 64);  // int64 words
    PaddedFloatFilter padded;
    PadFloatFilter(w.data(), bias.data(), taps * p.channels, p.out_channels, &padded);
    for (KernelType t : kernels) {
      std::vector<TWord> out(pixels * out_words, 0xdeadbeefu);
      FloatConv2DBits(p, x.data(), padded, GetFloatGemmBits(t), out.data(), out_words,
                      SerialFor);
      int wrong_bits = 0, bad_padding = 0;
      for (std::int64_t q = 0; q < pixels; ++q) {
        const std::int64_t b = q / (p.out_h * p.out_w);
        const std::int64_t oy = q / p.out_w % p.out_h, ox = q % p.out_w;
        for (std::int64_t o = 0; o < p.out_channels; ++o) {
          double v = bias[o], bound = std::abs(bias[o]);
          for (std::int64_t fy = 0; fy < p.filter_h; ++fy)
            for (std::int64_t fx = 0; fx < p.filter_w; ++fx) {
              const std::int64_t iy = oy * p.stride_h - p.pad_top + fy;
              const std::int64_t ix = ox * p.stride_w - p.pad_left + fx;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              for (std::int64_t c = 0; c < p.channels; ++c) {
                const double term =
                    double(x[((b * p.in_h + iy) * p.in_w + ix) * p.channels + c]) *
                    w[((fy * p.filter_w + fx) * p.channels + c) * p.out_channels + o];
                v += term;
                bound += std::abs(term);
              }
            }
          const bool bit = (out[q * out_words + o / 32] >> (o % 32)) & 1u;
          if (std::abs(v) > bound * 1e-5 && bit != (v < 0)) ++wrong_bits;
        }
        for (std::int64_t wd = PackedWords32(p.out_channels, 32); wd < out_words; ++wd)
          bad_padding += out[q * out_words + wd] != 0;
        const std::int64_t rest = p.out_channels % 32;
        if (rest != 0) bad_padding += (out[q * out_words + p.out_channels / 32] >> rest) != 0;
      }
      CHECK(wrong_bits == 0, "float conv bits: kernel %s trial %d: %d wrong bits",
            KernelName(t), trial, wrong_bits);
      CHECK(bad_padding == 0, "float conv bits: kernel %s trial %d: %d nonzero padding words",
            KernelName(t), trial, bad_padding);
      ++cases;
    }
  }
  CHECK(cases > 40, "float conv bits ran only %d cases", cases);
}


// A chain bitpack -> conv (bits out, multiplier, bias) -> max pool (OR mask)
// -> conv (bits out) -> flatten -> dense (float out), run by RunNetwork with
// each kernel, against the reference drivers one step at a time.
void TestNetwork(const std::vector<KernelType>& kernels) {
  std::mt19937 rng(31);
  std::uniform_int_distribution<std::uint32_t> bits;
  std::normal_distribution<float> normal;
  for (int word_bits : {32, 64}) {
    for (std::int64_t batch : {1, 3}) {
      const std::int64_t c0 = 40, c1 = 64, c2 = 64, units = 10, h = 6;
      const std::vector<std::string> kinds = {"bitpack", "conv", "max_pool", "conv",
                                              "flatten", "dense"};
      const std::vector<std::int64_t> ints = {
          c0, c0, c1, 3, 3, 1, 1, 1, 1, 1, 0, 1, 1, 1,  // bitpack; conv SAME pad 0
          2, 2, 2, 2, 1, 1,                            // max pool with OR mask
          c1, c2, 2, 2, 1, 1, 1, 1, 0, 1, 1, 0, 0,      // conv VALID
          2 * 2 * c2, units, 0, 0, 1};                 // dense
      std::vector<Step> steps;
      std::vector<WeightType> types;
      bool out_bits = true;
      std::string error;
      CHECK(ParseNetwork(kinds, ints, word_bits, false, &steps, &types, &out_bits, &error),
            "parse: %s", error.c_str());
      CHECK(!out_bits && types.size() == 7, "parse: %zu weights", types.size());
      Flow in;
      in.rank = 4;
      in.batch = batch;
      in.h = in.w = h;
      in.channels = in.row = c0;
      std::vector<Flow> flows;
      CHECK(PlanNetwork(&steps, word_bits, in, &flows, &error), "plan: %s", error.c_str());
      if (flows.size() != steps.size()) continue;
      const std::vector<std::int64_t> sizes = WeightSizes(steps, types.size(), word_bits);
      // Weights as 32-bit words / floats, each its own buffer.
      std::vector<std::vector<TWord>> words(types.size());
      std::vector<std::vector<float>> floats(types.size());
      std::vector<WeightView> views(types.size());
      for (std::size_t i = 0; i < types.size(); ++i) {
        if (types[i] == WeightType::kWords) {
          words[i].resize(sizes[i] * word_bits / 32);
          for (TWord& v : words[i]) v = bits(rng);
          views[i].data = words[i].data();
        } else {
          floats[i].resize(sizes[i]);
          for (float& v : floats[i]) v = normal(rng);
          views[i].data = floats[i].data();
        }
        views[i].size = sizes[i];
      }
      // Padding bits of packed weights are zero (64-bit words: the high halves too).
      const auto clear_padding = [&](std::vector<TWord>* w, std::int64_t channels) {
        const std::int64_t per = PackedWords32(channels, word_bits);
        for (std::int64_t r = 0; r < static_cast<std::int64_t>(w->size()) / per; ++r) {
          for (std::int64_t b = channels; b < per * 32; ++b)
            (*w)[r * per + b / 32] &= ~(TWord{1} << (b % 32));
        }
      };
      clear_padding(&words[0], c0);
      clear_padding(&words[3], c1);  // the mask: one pixel of c1 channels
      clear_padding(&words[4], c1);
      clear_padding(&words[5], 2 * 2 * c2);
      std::vector<float> x(batch * h * h * c0);
      for (float& v : x) v = normal(rng);
      // The reference, one step at a time.
      std::vector<TWord> a(batch * h * h * PackedWords32(c0, word_bits));
      for (std::int64_t r = 0; r < batch * h * h; ++r)
        BitpackRow<float>(x.data() + r * c0, c0, PackedWords32(c0, word_bits),
                          a.data() + r * PackedWords32(c0, word_bits));
      const auto transform = [&](const Step& s, OutputTransform* t) {
        t->kind = s.bits_out ? OutputKind::kBitpacked : OutputKind::kFloat;
        t->multiplier = s.multiplier >= 0 ? floats[s.multiplier].data() : nullptr;
        t->bias = s.bias >= 0 ? floats[s.bias].data() : nullptr;
      };
      OutputTransform t1, t3, t5;
      transform(steps[1], &t1);
      transform(steps[3], &t3);
      transform(steps[5], &t5);
      std::vector<TWord> b1(flows[1].Elements(), 0), b2(flows[2].Elements(), 0),
          b3(flows[3].Elements(), 0);
      BConv2DReference(steps[1].window, a.data(), words[0].data(), t1, b1.data(), flows[1].row);
      BitpackedMaxPool(steps[2].window, b1.data(), words[3].data(), b2.data(), SerialFor);
      BConv2DReference(steps[3].window, b2.data(), words[4].data(), t3, b3.data(), flows[3].row);
      std::vector<float> want(batch * units);
      BDenseArgs args;
      args.x = b3.data();
      args.w = words[5].data();
      args.m = batch;
      args.n = units;
      args.words = flows[4].row;
      args.k = 2 * 2 * c2;
      args.transform = t5;
      args.out = want.data();
      args.out_stride = units;
      BinaryDense(args, DenseKernelsFor(KernelType::kReference), SerialFor);
      for (KernelType type : kernels) {
        for (bool prepared_forms : {false, true}) {
          PreparedNetwork prepared;
          const ConvKernels ck = ConvKernelsFor(type);
          const bool transposed = prepared_forms && ck.gemm_t != nullptr;
          PrepareNetwork(steps, views, transposed, transposed && ck.gemm_ts != nullptr,
                         &prepared);
          NetworkScratch scratch;
          std::vector<float> got(batch * units, -1.0f);
          const ParallelFor serial = SerialFor;
          const bool ok = RunNetwork(steps, flows, in, x.data(), got.data(), views, prepared,
                                     type, &scratch,
                                     [&](std::size_t) -> const ParallelFor& { return serial; });
          CHECK(ok && got == want, "network %s words %d batch %ld%s", KernelName(type),
                word_bits, static_cast<long>(batch), prepared_forms ? " prepared" : "");
        }
      }
    }
  }
  // Malformed steps.
  std::vector<Step> steps;
  std::vector<WeightType> types;
  bool out_bits;
  std::string error;
  CHECK(!ParseNetwork({"dense"}, {8, 4, 0, 0, 0}, 32, false, &steps, &types, &out_bits, &error) &&
            error.find("takes packed bits") != std::string::npos,
        "dense on float: %s", error.c_str());
  CHECK(!ParseNetwork({"conv"}, {1, 2, 3}, 32, true, &steps, &types, &out_bits, &error) &&
            error.find("needs 13 integers") != std::string::npos,
        "short ints: %s", error.c_str());
  CHECK(!ParseNetwork({"bitpack"}, {8}, 16, false, &steps, &types, &out_bits, &error),
        "word_bits 16");
  CHECK(ParseNetwork({"bitpack", "flatten"}, {20}, 32, false, &steps, &types, &out_bits, &error),
        "bitpack + flatten parses: %s", error.c_str());
  Flow in;
  in.rank = 4;
  in.batch = 1;
  in.h = in.w = 2;
  in.channels = in.row = 20;
  std::vector<Flow> flows;
  CHECK(!PlanNetwork(&steps, 32, in, &flows, &error) &&
            error.find("multiple of 32") != std::string::npos,
        "flatten with padding bits: %s", error.c_str());
}

int main() {
  const std::vector<KernelType> kernels = SupportedKernels();
  TestBitpack();
  TestBitpackSpecialValues();
  TestGemm(kernels);
  TestGemmTransposed(kernels);
  TestDense(kernels);
  TestConv(kernels);
  TestConvLongRows(kernels);
  TestDotLimits(kernels);
  TestFloatConvBits(kernels);
  TestNetwork(kernels);
  return tfdisc_test::CheckSummary();
}
