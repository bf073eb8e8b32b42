// AVX2 popcount-GEMM (Mula, Kurz & Lemire, "Faster population counts using
// AVX2 instructions", 2016, arXiv:1611.07612):
//   * single rows (GEMV) of >= 128 words: Harley-Seal carry-save
//     accumulation (see PopcountGemmAvx2 for when it wins). Each block
//     of 16 XORed vectors goes through a tree of 15 carry-save adders
//     (bitwise full adders: 5 logic ops each, on any of three vector ports)
//     into ones/twos/fours/eights accumulators, and only the "sixteens"
//     output is popcounted; the paper measures this about 2x faster than
//     the lookup alone on long arrays;
//   * pairs of rows, shorter rows, remainders: nibble-lookup popcount
//     (vpshufb) in register tiles, byte
//     accumulators flushed to 64-bit lanes with vpsadbw;
//   * short rows with the other operand transposed (convolutions, see
//     PopcountGemmTransposedFn): the same lookup with the vector lanes over
//     output channels, byte accumulators flushed to 32-bit channel lanes;
//   * blocks of >= 16 such rows, and operands prepared once by the
//     drivers (PopcountGemmTransposedSplitFn): nibble tables, one vpshufb
//     per 16 columns x 2 rows x 4 bits (see PairTables).
//
// AVX2 is enabled with `#pragma GCC target` for this file's own code only;
// see avx512.cc for why.
#include <cstdint>
#include <limits>
#include <vector>

#include "cc_ops/core/bgemm/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,popcnt")

namespace tfdisc {
namespace core {
namespace {

// Each step adds at most 8 per byte; 31 steps stay below 255.
constexpr int kFlushEvery = 31;

// Popcounts of the 16 nibble values, in both 128-bit lanes (for vpshufb).
inline __m256i NibbleLut() {
  return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1,
                          1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
}

inline __m256i ByteCounts(__m256i v, __m256i lut, __m256i low_mask) {
  const __m256i lo = _mm256_and_si256(v, low_mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask);
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                         _mm256_shuffle_epi8(lut, hi));
}

template <int MR, int NR>
inline void Tile(const TWord* a, std::int64_t lda, const TWord* b,
                 std::int64_t ldb, std::int64_t words, std::int32_t* p,
                 std::int64_t ldp) {
  const __m256i lut = NibbleLut();
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[MR][NR], bytes[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = bytes[i][j] = zero;
  const std::int64_t full = words / 8;
  std::int64_t step = 0;
  while (step < full) {
    const std::int64_t end =
        step + kFlushEvery < full ? step + kFlushEvery : full;
    for (; step < end; ++step) {
      const std::int64_t w = step * 8;
      __m256i av[MR], bv[NR];
      for (int i = 0; i < MR; ++i)
        av[i] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a + i * lda + w));
      for (int j = 0; j < NR; ++j)
        bv[j] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(b + j * ldb + w));
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
          bytes[i][j] = _mm256_add_epi8(
              bytes[i][j],
              ByteCounts(_mm256_xor_si256(av[i], bv[j]), lut, low_mask));
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) {
        acc[i][j] = _mm256_add_epi64(acc[i][j], _mm256_sad_epu8(bytes[i][j], zero));
        bytes[i][j] = zero;
      }
  }
  const std::int64_t rest = words - full * 8;
  if (rest > 0) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)), idx);
    const std::int64_t w = full * 8;
    __m256i av[MR], bv[NR];
    for (int i = 0; i < MR; ++i)
      av[i] = _mm256_maskload_epi32(
          reinterpret_cast<const int*>(a + i * lda + w), mask);
    for (int j = 0; j < NR; ++j)
      bv[j] = _mm256_maskload_epi32(
          reinterpret_cast<const int*>(b + j * ldb + w), mask);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        acc[i][j] = _mm256_add_epi64(
            acc[i][j],
            _mm256_sad_epu8(
                ByteCounts(_mm256_xor_si256(av[i], bv[j]), lut, low_mask),
                zero));
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc[i][j]),
                                      _mm256_extracti128_si256(acc[i][j], 1));
      p[i * ldp + j] = static_cast<std::int32_t>(
          _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1));
    }
}

