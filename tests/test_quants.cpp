// Tests of the scalar reference (de)quantizers (kernels/ref/quants.*) and of dtype.h's
// fp16/bf16 conversions:
//  - golden vectors from gguf-py and ggml (tests/data/quant_vectors.bin, made by
//    tests/data/make_quant_vectors.py): dequantization bit for bit, quantization byte
//    for byte;
//  - every stored bit of every block format reaches the output;
//  - round trips whose error is held to bounds derived from the bit widths;
//  - fp16 and bf16 conversions over all 65536 patterns and at rounding ties.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "ref/iq_grids.h"
#include "ref/quants.h"
#include "test_util.h"

using namespace kiln;

TEST_SUITE_BEGIN("quants");

namespace {

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float float_of(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
// Output buffers start as NaN so an element a kernel forgets to write cannot pass.
std::vector<float> nan_filled(int64_t n) { return std::vector<float>(size_t(n), std::numeric_limits<float>::quiet_NaN()); }

// ---- golden vectors ---------------------------------------------------------------------

enum : uint32_t { kDequant = 0, kQuant = 1, kQuantWeighted = 2, kGrid = 3 };
const char* const kSourceName[] = {"gguf-py", "script formula", "ggml"};

struct Record {
    uint32_t kind = 0, type = 0, source = 0;
    std::vector<uint8_t> bytes;
    std::vector<float> floats;
};

// Layout: see the docstring of tests/data/make_quant_vectors.py.
std::vector<Record> load_vectors() {
    const std::string path = test::data_path("quant_vectors.bin");
    std::vector<Record> out;
    if (!test::require_file(path)) return out;
    std::ifstream f(path, std::ios::binary);
    const std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    auto take = [&](void* dst, size_t n) {
        if (buf.size() - pos < n) return false;
        if (n > 0) std::memcpy(dst, buf.data() + pos, n);  // a grid record has no floats: dst may be null
        pos += n;
        return true;
    };
    char magic[4];
    uint32_t count = 0;
    REQUIRE((take(magic, 4) && std::memcmp(magic, "KQV1", 4) == 0 && take(&count, 4)));
    for (uint32_t r = 0; r < count; ++r) {
        Record rec;
        uint32_t n_floats = 0, n_bytes = 0;
        REQUIRE((take(&rec.kind, 4) && take(&rec.type, 4) && take(&rec.source, 4) && take(&n_floats, 4) &&
                 take(&n_bytes, 4)));
        REQUIRE(dtype_info(rec.type) != nullptr);
        REQUIRE(rec.source < 3);
        rec.bytes.resize(n_bytes);
        rec.floats.resize(n_floats);
        REQUIRE((take(rec.bytes.data(), n_bytes) && take(rec.floats.data(), size_t(n_floats) * 4)));
        if (rec.kind != kGrid)  // a grid record holds a lattice, not blocks
            REQUIRE(row_bytes(DType(rec.type), rec.kind == kQuantWeighted ? n_floats / 2 : n_floats) == n_bytes);  // weighted: input + importance
        out.push_back(std::move(rec));
    }
    CHECK(pos == buf.size());
    return out;
}

bool has_record(const std::vector<Record>& v, uint32_t kind, DType t) {
    return std::any_of(v.begin(), v.end(), [&](const Record& r) { return r.kind == kind && r.type == uint32_t(t); });
}

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K,
                           DType::IQ4_NL, DType::IQ4_XS, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S,
                           DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M};

}  // namespace

TEST_CASE("quants: dequantize_row matches the gguf-py / ggml golden vectors bit for bit") {
    const auto vectors = load_vectors();
    if (vectors.empty()) return;
    for (DType t : kAllTypes) CHECK_MESSAGE(has_record(vectors, kDequant, t), "no dequant vectors for ", dtype_name(t));
    for (const Record& r : vectors) {
        if (r.kind != kDequant) continue;
        const DType t = DType(r.type);
        const int64_t n = int64_t(r.floats.size());
        auto y = nan_filled(n);
        ref::dequantize_row(t, r.bytes.data(), y.data(), n);
        int64_t mismatches = 0;
        for (int64_t i = 0; i < n; ++i) mismatches += bits_of(y[size_t(i)]) != bits_of(r.floats[size_t(i)]);
        INFO(std::string(dtype_name(t)), " vs ", kSourceName[r.source], ", ", n, " values");
        CHECK(mismatches == 0);
    }
}