// Carry-save adder: (h, l) = a + b + c, bitwise (h carries, l sums).
inline void Csa(__m256i* h, __m256i* l, __m256i a, __m256i b, __m256i c) {
  const __m256i u = _mm256_xor_si256(a, b);
  *h = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u, c));
  *l = _mm256_xor_si256(u, c);
}

constexpr std::int64_t kHarleySealWords = 128;  // 16 vectors of 8 words

// popcount(a XOR b_j) for NR rows b_j = b + j * ldb, Harley-Seal over whole
// 128-word blocks, then the lookup tile for the rest of the row.
template <int NR>
inline void TileHarleySeal(const TWord* a, const TWord* b, std::int64_t ldb,
                           std::int64_t words, std::int32_t* p) {
  const __m256i lut = NibbleLut();
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  auto popcount64 = [&](__m256i v) {  // 4 x int64 lane sums
    return _mm256_sad_epu8(ByteCounts(v, lut, low_mask), zero);
  };
  __m256i total[NR], ones[NR], twos[NR], fours[NR], eights[NR];
  for (int j = 0; j < NR; ++j)
    total[j] = ones[j] = twos[j] = fours[j] = eights[j] = zero;
  const std::int64_t blocks = words / kHarleySealWords;
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    const TWord* ab = a + blk * kHarleySealWords;
    for (int j = 0; j < NR; ++j) {
      const TWord* bb = b + j * ldb + blk * kHarleySealWords;
      auto d = [&](int k) {
        return _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab + 8 * k)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bb + 8 * k)));
      };
      __m256i twos_a, twos_b, fours_a, fours_b, eights_a, eights_b, sixteens;
      Csa(&twos_a, &ones[j], ones[j], d(0), d(1));
      Csa(&twos_b, &ones[j], ones[j], d(2), d(3));
      Csa(&fours_a, &twos[j], twos[j], twos_a, twos_b);
      Csa(&twos_a, &ones[j], ones[j], d(4), d(5));
      Csa(&twos_b, &ones[j], ones[j], d(6), d(7));
      Csa(&fours_b, &twos[j], twos[j], twos_a, twos_b);
      Csa(&eights_a, &fours[j], fours[j], fours_a, fours_b);
      Csa(&twos_a, &ones[j], ones[j], d(8), d(9));
      Csa(&twos_b, &ones[j], ones[j], d(10), d(11));
      Csa(&fours_a, &twos[j], twos[j], twos_a, twos_b);
      Csa(&twos_a, &ones[j], ones[j], d(12), d(13));
      Csa(&twos_b, &ones[j], ones[j], d(14), d(15));
      Csa(&fours_b, &twos[j], twos[j], twos_a, twos_b);
      Csa(&eights_b, &fours[j], fours[j], fours_a, fours_b);
      Csa(&sixteens, &eights[j], eights[j], eights_a, eights_b);
      total[j] = _mm256_add_epi64(total[j], popcount64(sixteens));
    }
  }
  std::int32_t rest[NR] = {};
  const std::int64_t done = blocks * kHarleySealWords;
  if (done < words) Tile<1, NR>(a + done, 0, b + done, ldb, words - done, rest, 1);
  for (int j = 0; j < NR; ++j) {
    __m256i t = _mm256_slli_epi64(total[j], 4);
    t = _mm256_add_epi64(t, _mm256_slli_epi64(popcount64(eights[j]), 3));
    t = _mm256_add_epi64(t, _mm256_slli_epi64(popcount64(fours[j]), 2));
    t = _mm256_add_epi64(t, _mm256_slli_epi64(popcount64(twos[j]), 1));
    t = _mm256_add_epi64(t, popcount64(ones[j]));
    const __m128i s = _mm_add_epi64(_mm256_castsi256_si128(t),
                                    _mm256_extracti128_si256(t, 1));
    p[j] = static_cast<std::int32_t>(_mm_cvtsi128_si64(s) +
                                     _mm_extract_epi64(s, 1)) + rest[j];
  }
}

// Adds the byte counters (<= 8 * kFlushEvery = 248 each) to the 32-bit
// column lanes of acc, 4 bytes of a lane -> that lane, and clears them.
template <int MR, int NV>
inline void FlushColumns(__m256i (&bytes)[MR][NV], __m256i (&acc)[MR][NV]) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < NV; ++c) {
      // Pair sums <= 496 fit int16.
      acc[i][c] = _mm256_add_epi32(
          acc[i][c],
          _mm256_madd_epi16(_mm256_maddubs_epi16(bytes[i][c], ones8), ones16));
      bytes[i][c] = _mm256_setzero_si256();
    }
}

// Writes columns 0..n-1 of MR rows of NV column vectors (masked stores for
// a partial last vector: columns >= n are never written).
template <int MR, int NV>
inline void StoreColumns(const __m256i (&acc)[MR][NV], int n, std::int32_t* p,
                         std::int64_t ldp) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int c = 0; c < NV; ++c) {
    const int left = n - 8 * c;
    if (left <= 0) break;
    if (left >= 8) {
      for (int i = 0; i < MR; ++i)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i * ldp + 8 * c),
                            acc[i][c]);
    } else {
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
      for (int i = 0; i < MR; ++i)
        _mm256_maskstore_epi32(reinterpret_cast<int*>(p + i * ldp + 8 * c), mask,
                               acc[i][c]);
    }
  }
}

// MR rows of a against 8 * NV columns of bt (NV vectors of 8 int32 lanes,
// one lane per column), the transposed layout of PopcountGemmTransposedFn.
// Each word of a_i is broadcast and XORed with the NV vectors of word w of
// the columns; the lookup's byte counts are summed in bytes for up to
// kFlushEvery words and then widened per column lane with vpmaddubsw +
// vpmaddwd (4 bytes of one lane -> that lane), so there is no per-(row,
// column) horizontal reduction and no partial vector along K.
template <int MR, int NV>
inline void TransposedTile(const TWord* a, std::int64_t lda, const TWord* bt,
                           std::int64_t ldbt, int n, std::int64_t words,
                           std::int32_t* p, std::int64_t ldp) {
  const __m256i lut = NibbleLut();
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  // acc is touched only at flushes; with bytes[4][2] the inner loop already
  // uses about 15 of the 16 ymm registers, so acc lives on the stack.
  __m256i acc[MR][NV], bytes[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int c = 0; c < NV; ++c) acc[i][c] = bytes[i][c] = zero;
  for (std::int64_t w0 = 0; w0 < words; w0 += kFlushEvery) {
    const std::int64_t w1 = w0 + kFlushEvery < words ? w0 + kFlushEvery : words;
    for (std::int64_t w = w0; w < w1; ++w) {
      const TWord* row = bt + w * ldbt;
      __m256i bv[NV];
      for (int c = 0; c < NV; ++c)
        bv[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 8 * c));
      for (int i = 0; i < MR; ++i) {
        const __m256i av = _mm256_set1_epi32(static_cast<int>(a[i * lda + w]));
        for (int c = 0; c < NV; ++c)
          bytes[i][c] = _mm256_add_epi8(
              bytes[i][c],
              ByteCounts(_mm256_xor_si256(av, bv[c]), lut, low_mask));
      }
    }
    FlushColumns<MR, NV>(bytes, acc);
  }
  StoreColumns<MR, NV>(acc, n, p, ldp);
}