TEST_CASE("quants: kiln's IQ grids are gguf-py's, point for point") {
    const auto vectors = load_vectors();
    if (vectors.empty()) return;
    const ref::IqGrids& g = ref::kIqGrids;
    const std::pair<DType, std::vector<uint8_t>> grids[] = {
        {DType::IQ2_XXS, {&g.iq2xxs[0][0], &g.iq2xxs[0][0] + sizeof g.iq2xxs}},
        {DType::IQ2_XS, {&g.iq2xs[0][0], &g.iq2xs[0][0] + sizeof g.iq2xs}},
        {DType::IQ2_S, {&g.iq2s[0][0], &g.iq2s[0][0] + sizeof g.iq2s}},
        {DType::IQ3_XXS, {&g.iq3xxs[0][0], &g.iq3xxs[0][0] + sizeof g.iq3xxs}},
        {DType::IQ3_S, {&g.iq3s[0][0], &g.iq3s[0][0] + sizeof g.iq3s}},
        {DType::IQ1_S, {reinterpret_cast<const uint8_t*>(&g.iq1s[0][0]), reinterpret_cast<const uint8_t*>(&g.iq1s[0][0]) + sizeof g.iq1s}},
    };
    for (const auto& [t, ours] : grids) {
        INFO(std::string(dtype_name(t)));
        const auto it = std::find_if(vectors.begin(), vectors.end(), [&](const Record& r) { return r.kind == kGrid && r.type == uint32_t(t); });
        REQUIRE(it != vectors.end());
        CHECK(it->bytes == ours);
    }
}

TEST_CASE("quants: quantize_row reproduces gguf-py / ggml bytes exactly") {
    const auto vectors = load_vectors();
    if (vectors.empty()) return;
    for (DType t : {DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0}) {
        CHECK_MESSAGE(has_record(vectors, kQuant, t), "no gguf-py quant vectors for ", dtype_name(t));
    }
    for (DType t : {DType::Q8_1, DType::Q8_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS}) {
        if (!has_record(vectors, kQuant, t)) MESSAGE("no ggml quant vectors for ", dtype_name(t), " (made without --ggml-lib)");
    }
    for (const Record& r : vectors) {
        if (r.kind != kQuant) continue;
        const DType t = DType(r.type);
        const int64_t n = int64_t(r.floats.size());
        std::vector<uint8_t> out(r.bytes.size(), 0xAA);
        REQUIRE(ref::quantize_row(t, r.floats.data(), out.data(), n) == r.bytes.size());
        const size_t bs = dtype_info(t).type_size;
        int64_t bad_blocks = 0;
        for (size_t b = 0; b < out.size() / bs; ++b) {
            bool same = std::memcmp(&out[b * bs], &r.bytes[b * bs], bs) == 0;
            if (!same && t == DType::F16 && std::isnan(r.floats[b])) {
                // NaN payloads: kiln writes sign | 0x7e00 as ggml does, numpy keeps the
                // payload bits. Only "a NaN with this sign" is required.
                uint16_t a, e;
                std::memcpy(&a, &out[b * 2], 2);
                std::memcpy(&e, &r.bytes[b * 2], 2);
                same = (a & 0x7c00) == 0x7c00 && (a & 0x3ff) && (a & 0x8000) == (e & 0x8000);
            }
            bad_blocks += !same;
        }
        INFO(std::string(dtype_name(t)), " vs ", kSourceName[r.source], ", ", out.size() / bs, " blocks");
        CHECK(bad_blocks == 0);
    }
}

TEST_CASE("quants: IQ4_NL / IQ4_XS with an importance row give ggml's bytes") {
    const auto vectors = load_vectors();
    if (vectors.empty()) return;
    int seen = 0;
    for (const Record& r : vectors) {
        if (r.kind != kQuantWeighted) continue;
        const DType t = DType(r.type);
        const int64_t n = int64_t(r.floats.size() / 2);  // the input, then its importance weights
        std::vector<uint8_t> out(r.bytes.size(), 0xAA), plain(r.bytes.size(), 0xAA);
        if (t == DType::IQ4_NL) {
            ref::quantize_row_iq4_nl(r.floats.data(), reinterpret_cast<block_iq4_nl*>(out.data()), n, r.floats.data() + n);
            ref::quantize_row_iq4_nl(r.floats.data(), reinterpret_cast<block_iq4_nl*>(plain.data()), n);
        } else {
            REQUIRE(t == DType::IQ4_XS);
            ref::quantize_row_iq4_xs(r.floats.data(), reinterpret_cast<block_iq4_xs*>(out.data()), n, r.floats.data() + n);
            ref::quantize_row_iq4_xs(r.floats.data(), reinterpret_cast<block_iq4_xs*>(plain.data()), n);
        }
        INFO(std::string(dtype_name(t)));
        CHECK(out == r.bytes);
        CHECK(plain != r.bytes);  // the weights change the result: the test sees them
        ++seen;
    }
    if (seen == 0) MESSAGE("no importance-weighted vectors (made without --ggml-lib)");
}