// Nibble tables (PopcountGemmTransposedSplitFn, kernels.h): for a pair of
// rows and one nibble step, the 32-byte table whose low lane is
// T[x] = popcount(x ^ nibble of the first row) and whose high lane is the
// same for the second row (256 tables, 8 KiB, read at the offsets SplitRows
// stores). The 16 column nibbles of a panel step are broadcast to both
// lanes, so one vpshufb gives 16 columns x 2 rows of nibble counts and one
// vpaddb sums them: 2 vector ops per 128 binary MACs, against 3 for the
// lookup on split words (xor, vpshufb, vpaddb per 4 bits of 8 columns).
struct PairTables {
  alignas(64) std::uint8_t t[256][32];
  constexpr PairTables() : t() {
    for (int v = 0; v < 256; ++v)
      for (int x = 0; x < 16; ++x) {
        t[v][x] = static_cast<std::uint8_t>(__builtin_popcount(x ^ (v & 15)));
        t[v][16 + x] = static_cast<std::uint8_t>(__builtin_popcount(x ^ (v >> 4)));
      }
  }
};
constexpr PairTables kPairTables;

// Each step adds at most 4 per byte: 63 steps stay below 255.
constexpr std::int64_t kTableFlushSteps = 63;
// The 16-bit column counters take up to 65535: 16320 steps (2040 words)
// add at most 65280. Longer rows run in chunks added into p.
constexpr std::int64_t kTableMaxSteps = 16320;

// Writes (accumulate: adds) the counts of `pairs` row pairs x 16 * NV
// columns: acc16[i][c][h] holds, as 16-bit lanes, columns 16c + 8h ..
// 16c + 8h + 7 of row 2i (low lane) and of row 2i + 1 (high lane). Rows
// >= m_left and columns >= n are not written.
template <int MP, int NV>
inline void StoreTableTile(const __m256i (&acc16)[MP][NV][2], int m_left,
                           int n, bool accumulate, std::int32_t* p,
                           std::int64_t ldp) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int i = 0; i < MP; ++i)
    for (int r = 0; r < 2; ++r) {
      if (2 * i + r >= m_left) return;
      std::int32_t* row = p + (2 * i + r) * ldp;
      for (int c = 0; c < NV; ++c)
        for (int h = 0; h < 2; ++h) {
          const int col = 16 * c + 8 * h, left = n - col;
          if (left <= 0) break;
          const __m128i half = r == 0 ? _mm256_castsi256_si128(acc16[i][c][h])
                                      : _mm256_extracti128_si256(acc16[i][c][h], 1);
          __m256i v = _mm256_cvtepu16_epi32(half);
          auto* dst = reinterpret_cast<__m256i*>(row + col);
          if (left >= 8) {
            if (accumulate) v = _mm256_add_epi32(v, _mm256_loadu_si256(dst));
            _mm256_storeu_si256(dst, v);
          } else {
            const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
            if (accumulate)
              v = _mm256_add_epi32(v, _mm256_maskload_epi32(reinterpret_cast<int*>(dst), mask));
            _mm256_maskstore_epi32(reinterpret_cast<int*>(dst), mask, v);
          }
        }
    }
}

// MP row pairs (rows + i * ldr) x 16 * NV columns of one panel (steps of
// kSplitPanelCols bytes), `steps` <= kTableMaxSteps nibble steps.
template <int MP, int NV>
inline void TableTile(const std::uint16_t* rows, std::int64_t ldr,
                      const std::uint8_t* panel, std::int64_t steps,
                      int m_left, int n, bool accumulate, std::int32_t* p,
                      std::int64_t ldp) {
  const char* tables = reinterpret_cast<const char*>(kPairTables.t);
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc[MP][NV], acc16[MP][NV][2];
  for (int i = 0; i < MP; ++i)
    for (int c = 0; c < NV; ++c) acc[i][c] = acc16[i][c][0] = acc16[i][c][1] = zero;
  for (std::int64_t s0 = 0; s0 < steps; s0 += kTableFlushSteps) {
    const std::int64_t s1 = s0 + kTableFlushSteps < steps ? s0 + kTableFlushSteps : steps;
#pragma GCC unroll 4
    for (std::int64_t s = s0; s < s1; ++s) {
      __m256i b[NV];
      for (int c = 0; c < NV; ++c)
        b[c] = _mm256_broadcastsi128_si256(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(panel + s * kSplitPanelCols + 16 * c)));
      for (int i = 0; i < MP; ++i) {
        const __m256i t = _mm256_load_si256(
            reinterpret_cast<const __m256i*>(tables + rows[i * ldr + s]));
        for (int c = 0; c < NV; ++c)
          acc[i][c] = _mm256_add_epi8(acc[i][c], _mm256_shuffle_epi8(t, b[c]));
      }
    }
    for (int i = 0; i < MP; ++i)
      for (int c = 0; c < NV; ++c) {
        acc16[i][c][0] = _mm256_add_epi16(acc16[i][c][0], _mm256_unpacklo_epi8(acc[i][c], zero));
        acc16[i][c][1] = _mm256_add_epi16(acc16[i][c][1], _mm256_unpackhi_epi8(acc[i][c], zero));
        acc[i][c] = zero;
      }
  }
  StoreTableTile<MP, NV>(acc16, m_left, n, accumulate, p, ldp);
}

}  // namespace

// Register tiles of 2 row pairs (4 rows) x 4 vectors of 16 columns (one
// panel): 8 byte accumulators, 4 column vectors and a table in 13 ymm
// registers; per step 2 table loads, 2 offset loads and 4 broadcasts feed
// 8 vpshufb + 8 vpaddb; the step loop unrolled 4 times (core bench, one
// thread, against 2 times: 1.00-1.04x on the roofline, conv and dense
// lines; 8 times: no further gain). Rows in L1, one thread, Xeon family 6
// model 167, 32 rows x 384 columns, against the 4x16 lookup tile on
// lo/hi-split words: 1.15-1.17x at 36 words, 1.19-1.21x at 72, 1.24-1.26x
// at 128-144; 2x3 and 4x2 pairs and 1-row tables (32 columns a lane) ran
// 1.0-1.2x.
constexpr int kTablePairs = 2;
constexpr int kTableVectors = static_cast<int>(kSplitPanelCols) / 16;

void PopcountGemmTransposedSplitAvx2(const std::uint16_t* rows,
                                     const std::uint8_t* panels, int m, int n,
                                     std::int64_t words, std::int32_t* p,
                                     std::int64_t ldp) {
  const std::int64_t steps = kSplitStepsPerWord * words;
  const std::int64_t pairs = (m + 1) / 2;
  for (int j = 0; j < n; j += static_cast<int>(kSplitPanelCols)) {
    const int nj = n - j < kSplitPanelCols ? n - j : static_cast<int>(kSplitPanelCols);
    const std::uint8_t* panel = panels + j * steps;  // panel j / 64
    for (std::int64_t s0 = 0; s0 < steps; s0 += kTableMaxSteps) {
      const std::int64_t ns = steps - s0 < kTableMaxSteps ? steps - s0 : kTableMaxSteps;
      const bool accumulate = s0 > 0;
      std::int64_t i = 0;
      for (; i + kTablePairs <= pairs; i += kTablePairs)
        TableTile<kTablePairs, kTableVectors>(
            rows + i * steps + s0, steps, panel + s0 * kSplitPanelCols, ns,
            static_cast<int>(m - 2 * i), nj, accumulate, p + 2 * i * ldp + j, ldp);
      for (; i < pairs; ++i)
        TableTile<1, kTableVectors>(
            rows + i * steps + s0, steps, panel + s0 * kSplitPanelCols, ns,
            static_cast<int>(m - 2 * i), nj, accumulate, p + 2 * i * ldp + j, ldp);
    }
  }
}

// Blocks with at least this many rows prepare their operands first
// (SplitRows, SplitIntoPanels) and run the table kernel; fewer rows run the
// lookup tile on the words as given.
constexpr int kSplitMinRows = 16;