TEST_CASE("quants: vec_dot_ref is the double-accumulated dot of the dequantized row") {
    const auto vectors = load_vectors();
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (const Record& r : vectors) {
        if (r.kind != kDequant) continue;
        std::vector<float> x(r.floats.size());
        for (float& v : x) v = normal(rng);
        double want = 0.0;
        for (size_t i = 0; i < x.size(); ++i) want += double(r.floats[i]) * double(x[i]);
        const float got = ref::vec_dot_ref(DType(r.type), r.bytes.data(), x.data(), int64_t(x.size()));
        INFO(std::string(dtype_name(DType(r.type))));
        if (std::isnan(want)) {
            CHECK(std::isnan(got));
        } else {
            CHECK(bits_of(got) == bits_of(float(want)));
        }
    }
}

// ---- every bit matters ------------------------------------------------------------------

namespace {

// A random block of type t whose scales are all nonzero (so that every code bit is
// visible in the output), with d/dmin set to moderate values.
std::vector<uint8_t> random_live_block(DType t, std::mt19937& rng) {
    const DTypeInfo& info = dtype_info(t);
    std::vector<uint8_t> b(info.type_size);
    auto put16 = [&](size_t off, float v) {
        const uint16_t h = fp32_to_fp16(v);
        std::memcpy(&b[off], &h, 2);
    };
    for (int attempt = 0;; ++attempt) {
        REQUIRE(attempt < 1000);
        for (auto& v : b) v = uint8_t(rng());
        bool live = true;
        switch (t) {
            case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: put16(0, 0.75f); break;
            case DType::Q4_1: case DType::Q5_1: put16(0, 0.75f); put16(2, -0.3125f); break;
            case DType::Q8_1: put16(0, 0.75f); break;
            case DType::Q2_K:
                for (int j = 0; j < 16; ++j) live &= (b[j] & 0x0f) != 0 && (b[j] >> 4) != 0;
                put16(80, 0.5f); put16(82, 0.25f);
                break;
            case DType::Q3_K:
                for (int j = 0; j < 16; ++j) live &= ref::unpack_scale_q3_K(j, &b[96]) != 0;
                put16(108, 0.5f);
                break;
            case DType::Q4_K: case DType::Q5_K:
                for (int j = 0; j < 8; ++j) {
                    uint8_t sc, m;
                    ref::unpack_scale_min_k4(j, &b[4], &sc, &m);
                    live &= sc != 0 && m != 0;
                }
                put16(0, 0.5f); put16(2, 0.25f);
                break;
            case DType::Q6_K:
                for (int j = 0; j < 16; ++j) live &= b[192 + j] != 0;
                put16(208, 0.5f);
                break;
            case DType::Q8_K: { const float d = 0.01f; std::memcpy(&b[0], &d, 4); break; }
            case DType::IQ4_NL: put16(0, 0.75f); break;
            case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S: case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ1_S:
                put16(0, 0.5f);
                break;
            case DType::IQ1_M: {  // d = 0.5 (0x3800) in the top nibbles of the scale words
                for (int k = 0; k < 4; ++k) b[48 + 2 * k + 1] = uint8_t((b[48 + 2 * k + 1] & 0x0F) | (((0x3800 >> (4 * k)) & 0xF) << 4));
                break;
            }
            case DType::IQ4_XS:
                put16(0, 0.5f);
                for (int ib = 0; ib < 8; ++ib) live &= iq4xs_scale(*reinterpret_cast<const block_iq4_xs*>(b.data()), ib) != 0;
                break;
            default: break;  // F32 / F16 / BF16: every pattern is live
        }
        if (live) return b;
    }
}

}  // namespace