// The lookup tile's column groups (bt may be read up to the next multiple
// of 64, which the contract guarantees is readable); 4 rows per tile, so
// each bt load feeds 4 rows and each broadcast 2 vectors.
constexpr int kTransposedCols = 16;

void PopcountGemmTransposedAvx2(const TWord* a, std::int64_t lda,
                                const TWord* bt, std::int64_t ldbt, int m,
                                int n, std::int64_t words, std::int32_t* p,
                                std::int64_t ldp) {
  constexpr int kCols = kTransposedCols;
  if (m >= kSplitMinRows) {
    // Prepared copies in a per-thread buffer: a's m rows as row pairs, bt's
    // n columns as panels (bt is readable up to ldbt >= n).
    thread_local std::vector<std::uint16_t> row_buffer;
    thread_local std::vector<std::uint8_t> panel_buffer;
    const auto rows_size = static_cast<std::size_t>(SplitRowsSize(m, words));
    const auto panels_size = static_cast<std::size_t>(SplitPanelsSize(n, words));
    if (row_buffer.size() < rows_size) row_buffer.resize(rows_size);
    if (panel_buffer.size() < panels_size) panel_buffer.resize(panels_size);
    SplitRows(a, lda, m, words, row_buffer.data());
    SplitIntoPanels(bt, 1, ldbt, n, words, panel_buffer.data());
    PopcountGemmTransposedSplitAvx2(row_buffer.data(), panel_buffer.data(), m, n,
                                    words, p, ldp);
    return;
  }
  for (int j = 0; j < n; j += kCols) {
    const int nj = n - j < kCols ? n - j : kCols;
    int i = 0;
    for (; i + 4 <= m; i += 4)
      TransposedTile<4, kCols / 8>(a + i * lda, lda, bt + j, ldbt, nj, words,
                                   p + i * ldp + j, ldp);
    for (; i < m; ++i)
      TransposedTile<1, kCols / 8>(a + i * lda, lda, bt + j, ldbt, nj, words,
                                   p + i * ldp + j, ldp);
  }
}

void PopcountGemmAvx2(const TWord* a, std::int64_t lda, const TWord* b,
                      std::int64_t ldb, int m, int n, std::int64_t words,
                      std::int32_t* p, std::int64_t ldp) {
  int i = 0;
  for (; i + 2 <= m; i += 2) {
    // Pairs of rows: the 2x2 lookup tile (each load feeds two pairs).
    // Measured on a Sapphire Rapids core, 32x64 blocks at K = 4096: lookup
    // 2x2 325 G binary MAC/s, Harley-Seal 1x1 309, 1x2 300 (its carry-save
    // state spills); vpshufb issues on two ports there. A single row (GEMV,
    // batch 1) has no load reuse, and there Harley-Seal 1x1 wins: 313
    // against 265 for the 1x4 lookup tile at 1x4096x4096.
    int j = 0;
    for (; j + 2 <= n; j += 2)
      Tile<2, 2>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
    for (; j < n; ++j)
      Tile<2, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
  }
  for (; i < m; ++i) {
    int j = 0;
    if (words >= kHarleySealWords) {
      for (; j < n; ++j)
        TileHarleySeal<1>(a + i * lda, b + j * ldb, ldb, words, p + i * ldp + j);
      continue;
    }
    for (; j + 4 <= n; j += 4)
      Tile<1, 4>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
    for (; j < n; ++j)
      Tile<1, 1>(a + i * lda, lda, b + j * ldb, ldb, words, p + i * ldp + j,
                 ldp);
  }
}

void BitpackFloatAvx2(const float* x, std::int64_t k, TWord* out) {
  // x <= -FLT_MIN: PacksAsMinusOne (core/types.h), independent of DAZ.
  const __m256 limit = _mm256_set1_ps(-std::numeric_limits<float>::min());
  std::int64_t w = 0;
  for (; (w + 1) * kWordBits <= k; ++w) {
    const float* xw = x + w * kWordBits;
    TWord bits = 0;
    for (int q = 0; q < 4; ++q) {
      const __m256 v = _mm256_loadu_ps(xw + 8 * q);
      bits |= static_cast<TWord>(
                  _mm256_movemask_ps(_mm256_cmp_ps(v, limit, _CMP_LE_OQ)))
              << (8 * q);
    }
    out[w] = bits;
  }
  const std::int64_t rest = k - w * kWordBits;
  if (rest > 0) {
    TWord bits = 0;
    const float* xw = x + w * kWordBits;
    for (std::int64_t b = 0; b < rest; ++b)
      bits |= TWord(PacksAsMinusOne(xw[b])) << b;
    out[w] = bits;
  }
}

std::int64_t XorPopcountRooflineAvx2(const TWord* a, const TWord* b,
                                     std::int64_t words, std::int64_t iters) {
  // The fastest tile: the nibble-table 2-pair x 64-column one of the
  // transposed kernel (1.15-1.26x the lo/hi-split 4x16 lookup tile, the
  // roofline before it, which was 1.2-1.3x the Harley-Seal 1x1 tile), over
  // k = words / 4 words of 4 rows of a and 64 columns made from b, prepared
  // once outside the loop (k * (32 + 512) bytes: L1). One iteration is
  // 4 x 64 x k word pairs, 64 times the words pairs of one row pair.
  const std::int64_t k = words / 4;
  constexpr int kRows = 2 * kTablePairs, kCols = static_cast<int>(kSplitPanelCols);
  std::vector<TWord> bt(k * kCols);
  for (std::int64_t w = 0; w < k; ++w)
    for (int c = 0; c < kCols; ++c) bt[w * kCols + c] = b[(w * kCols + c) % words];
  std::vector<std::uint16_t> rows(static_cast<std::size_t>(SplitRowsSize(kRows, k)));
  std::vector<std::uint8_t> panel(static_cast<std::size_t>(SplitPanelsSize(kCols, k)));
  SplitRows(a, k, kRows, k, rows.data());
  SplitIntoPanels(bt.data(), 1, kCols, kCols, k, panel.data());
  const std::int64_t steps = kSplitStepsPerWord * k;
  std::int32_t p[kRows * kCols];
  std::int64_t total = 0;
  for (std::int64_t it = 0; it < iters; ++it) {
    // The same inputs every pass: keep the compiler from reusing results.
    asm volatile("" : : "r"(rows.data()), "r"(panel.data()) : "memory");
    TableTile<kTablePairs, kTableVectors>(rows.data(), steps, panel.data(), steps,
                                          kRows, kCols, false, p, kCols);
    // Every output is used (else dead-code elimination drops tile rows).
    for (int q = 0; q < kRows * kCols; ++q) total += p[q];
  }
  volatile std::int64_t sink = total;
  (void)sink;
  return iters * kRows * kCols * k * 32;  // binary MACs performed
}

// Float rows (FloatGemmBitsFn): six rows x 16 columns in 12 accumulators
// started at the bias; per t, two loads of w and six broadcasts of a feed
// 12 fused multiply-adds; then each row's 16 values become 16 sign bits
// (compare with -FLT_MIN, movemask). Named variables, not arrays: with
// arrays GCC 12 stored every accumulator back to the stack on each t (half
// speed).
__attribute__((target("avx2,fma"))) inline std::uint16_t SignBits16(__m256 lo,
                                                                    __m256 hi) {
  // PacksAsMinusOne: v <= -FLT_MIN (ordered: NaN gives 0).
  const __m256 limit = _mm256_set1_ps(-std::numeric_limits<float>::min());
  return static_cast<std::uint16_t>(
      _mm256_movemask_ps(_mm256_cmp_ps(lo, limit, _CMP_LE_OQ)) |
      (_mm256_movemask_ps(_mm256_cmp_ps(hi, limit, _CMP_LE_OQ)) << 8));
}