TEST_CASE("quants: every stored bit of every format reaches the dequantized output") {
    std::mt19937 rng(11);
    for (DType t : kAllTypes) {
        const DTypeInfo& info = dtype_info(t);
        const auto block = random_live_block(t, rng);
        const int64_t n = info.block_size;
        auto base = nan_filled(n);
        ref::dequantize_row(t, block.data(), base.data(), n);
        // Cached sums that dequantization does not read: q8_1's s, q8_K's bsums.
        size_t skip_lo = 0, skip_hi = 0;
        if (t == DType::Q8_1) skip_lo = 2, skip_hi = 4;
        if (t == DType::Q8_K) skip_lo = 260, skip_hi = 292;
        int dead_bits = 0;
        for (size_t byte = 0; byte < block.size(); ++byte) {
            if (byte >= skip_lo && byte < skip_hi) continue;
            for (int bit = 0; bit < 8; ++bit) {
                auto flipped = block;
                flipped[byte] ^= uint8_t(1u << bit);
                auto y = nan_filled(n);
                ref::dequantize_row(t, flipped.data(), y.data(), n);
                bool changed = false;
                for (int64_t i = 0; i < n; ++i) changed |= bits_of(y[size_t(i)]) != bits_of(base[size_t(i)]);
                if (!changed) {
                    ++dead_bits;
                    MESSAGE(std::string(dtype_name(t)), ": flipping byte ", byte, " bit ", bit, " changed nothing");
                }
            }
        }
        INFO(std::string(dtype_name(t)));
        CHECK(dead_bits == 0);
    }
}

// ---- round-trip error bounds --------------------------------------------------------------
//
// Derivation. A b-bit uniform quantizer with step D rounds each value to the nearest of
// 2^b grid points; if the value lies inside the grid, the error is at most D/2 and, for
// data that is not aligned with the grid, close to uniform on [-D/2, D/2], so its mean
// square is D^2/12. The step each format's reference quantizer picks for a group of B
// values:
//   q8_0 q8_1 q8_K   D = max|x| / 127                           (B = 32, 32, 256)
//   q4_0 q5_0        D = max|x| / 2^(b-1), the opposite extreme is clamped: error <= D
//   q4_1 q5_1        D = (max - min) / (2^b - 1)                (B = 32)
//   q4_K q5_K        ~ (max - min(min, 0)) / (2^b - 1) per 32, then searched and 6-bit scaled
//   q6_K             ~ max|x| / 32 per 16, then searched and stored as int8 scales
// plus fp16 rounding of d and min (relative 2^-11, or 2^-25 absolute for subnormals),
// which moves a value with code q by at most |q| h(d). Hence three checks, on rows of
// Gaussian data, rows with outliers, zero blocks and fp16-subnormal scales:
//  1. per element, the code is the nearest point of the grid actually stored (exact up to
//     float rounding for the k-quants, up to |q| h(d) + h(min) for the legacy types, whose
//     codes are computed with the unrounded d);
//  2. legacy types: per element, |error| <= D/2 (D for q4_0/q5_0) + q_max h(D) + h(min);
//  3. on Gaussian rows, mean square error <= 1.25 * sum over groups of B D^2 / 12, with D
//     from the input as above (the search of the k-quants only lowers it), and >= 0.5 times
//     that. (Not on the hard rows: where a block's data spans less than one step, e.g.
//     next to an outlier, the error is not uniform over the step, and fp16-subnormal
//     scales add their own error; checks 1 and 2 still hold there.)
// And for Gaussian rows a stated relative-RMSE constant per type. With the RMS of max|x|
// over 32 N(0,1) values 2.39, over 16 2.13, over 256 3.07, and of the range of 32 4.20
// (numerically), D / sqrt(12) predicts: q8_0 0.0054, q8_K 0.0070, q6_K 0.019, q5_0 0.043,
// q5_1 0.039, q4_0 0.086, q4_1 0.081, and q4_K / q5_K as q4_1 / q5_1 (their search gets
// ~10% below). The constants are those predictions + ~15%.
namespace {

enum class Fit { AbsMax, SignedMax, MinMax };

struct QSpec {
    DType type;
    int group;                // values sharing one step
    Fit fit;
    double div;               // D = max|x| / div, or range / div
    bool k_quant;             // codes against the stored scales; offset <= 0; no worst case
    double rel_rmse_bound;    // stated constant for Gaussian rows
};

const QSpec kSpecs[] = {
    {DType::Q8_0, 32, Fit::AbsMax, 127, false, 0.0063},
    {DType::Q8_1, 32, Fit::AbsMax, 127, false, 0.0063},
    {DType::Q8_K, 256, Fit::AbsMax, 127, true, 0.008},
    {DType::Q4_0, 32, Fit::SignedMax, 8, false, 0.1},
    {DType::Q5_0, 32, Fit::SignedMax, 16, false, 0.05},
    {DType::Q4_1, 32, Fit::MinMax, 15, false, 0.093},
    {DType::Q5_1, 32, Fit::MinMax, 31, false, 0.045},
    {DType::Q4_K, 32, Fit::MinMax, 15, true, 0.093},
    {DType::Q5_K, 32, Fit::MinMax, 31, true, 0.045},
    {DType::Q6_K, 16, Fit::SignedMax, 32, true, 0.022},
};

// The grid element i was rounded onto, read back from the stored block fields:
// value(q) = offset + step * q for q in [qlo, qhi] (evaluated in float as the dequantizer does).
struct Grid {
    float step = 0, offset = 0;
    int qlo = 0, qhi = 0;
};

std::vector<Grid> stored_grids(DType t, const uint8_t* row, int64_t n) {
    std::vector<Grid> g(static_cast<size_t>(n));
    const int64_t bs = dtype_info(t).block_size;
    const size_t ts = dtype_info(t).type_size;
    auto f16 = [](const uint8_t* p) {
        uint16_t h;
        std::memcpy(&h, p, 2);
        return fp16_to_fp32(h);
    };
    for (int64_t b = 0; b < n / bs; ++b) {
        const uint8_t* blk = row + size_t(b) * ts;
        for (int64_t j = 0; j < bs; ++j) {
            Grid& e = g[size_t(b * bs + j)];
            switch (t) {
                case DType::Q4_0: e = {f16(blk), 0.0f, -8, 7}; break;
                case DType::Q5_0: e = {f16(blk), 0.0f, -16, 15}; break;
                case DType::Q4_1: e = {f16(blk), f16(blk + 2), 0, 15}; break;
                case DType::Q5_1: e = {f16(blk), f16(blk + 2), 0, 31}; break;
                case DType::Q8_0: case DType::Q8_1: e = {f16(blk), 0.0f, -128, 127}; break;
                case DType::Q8_K: { float d; std::memcpy(&d, blk, 4); e = {d, 0.0f, -128, 127}; break; }
                case DType::Q4_K: case DType::Q5_K: {
                    uint8_t sc, m;
                    ref::unpack_scale_min_k4(int(j / 32), blk + 4, &sc, &m);
                    e = {f16(blk) * float(sc), -(f16(blk + 2) * float(m)), 0, t == DType::Q4_K ? 15 : 31};
                    break;
                }
                case DType::Q6_K: e = {f16(blk + 208) * float(int8_t(blk[192 + j / 16])), 0.0f, -32, 31}; break;
                default: FAIL("no grid for ", dtype_name(t));
            }
        }
    }
    return g;
}

double fp16_rounding(double v) { return std::max(std::fabs(v) * 0x1p-11, 0x1p-25); }  // h(v)

struct RoundTrip {
    double err2 = 0, x2 = 0;     // sum of squared errors, of squared inputs
    double predicted2 = 0;       // sum over groups of B D^2 / 12, D from the input
    int64_t not_nearest = 0;     // check 1 failures
    int64_t over_worst = 0;      // check 2 failures
    int64_t nonzero_for_zero_group = 0;
    double worst_excess = 0;     // largest (|error| - distance to nearest grid point)
};

// Dequantizes `bytes` and measures it against the input x (checks 1 and 2, and the sums
// for check 3).
RoundTrip check_round_trip(const QSpec& s, const float* x, const std::vector<uint8_t>& bytes, int64_t n) {
    RoundTrip r;
    auto y = nan_filled(n);
    ref::dequantize_row(s.type, bytes.data(), y.data(), n);
    const auto grid = stored_grids(s.type, bytes.data(), n);
    for (int64_t g0 = 0; g0 < n; g0 += s.group) {
        double amax = 0, mx = -INFINITY, mn = INFINITY;
        for (int j = 0; j < s.group; ++j) {
            amax = std::max(amax, std::fabs(double(x[g0 + j])));
            mx = std::max(mx, double(x[g0 + j]));
            mn = std::min(mn, double(x[g0 + j]));
        }
        if (s.k_quant) mn = std::min(mn, 0.0);
        const double D = s.fit == Fit::MinMax ? (mx - mn) / s.div : amax / s.div;
        r.predicted2 += s.group * D * D / 12;
        const double qmax = s.fit == Fit::MinMax ? s.div : s.div + 1;  // largest |code|
        const double worst = (s.fit == Fit::SignedMax ? D : D / 2) + qmax * fp16_rounding(D) +
                             (s.fit == Fit::MinMax ? fp16_rounding(mn) : 0.0) + 1e-6 * amax;
        for (int j = 0; j < s.group; ++j) {
            const int64_t i = g0 + j;
            const double xi = x[i], yi = y[size_t(i)], err = std::fabs(yi - xi);
            r.err2 += (yi - xi) * (yi - xi);
            r.x2 += xi * xi;
            if (amax == 0 && yi != 0) ++r.nonzero_for_zero_group;
            if (!s.k_quant && !(err <= worst)) ++r.over_worst;
            // Distance to the nearest grid point, and how far off it the code may be.
            const Grid& e = grid[size_t(i)];
            double dist = std::fabs(double(e.offset) - xi);
            if (e.step != 0) {
                const double t = (xi - e.offset) / e.step;
                const int q0 = int(std::clamp(std::floor(t), double(e.qlo), double(e.qhi)));
                for (int q : {q0, std::min(q0 + 1, e.qhi)})
                    dist = std::min(dist, std::fabs(double(e.offset + e.step * float(q)) - xi));
            }
            // k-quants round against the stored scales: only float rounding. Legacy types
            // round x/d with the unrounded d (and min): where x/d and x/d16 straddle a
            // half-integer k + 1/2, the code is one off and the excess over the nearest
            // distance is at most 2 (k + 1/2) |d - d16| + 2 |min - min16|.
            const double q = e.step != 0 ? std::fabs(std::round((yi - e.offset) / e.step)) : 0.0;
            const double tol = s.k_quant ? 0x1p-20 * (std::max(-e.qlo, e.qhi) * std::fabs(e.step) + std::fabs(e.offset) +
                                                      std::fabs(xi))
                                         : (2 * q + 1) * fp16_rounding(e.step) + 2 * fp16_rounding(e.offset) +
                                               1e-6 * std::fabs(xi);
            if (!(err <= dist + tol)) ++r.not_nearest;
            r.worst_excess = std::max(r.worst_excess, err - dist);
        }
    }
    return r;
}

std::vector<uint8_t> quantize(DType t, const std::vector<float>& x) {
    std::vector<uint8_t> bytes(row_bytes(t, int64_t(x.size())), 0xAA);
    REQUIRE(ref::quantize_row(t, x.data(), bytes.data(), int64_t(x.size())) == bytes.size());
    return bytes;
}

std::vector<float> gaussian(std::mt19937& rng, int64_t n, float sigma, float mean = 0.0f) {
    std::normal_distribution<float> normal(mean, sigma);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng);
    return x;
}