__attribute__((target("avx2,fma"))) inline void FloatTile6(
    const float* a, std::int64_t k, const float* w, std::int64_t n,
    __m256 bias0, __m256 bias1, TWord* out, std::int64_t ldo, std::int64_t j) {
  __m256 c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1;
  __m256 c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1;
  __m256 c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1;
  for (std::int64_t t = 0; t < k; ++t) {
    const __m256 w0 = _mm256_loadu_ps(w + t * n);
    const __m256 w1 = _mm256_loadu_ps(w + t * n + 8);
    __m256 v = _mm256_broadcast_ss(a + t);
    c00 = _mm256_fmadd_ps(v, w0, c00);
    c01 = _mm256_fmadd_ps(v, w1, c01);
    v = _mm256_broadcast_ss(a + k + t);
    c10 = _mm256_fmadd_ps(v, w0, c10);
    c11 = _mm256_fmadd_ps(v, w1, c11);
    v = _mm256_broadcast_ss(a + 2 * k + t);
    c20 = _mm256_fmadd_ps(v, w0, c20);
    c21 = _mm256_fmadd_ps(v, w1, c21);
    v = _mm256_broadcast_ss(a + 3 * k + t);
    c30 = _mm256_fmadd_ps(v, w0, c30);
    c31 = _mm256_fmadd_ps(v, w1, c31);
    v = _mm256_broadcast_ss(a + 4 * k + t);
    c40 = _mm256_fmadd_ps(v, w0, c40);
    c41 = _mm256_fmadd_ps(v, w1, c41);
    v = _mm256_broadcast_ss(a + 5 * k + t);
    c50 = _mm256_fmadd_ps(v, w0, c50);
    c51 = _mm256_fmadd_ps(v, w1, c51);
  }
  StoreBits16(out, j, SignBits16(c00, c01));
  StoreBits16(out + ldo, j, SignBits16(c10, c11));
  StoreBits16(out + 2 * ldo, j, SignBits16(c20, c21));
  StoreBits16(out + 3 * ldo, j, SignBits16(c30, c31));
  StoreBits16(out + 4 * ldo, j, SignBits16(c40, c41));
  StoreBits16(out + 5 * ldo, j, SignBits16(c50, c51));
}

__attribute__((target("avx2,fma"))) inline void FloatTile1(
    const float* a, std::int64_t k, const float* w, std::int64_t n,
    __m256 bias0, __m256 bias1, TWord* out, std::int64_t j) {
  __m256 c0 = bias0, c1 = bias1;
  for (std::int64_t t = 0; t < k; ++t) {
    const __m256 v = _mm256_broadcast_ss(a + t);
    c0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + t * n), c0);
    c1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + t * n + 8), c1);
  }
  StoreBits16(out, j, SignBits16(c0, c1));
}

__attribute__((target("avx2,fma"))) void FloatGemmBitsAvx2(
    const float* a, std::int64_t m, std::int64_t k, const float* w,
    const float* bias, std::int64_t n, TWord* out, std::int64_t ldo) {
  static_assert(kFloatGemmCols == 16, "two vectors of 8 floats per tile");
  for (std::int64_t j = 0; j < n; j += kFloatGemmCols) {
    const __m256 bias0 = _mm256_loadu_ps(bias + j);
    const __m256 bias1 = _mm256_loadu_ps(bias + j + 8);
    std::int64_t i = 0;
    for (; i + 6 <= m; i += 6)
      FloatTile6(a + i * k, k, w + j, n, bias0, bias1, out + i * ldo, ldo, j);
    for (; i < m; ++i)
      FloatTile1(a + i * k, k, w + j, n, bias0, bias1, out + i * ldo, j);
  }
}

}  // namespace core
}  // namespace tfdisc

#pragma GCC pop_options
#endif  // defined(__x86_64__)