// Rows that stress the quantizers: outliers, zero blocks, tiny scales, an offset.
std::vector<std::vector<float>> hard_rows(std::mt19937& rng) {
    std::vector<std::vector<float>> rows;
    auto outliers = gaussian(rng, 1024, 1.0f);
    for (int k = 0; k < 6; ++k) outliers[rng() % 1024] = (k % 2 ? 60.0f : -45.0f);
    rows.push_back(outliers);
    auto zeros = gaussian(rng, 1024, 1.0f);
    std::fill(zeros.begin(), zeros.begin() + 256, 0.0f);        // a whole super-block
    std::fill(zeros.begin() + 512, zeros.begin() + 544, 0.0f);  // one 32-group inside one
    rows.push_back(zeros);
    rows.push_back(gaussian(rng, 1024, 1e-4f));                  // fp16-subnormal scales
    rows.push_back(gaussian(rng, 1024, 0.5f, 3.0f));             // all positive
    rows.push_back(std::vector<float>(512, 0.0f));
    return rows;
}

void require_checks_1_2(const RoundTrip& r) {
    INFO("largest |error| - distance to the nearest grid point: ", r.worst_excess);
    CHECK(r.not_nearest == 0);
    CHECK(r.over_worst == 0);
    CHECK(r.nonzero_for_zero_group == 0);
    CHECK(std::isfinite(r.err2));
}

}  // namespace

TEST_CASE("quants: round-trip error is within bounds derived from the bit width") {
    std::mt19937 rng(1234);
    for (const QSpec& s : kSpecs) {
        INFO(std::string(dtype_name(s.type)));
        RoundTrip total;
        for (int64_t n : {256, 768, 4096}) {
            for (float sigma : {1.0f, 0.05f, 20.0f}) {
                const auto x = gaussian(rng, n, sigma);
                const RoundTrip r = check_round_trip(s, x.data(), quantize(s.type, x), n);
                INFO("n=", n, " sigma=", sigma);
                require_checks_1_2(r);
                total.err2 += r.err2 / (sigma * sigma);
                total.x2 += r.x2 / (sigma * sigma);
                total.predicted2 += r.predicted2 / (sigma * sigma);
            }
        }
        const double rel = std::sqrt(total.err2 / total.x2), predicted = std::sqrt(total.predicted2 / total.x2);
        CHECK(total.err2 <= 1.25 * total.predicted2);  // check 3
        CHECK(total.err2 >= 0.5 * total.predicted2);
        CHECK(rel <= s.rel_rmse_bound);
        CHECK(rel >= 0.5 * s.rel_rmse_bound);  // the bound is not vacuous

        const char* const names[] = {"outliers", "zero blocks", "sigma 1e-4", "offset", "all zero"};
        const auto rows = hard_rows(rng);
        std::ostringstream report;
        report.precision(3);
        report << dtype_name(s.type) << ": relative RMSE " << rel << " on Gaussian rows (bit-width prediction "
               << predicted << ", bound " << s.rel_rmse_bound << "); hard rows:";
        for (size_t k = 0; k < rows.size(); ++k) {
            INFO("hard row: ", names[k]);
            const int64_t n = int64_t(rows[k].size());
            const RoundTrip r = check_round_trip(s, rows[k].data(), quantize(s.type, rows[k]), n);
            require_checks_1_2(r);
            if (r.x2 > 0) report << " " << names[k] << " " << std::sqrt(r.err2 / r.x2);
        }
        MESSAGE(report.str());
    }
}

TEST_CASE("quants: the round-trip checks catch a corrupted block") {
    std::mt19937 rng(99);
    for (const QSpec& s : kSpecs) {
        INFO(std::string(dtype_name(s.type)));
        const auto x = gaussian(rng, 512, 1.0f);
        auto bytes = quantize(s.type, x);
        REQUIRE(check_round_trip(s, x.data(), bytes, 512).not_nearest == 0);
        // Corrupt a code byte in the middle of the second block: some element moves to a
        // grid point that is no longer the nearest one.
        const size_t ts = dtype_info(s.type).type_size;
        const size_t code_byte = s.type == DType::Q8_K ? 100 : s.type == DType::Q6_K ? 50 : ts - 8;
        auto bad = bytes;
        bad[ts + code_byte] ^= 0x33;
        CHECK(check_round_trip(s, x.data(), bad, 512).not_nearest > 0);
    }
}

TEST_CASE("quants: quantize_row dispatch") {
    std::vector<float> x(256, 1.5f);
    std::vector<uint8_t> buf(2048);
    for (DType t : kAllTypes) {
        INFO(std::string(dtype_name(t)));
        const size_t written = ref::quantize_row(t, x.data(), buf.data(), 256);
        CHECK(written == (ref::has_quantizer(t) ? row_bytes(t, 256) : 0));
    }
    CHECK(ref::has_quantizer(DType::Q2_K));
    CHECK_FALSE(ref::has_quantizer(DType::Q3_K));
}

// ---- fp16 / bf16 -------------------------------------------------------------------------

namespace {

bool is_nan16(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("f16c"))) uint16_t f16c_round(float f) {
    return uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
bool have_f16c() { return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c"); }
#endif

}  // namespace

TEST_CASE("quants: fp16 -> fp32 -> fp16 round-trips all 65536 patterns") {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = fp16_to_fp32(uint16_t(h));
        const uint16_t back = fp32_to_fp16(f);
        if (is_nan16(uint16_t(h))) {
            // NaNs stay NaN with their sign (payload: fp16_to_fp32 keeps it, the way back
            // returns the canonical quiet NaN, as ggml does).
            bad += !(std::isnan(f) && std::signbit(f) == bool(h & 0x8000) && is_nan16(back) &&
                     (back & 0x8000) == (h & 0x8000));
        } else {
            bad += back != h;
        }
    }
    CHECK(bad == 0);
    CHECK(fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(fp16_to_fp32(0x0001) == 0x1p-24f);          // smallest subnormal
    CHECK(fp16_to_fp32(0x03ff) == 1023 * 0x1p-24f);   // largest subnormal
    CHECK(fp16_to_fp32(0x7bff) == 65504.0f);
    CHECK(std::isinf(fp16_to_fp32(0xfc00)));
}

TEST_CASE("quants: fp32 -> fp16 rounds to nearest, ties to even") {
    struct Case {
        float in;
        uint16_t want;
    };
    const Case cases[] = {
        {1.0f + 0x1p-11f, 0x3c00},              // tie between 1 and 1+2^-10: even is 1
        {1.0f + 3 * 0x1p-11f, 0x3c02},          // tie between 1+2^-10 and 1+2^-9: even is up
        {1.0f + 0x1p-11f + 0x1p-23f, 0x3c01},   // just above the tie
        {-(1.0f + 3 * 0x1p-11f), 0xbc02},
        {65504.0f, 0x7bff},
        {65519.996f, 0x7bff},                   // below the tie with "65536": stays finite
        {65520.0f, 0x7c00},                     // tie, 65504's mantissa is odd: to infinity
        {0x1p-25f, 0x0000},                     // tie between 0 and the smallest subnormal
        {0x1p-25f + 0x1p-40f, 0x0001},
        {3 * 0x1p-25f, 0x0002},                 // tie between subnormals 1 and 2: even
        {5 * 0x1p-25f, 0x0002},                 // tie between 2 and 3: even
        {1023.5f * 0x1p-24f, 0x0400},           // tie rounds up out of the subnormals
        {0x1p-14f - 0x1p-26f, 0x0400},
        {1e-10f, 0x0000},
        {-0.0f, 0x8000},
        {INFINITY, 0x7c00},
        {-1e30f, 0xfc00},
    };
    for (const Case& c : cases) {
        INFO("input ", c.in);
        CHECK(fp32_to_fp16(c.in) == c.want);
    }
    CHECK(fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()) == 0x7e00);
    CHECK(is_nan16(fp32_to_fp16(float_of(0x7f800001u))));  // a signalling NaN stays a NaN
}

TEST_CASE("quants: fp32 -> fp16 matches the F16C instruction") {
#if defined(__x86_64__) || defined(__i386__)
    if (!have_f16c()) {
        MESSAGE("skipping: CPU has no F16C");
        return;
    }
    int64_t bad = 0, tested = 0;
    auto check = [&](uint32_t u) {
        const float f = float_of(u);
        const uint16_t a = fp32_to_fp16(f), b = f16c_round(f);
        // NaN payloads: F16C keeps the top payload bits, ggml and kiln use 0x7e00.
        const bool ok = std::isnan(f) ? is_nan16(a) && is_nan16(b) && (a & 0x8000) == (b & 0x8000) : a == b;
        if (!ok && bad++ < 5) MESSAGE("input bits ", u, ": kiln ", a, " F16C ", b);
        ++tested;
    };
    // Around every fp16 value: the midpoint to the next one and a float ulp either side.
    for (uint32_t h = 0; h < 0x7c00; ++h) {
        const double lo = fp16_to_fp32(uint16_t(h)), hi = fp16_to_fp32(uint16_t(h + 1));
        const uint32_t mid = bits_of(float((lo + hi) / 2));  // exact: fp16 has 11 bits
        for (uint32_t u : {mid - 1, mid, mid + 1}) {
            check(u);
            check(u | 0x80000000u);
        }
    }
    // And a stride through all 2^32 patterns (every exponent, NaNs and infinities).
    for (uint64_t u = 0; u < (1ull << 32); u += 4099) check(uint32_t(u));
    MESSAGE(tested, " inputs compared with vcvtps2ph");
    CHECK(bad == 0);
#else
    MESSAGE("skipping: not x86");
#endif
}

TEST_CASE("quants: bf16 conversions") {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = bf16_to_fp32(uint16_t(h));
        const uint16_t back = fp32_to_bf16(f);
        const bool nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        // A NaN comes back quieted (bit 6 set), everything else exactly.
        bad += nan ? back != (h | 0x40) : back != h;
    }
    CHECK(bad == 0);
    CHECK(fp32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);        // tie: even (down)
    CHECK(fp32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);    // tie: even (up)
    CHECK(fp32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);
    CHECK(fp32_to_bf16(float_of(0x7f7fffffu)) == 0x7f80); // FLT_MAX rounds to infinity
    CHECK(fp32_to_bf16(float_of(0x7f800001u)) == 0x7fc0); // signalling NaN is quieted
    CHECK(fp32_to_bf16(-0.0f) == 0x8000);
}

TEST_SUITE_END();
