// Every CPU kernel on every ISA this machine runs, against the scalar references in
// kernels/ref, with tolerances derived from the data. Outputs are NaN-filled first so an
// unwritten element fails.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "cpu/kernels.h"
#include "cpu/r16.h"
#include "ref/quants.h"
#include "test_util.h"
#include "test_weights.h"

using kiln::DType;
using namespace kiln::cpu;

using kiln::test::gaussian;

namespace {

std::vector<uint8_t> make_weights(DType t, int64_t rows, int64_t k, uint32_t seed) { return kiln::test::weight_rows(t, rows, k, seed); }

// The activation row as the kernel sees it (quantized by the ISA under test) and its
// dequantized values, so the reference dot uses exactly the same activations.
struct Act {
    std::vector<uint8_t> bytes;
    std::vector<float> values;
    std::vector<float> block_sums;  // q8x32: the fp16-rounded scaled sums q4_1 / q5_1 use
};

Act quantize_act(const KernelTable& kt, ActFormat f, const float* x, int64_t k) {
    Act a;
    a.bytes.resize(act_row_bytes(f, k));
    a.values.resize(size_t(k));
    if (f == ActFormat::F32) {
        std::memcpy(a.bytes.data(), x, size_t(k) * 4);
        std::memcpy(a.values.data(), x, size_t(k) * 4);
    } else if (f == ActFormat::Q8K) {
        kt.quantize_q8K(x, reinterpret_cast<kiln::block_q8_K*>(a.bytes.data()), k);
        kiln::ref::dequantize_row(DType::Q8_K, a.bytes.data(), a.values.data(), k);
    } else {
        auto* b = reinterpret_cast<block_q8_x32*>(a.bytes.data());
        kt.quantize_q8x32(x, b, k);
        for (int64_t i = 0; i < k; ++i) a.values[size_t(i)] = b[i / 32].d * float(b[i / 32].qs[i % 32]);
        a.block_sums.resize(size_t(k / 32));
        for (int64_t j = 0; j < k / 32; ++j) a.block_sums[size_t(j)] = kiln::fp16_to_fp32(b[j].s);
    }
    return a;
}

// n activation rows (gaussian, seeds seed .. seed + n - 1) quantized by kt, back to back:
// (n, act_row_bytes(f, k)) bytes.
std::vector<uint8_t> quantized_rows(const KernelTable& kt, ActFormat f, int64_t k, int n, uint32_t seed) {
    std::vector<uint8_t> bytes;
    for (int c = 0; c < n; ++c) {
        const auto x = gaussian(size_t(k), seed + uint32_t(c));
        const Act q = quantize_act(kt, f, x.data(), k);
        bytes.insert(bytes.end(), q.bytes.begin(), q.bytes.end());
    }
    return bytes;
}

const DType kWeightTypes[] = {DType::Q4_0,    DType::Q4_1,   DType::Q5_0,  DType::Q5_1,    DType::Q8_0,  DType::Q2_K,  DType::Q3_K,
                              DType::Q4_K,    DType::Q5_K,   DType::Q6_K,  DType::IQ4_NL,  DType::IQ4_XS, DType::IQ2_XXS, DType::IQ2_XS,
                              DType::IQ2_S,   DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S,   DType::IQ1_M, DType::F32,   DType::F16,
                              DType::BF16};

}  // namespace

TEST_CASE("kernels: activation quantization matches the reference on every ISA") {
    for (Isa isa : available_isas()) {
        CAPTURE(std::string(isa_name(isa)));
        const KernelTable& kt = *table_for(isa);
        for (int64_t k : {256, 512, 2048}) {
            auto x = gaussian(size_t(k), uint32_t(k));
            x[7] = 9.0f;  // an outlier
            std::vector<kiln::block_q8_K> ours(size_t(k / 256)), ref(size_t(k / 256));
            kt.quantize_q8K(x.data(), ours.data(), k);
            kiln::ref::quantize_row_q8_K(x.data(), ref.data(), k);
            CHECK(std::memcmp(ours.data(), ref.data(), ours.size() * sizeof(ours[0])) == 0);
            // q8x32: ggml's q8_1 codes and scales up to the rounding of exact ties (x86 llama.cpp
            // rounds half to even, the reference half away from zero).
            std::vector<block_q8_x32> a(size_t(k / 32));
            std::vector<kiln::block_q8_1> r1(size_t(k / 32));
            kt.quantize_q8x32(x.data(), a.data(), k);
            kiln::ref::quantize_row_q8_1(x.data(), r1.data(), k);
            for (size_t b = 0; b < a.size(); ++b) {
                CHECK(a[b].d == kiln::fp16_to_fp32(r1[b].d));
                int sum = 0;
                for (int i = 0; i < 32; ++i) {
                    CHECK(std::abs(a[b].qs[i] - r1[b].qs[i]) <= 1);
                    sum += a[b].qs[i];
                }
                if (std::memcmp(a[b].qs, r1[b].qs, 32) == 0) CHECK(a[b].s == r1[b].s);
                CHECK(a[b].sum == sum);
                const float s = kiln::fp16_to_fp32(a[b].s);
                CHECK(std::fabs(s - float(sum) * a[b].d) <= 2e-3f * std::fabs(float(sum) * a[b].d) + 1e-6f);
            }
        }
    }
}

TEST_CASE("kernels: every ISA quantizes activations to the same bytes") {
    const KernelTable& base = *table_for(Isa::Generic);
    for (Isa isa : available_isas()) {
        CAPTURE(std::string(isa_name(isa)));
        const KernelTable& kt = *table_for(isa);
        for (uint32_t seed = 0; seed < 20; ++seed) {
            const int64_t k = 1024;
            auto x = gaussian(size_t(k), seed, seed % 2 ? 1.0f : 1e-3f);
            x[seed * 13 % k] = -7.0f;  // a negative outlier: q8_K keeps its sign in the scale
            std::vector<block_q8_x32> a(size_t(k / 32)), b(size_t(k / 32));
            kt.quantize_q8x32(x.data(), a.data(), k);
            base.quantize_q8x32(x.data(), b.data(), k);
            CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
            std::vector<kiln::block_q8_K> c(size_t(k / 256)), d(size_t(k / 256));
            kt.quantize_q8K(x.data(), c.data(), k);
            base.quantize_q8K(x.data(), d.data(), k);
            CHECK(std::memcmp(c.data(), d.data(), c.size() * sizeof(c[0])) == 0);
        }
    }
}

// The kernel table of every ISA this CPU runs, and the AVX-512 one a second time with the
// other decode weight prefetch setting (the CPU picks one; both must compute the same).
std::vector<KernelTable> matmul_tables() {
    std::vector<KernelTable> tables;
    for (Isa isa : available_isas()) tables.push_back(*table_for(isa));
    if (const KernelTable* avx512 = table_for(Isa::Avx512)) {
        tables.emplace_back();
        fill_avx512(tables.back(), !avx512->weight_prefetch);
    }
    return tables;
}

TEST_CASE("kernels: quantized matmul matches the scalar reference on every ISA and batch size") {
    for (const KernelTable& kt : matmul_tables()) {
        const Isa isa = kt.isa;
        for (DType t : kWeightTypes) {
            // several blocks, not a power of two for 32-blocks; float rows with a tail past the SIMD width
            const int64_t bs = kiln::dtype_info(t).block_size, k = bs == 256 ? 512 : bs == 1 ? 333 : 320;
            const int64_t rows = 37;                                             // odd: exercises row tails
            CAPTURE(std::string(isa_name(isa)));
            CAPTURE(kt.weight_prefetch);
            CAPTURE(std::string(kiln::dtype_name(t)));
            const auto w = make_weights(t, rows, k, 42);
            const size_t rb = kiln::row_bytes(t, k);
            for (int ny : {1, 2, 3, 5, 8, 9, 17}) {
                CAPTURE(ny);
                const ActFormat f = act_format(t);
                std::vector<Act> acts;
                std::vector<uint8_t> packed;
                for (int c = 0; c < ny; ++c) {
                    auto x = gaussian(size_t(k), uint32_t(100 + c));
                    acts.push_back(quantize_act(kt, f, x.data(), k));
                    packed.insert(packed.end(), acts.back().bytes.begin(), acts.back().bytes.end());
                }
                std::vector<float> y(size_t(ny * rows), NAN);
                const ActRows a{packed.data(), act_row_bytes(f, k), ny};
                REQUIRE(bool(kt.matmul[int(t)]));
                kt.matmul[int(t)](k, w.data(), rb, 0, rows, a, y.data(), size_t(rows));
                for (int c = 0; c < ny; ++c) {
                    for (int64_t r = 0; r < rows; ++r) {
                        // Reference: dequantized weights . dequantized activations, in double.
                        std::vector<float> wr(static_cast<size_t>(k));
                        kiln::ref::dequantize_row(t, w.data() + size_t(r) * rb, wr.data(), k);
                        double ref = 0, mag = 0;
                        for (int64_t i = 0; i < k; ++i) {
                            ref += double(wr[size_t(i)]) * acts[size_t(c)].values[size_t(i)];
                            mag += std::fabs(double(wr[size_t(i)]) * acts[size_t(c)].values[size_t(i)]);
                        }
                        if (t == DType::Q4_1 || t == DType::Q5_1) {
                            // As ggml's q4_1 x q8_1: each block's min multiplies the activation
                            // block's fp16-rounded scaled sum instead of the exact one.
                            const size_t bs = kiln::dtype_info(t).type_size;
                            for (int64_t j = 0; j < k / 32; ++j) {
                                uint16_t mh;
                                std::memcpy(&mh, w.data() + size_t(r) * rb + size_t(j) * bs + 2, 2);
                                double exact = 0;
                                for (int i = 0; i < 32; ++i) exact += acts[size_t(c)].values[size_t(j * 32 + i)];
                                ref += double(kiln::fp16_to_fp32(mh)) * (acts[size_t(c)].block_sums[size_t(j)] - exact);
                            }
                        }
                        // float32 accumulation over k terms: error <= ~k * eps * sum|w a|;
                        // 4 * sqrt(k) * eps is the realistic (random-walk) bound with margin.
                        const double tol = 4.0 * std::sqrt(double(k)) * 1.2e-7 * mag + 1e-6;
                        const float got = y[size_t(c) * size_t(rows) + size_t(r)];
                        CAPTURE(r);
                        CAPTURE(c);
                        REQUIRE(std::isfinite(got));
                        CHECK(std::fabs(got - ref) <= tol);
                    }
                }
            }
        }
    }
}

TEST_CASE("kernels: row-interleaved (r16) matmul equals the original-layout kernel on every ISA that has it, and one token gives its batch's bits") {
    for (const KernelTable& kt : matmul_tables()) {
        const Isa isa = kt.isa;
        for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_XS}) {
            if (!kt.matmul_r16[int(t)]) continue;
            CAPTURE(std::string(isa_name(isa)));
            CAPTURE(kt.weight_prefetch);
            CAPTURE(std::string(kiln::dtype_name(t)));
            const int64_t k = 512, rows = 48;
            REQUIRE(r16_supported(t, rows));
            const auto w = make_weights(t, rows, k, 77);
            const size_t rb = kiln::row_bytes(t, k), gb = r16_group_bytes(t, k);
            std::vector<uint8_t> packed(gb * size_t(rows / kR16Rows));
            r16_repack(t, w.data(), rb, rows, k, packed.data());
            for (int ny : {1, 2, 5, 8, 9, 19}) {
                CAPTURE(ny);
                const ActFormat f = act_format(t);
                const std::vector<uint8_t> act = quantized_rows(kt, f, k, ny, 500);
                const ActRows a{act.data(), act_row_bytes(f, k), ny};
                std::vector<float> ref(size_t(ny * rows), NAN), got(size_t(ny * rows), NAN);
                kt.matmul[int(t)](k, w.data(), rb, 0, rows, a, ref.data(), size_t(rows));
                // rows 16..47 only: r0 > 0 must address the right groups
                kt.matmul_r16[int(t)](k, packed.data(), gb, 16, rows, a, got.data(), size_t(rows));
                kt.matmul_r16[int(t)](k, packed.data(), gb, 0, 16, a, got.data(), size_t(rows));
                for (int v = 1; v < kDecodeVariants; ++v)  // prefetching farther ahead: the same bits
                    if (const MatmulFn far = kt.matmul_r16_far[v - 1][int(t)]) {
                        CAPTURE(v);
                        std::vector<float> got_far(got.size(), NAN);
                        far(k, packed.data(), gb, 0, rows, a, got_far.data(), size_t(rows));
                        CHECK(std::memcmp(got_far.data(), got.data(), sizeof(float) * got.size()) == 0);
                    }
                for (size_t i = 0; i < got.size(); ++i) {
                    // Same integer math, different float order: 1e-5 relative to the row's magnitude.
                    CAPTURE(i);
                    REQUIRE(std::isfinite(got[i]));
                    CHECK(std::fabs(got[i] - ref[i]) <= 1e-5f * (1.0f + std::fabs(ref[i])) + 1e-4f);
                }
                // Decode (one token) and verification (k + 1 <= 8 tokens) both read the r16
                // copy: a token's results may not depend on the batch it is in, bit for bit.
                if (ny > 8) continue;
                for (int c = 0; c < ny; ++c) {
                    CAPTURE(c);
                    const size_t stride = act_row_bytes(f, k);
                    std::vector<float> one(static_cast<size_t>(rows), NAN);
                    kt.matmul_r16[int(t)](k, packed.data(), gb, 0, rows, ActRows{act.data() + size_t(c) * stride, stride, 1}, one.data(), size_t(rows));
                    for (int64_t r = 0; r < rows; ++r) CHECK(one[size_t(r)] == got[size_t(c * rows + r)]);
                }
            }
        }
    }
}

TEST_CASE("kernels: l2_first makes the L2-prefetching decode variant the first and changes nothing else") {
    // Intel CPUs start decode with the variant that also prefetches into L2 (dispatch.cpp);
    // the same kernels, so every test above covers them in either order.
    if (!table_for(Isa::Avx512)) return;  // fill_avx512 is AVX-512 code itself (the QEMU AVX2-only run)
    KernelTable l1, l2, none, none_l2;
    fill_avx512(l1, true, false);
    fill_avx512(l2, true, true);
    fill_avx512(none, false, false);
    fill_avx512(none_l2, false, true);
    const auto same = [](MatmulFn x, MatmulFn y) { return x == y; };  // doctest cannot print function pointers
    int swapped = 0;
    for (int i = 0; i < kiln::cpu::kMaxDType; ++i) {
        CAPTURE(i);
        CHECK(same(l2.matmul[i], (l1.matmul_far[0][i] ? l1.matmul_far[0][i] : l1.matmul[i])));
        CHECK(same(l2.matmul_r16[i], (l1.matmul_r16_far[0][i] ? l1.matmul_r16_far[0][i] : l1.matmul_r16[i])));
        if (l1.matmul_far[0][i]) {
            CHECK(same(l2.matmul_far[0][i], l1.matmul[i]));
            CHECK(!same(l1.matmul[i], l1.matmul_far[0][i]));
            ++swapped;
        }
        if (l1.matmul_r16_far[0][i]) CHECK(same(l2.matmul_r16_far[0][i], l1.matmul_r16[i]));
        for (int v = 1; v + 1 < kDecodeVariants; ++v) {
            CHECK(same(l2.matmul_far[v][i], l1.matmul_far[v][i]));
            CHECK(same(l2.matmul_r16_far[v][i], l1.matmul_r16_far[v][i]));
        }
        CHECK(same(none_l2.matmul[i], none.matmul[i]));  // nothing to reorder without prefetch
        CHECK(same(none_l2.matmul_r16[i], none.matmul_r16[i]));
    }
    CHECK(swapped >= 10);  // every format with a decode kernel: q4_0 .. q6_K
}

TEST_CASE("kernels: up to 8 tokens, a token's matmul result has the same bits whatever batch it is in") {
    // Speculative verification runs k+1 <= 8 tokens through one forward and must see what
    // decoding them one at a time would give, so the row kernels may not let a token's
    // neighbours change its rounding.
    for (const KernelTable& kt : matmul_tables()) {
        const Isa isa = kt.isa;
        for (DType t : kWeightTypes) {
            CAPTURE(std::string(isa_name(isa)));
            CAPTURE(kt.weight_prefetch);
            CAPTURE(std::string(kiln::dtype_name(t)));
            const int64_t bs = kiln::dtype_info(t).block_size, k = bs == 256 ? 512 : bs == 1 ? 333 : 320, rows = 21;
            const auto w = make_weights(t, rows, k, 11);
            const size_t rb = kiln::row_bytes(t, k);
            const ActFormat f = act_format(t);
            const size_t ab = act_row_bytes(f, k);
            const std::vector<uint8_t> act = quantized_rows(kt, f, k, 8, 900);
            for (int ny = 2; ny <= 8; ++ny) {
                CAPTURE(ny);
                std::vector<float> batch(size_t(ny * rows), NAN), one(size_t(rows), NAN);
                kt.matmul[int(t)](k, w.data(), rb, 0, rows, ActRows{act.data(), ab, ny}, batch.data(), size_t(rows));
                for (int c = 0; c < ny; ++c) {
                    CAPTURE(c);
                    // every decode variant (the weights prefetched farther ahead) too
                    for (int v = 0; v < kDecodeVariants; ++v) {
                        CAPTURE(v);
                        std::fill(one.begin(), one.end(), NAN);
                        kt.decode_rows(t, v)(k, w.data(), rb, 0, rows, ActRows{act.data() + size_t(c) * ab, ab, 1}, one.data(), size_t(rows));
                        CHECK(std::memcmp(one.data(), batch.data() + size_t(c) * rows, sizeof(float) * size_t(rows)) == 0);
                    }
                }
            }
        }
    }
}

TEST_CASE("kernels: a corrupted weight block changes the matmul (the test can fail)") {
    const KernelTable& kt = active();
    const int64_t k = 256, rows = 4;
    auto w = make_weights(DType::Q4_K, rows, k, 7);
    auto x = gaussian(size_t(k), 9);
    Act a = quantize_act(kt, ActFormat::Q8K, x.data(), k);
    const ActRows ar{a.bytes.data(), a.bytes.size(), 1};
    std::vector<float> y0(rows), y1(rows);
    kt.matmul[int(DType::Q4_K)](k, w.data(), kiln::row_bytes(DType::Q4_K, k), 0, rows, ar, y0.data(), rows);
    w[kiln::row_bytes(DType::Q4_K, k) + 40] ^= 0x11;  // flip two quant bits of row 1
    kt.matmul[int(DType::Q4_K)](k, w.data(), kiln::row_bytes(DType::Q4_K, k), 0, rows, ar, y1.data(), rows);
    CHECK(y0[0] == y1[0]);
    CHECK(y0[1] != y1[1]);
}

TEST_CASE("kernels: the GEMM reuses its packed tokens only for the same ActRows::id") {
    // linear_group names each quantized activation copy with an id, and the GEMM keeps the
    // tokens it packed for the next call with that id (other matrices, other row chunks).
    // New contents at the same address under a new id must be packed again.
    for (const KernelTable& kt : matmul_tables()) {
        CAPTURE(std::string(isa_name(kt.isa)));
        for (DType t : {DType::Q4_K, DType::Q8_0, DType::Q4_1}) {
            CAPTURE(std::string(kiln::dtype_name(t)));
            const int64_t k = 512, rows = 48;
            const int ny = 19;  // > 8: the GEMM
            const auto w = make_weights(t, rows, k, 91);
            const size_t rb = kiln::row_bytes(t, k);
            const ActFormat f = act_format(t);
            const size_t stride = act_row_bytes(f, k);
            const auto first = quantized_rows(kt, f, k, ny, 700), second = quantized_rows(kt, f, k, ny, 800);  // (ny, stride) each
            auto product = [&](const std::vector<uint8_t>& act, uint64_t id, int64_t split) {  // (ny, rows), two calls split at `split`
                std::vector<float> y(size_t(ny * rows), NAN);
                const ActRows a{act.data(), stride, ny, id};
                kt.matmul[int(t)](k, w.data(), rb, 0, split, a, y.data(), size_t(rows));
                kt.matmul[int(t)](k, w.data(), rb, split, rows, a, y.data(), size_t(rows));
                return y;
            };
            const auto want1 = product(first, 0, rows), want2 = product(second, 0, rows);
            std::vector<uint8_t> buf = first;
            const uint64_t id1 = new_act_id(), id2 = new_act_id();
            CHECK(product(buf, id1, 16) == want1);  // the second chunk reuses the first's tokens
            buf = second;                           // same address, new contents, new id
            CHECK(product(buf, id2, 32) == want2);
            CHECK(want1 != want2);
        }
    }
}

TEST_CASE("kernels: float row ops match scalar definitions on every ISA") {
    for (Isa isa : available_isas()) {
        CAPTURE(std::string(isa_name(isa)));
        const KernelTable& kt = *table_for(isa);
        for (int64_t n : {1, 7, 64, 576, 1000}) {
            CAPTURE(n);
            auto x = gaussian(size_t(n), 1), w = gaussian(size_t(n), 2), u = gaussian(size_t(n), 3);
            if (n > 3) x[1] = 12.0f, x[2] = -11.0f;  // GELU's clamped ranges
            double ss = 0, dot = 0, mag = 0;
            for (int64_t i = 0; i < n; ++i) ss += double(x[size_t(i)]) * x[size_t(i)], dot += double(x[size_t(i)]) * w[size_t(i)], mag += std::fabs(double(x[size_t(i)]) * w[size_t(i)]);
            const double eps = 1.2e-7;
            CHECK(std::fabs(kt.dot_f32(x.data(), w.data(), n) - dot) <= 4 * std::sqrt(double(n)) * eps * mag + 1e-6);
            // rms_norm
            std::vector<float> y(size_t(n), NAN);
            kt.rms_norm(x.data(), w.data(), y.data(), n, 1e-5f);
            const double s = 1.0 / std::sqrt(ss / double(n) + 1e-5);
            for (int64_t i = 0; i < n; ++i) CHECK(std::fabs(y[size_t(i)] - x[size_t(i)] * s * w[size_t(i)]) <= 1e-5 * (1 + std::fabs(x[size_t(i)] * s * w[size_t(i)])));
            // softmax
            std::vector<float> p = x;
            kt.softmax(p.data(), n);
            double mx = *std::max_element(x.begin(), x.end()), z = 0;
            for (float v : x) z += std::exp(double(v) - mx);
            for (int64_t i = 0; i < n; ++i) CHECK(std::fabs(p[size_t(i)] - std::exp(double(x[size_t(i)]) - mx) / z) <= 1e-6);
            // silu_mul / gelu_mul
            std::vector<float> g = x, h = x;
            kt.silu_mul(g.data(), u.data(), n);
            kt.gelu_mul(h.data(), u.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                const double xi = x[size_t(i)], ui = u[size_t(i)];
                const double silu = xi / (1 + std::exp(-xi)) * ui;
                // ggml's CPU GELU: fp16 input, fp16 result, clamped outside [-10, 10].
                const double xh = kiln::fp16_to_fp32(kiln::fp32_to_fp16(float(xi)));
                const double gh = kiln::fp16_to_fp32(kiln::fp32_to_fp16(float(0.5 * xh * (1 + std::tanh(0.7978845608028654 * (xh + 0.044715 * xh * xh * xh)))))) ;
                const double gelu = (xi <= -10 ? 0.0 : xi >= 10 ? xi : gh) * ui;
                CHECK(std::fabs(g[size_t(i)] - silu) <= 1e-5 * (1 + std::fabs(silu)));
                CHECK(std::fabs(h[size_t(i)] - gelu) <= 1e-5 * (1 + std::fabs(gelu)));
            }
            // fp16 rounding (queries of an f16 key cache), round to nearest even
            std::vector<float> r = x;
            kt.round_f16(r.data(), n);
            for (int64_t i = 0; i < n; ++i) CHECK(r[size_t(i)] == kiln::fp16_to_fp32(kiln::fp32_to_fp16(x[size_t(i)])));
            // fp32 -> fp16 bits (the F16 KV cache's store): fp32_to_fp16's, also at the edges
            // (halfway cases, overflow to inf, subnormals, signed zero) mixed into the data
            std::vector<float> e = x;
            const float edges[] = {65504.0f, 65519.0f, 65520.0f, 1e6f, -1e6f, 6.1e-5f, 3e-8f, 2.9e-8f, 1e-9f, -0.0f, 0.0f,
                                   1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, -(1.0f + 1.0f / 2048), std::numeric_limits<float>::infinity()};
            for (size_t j = 0; j < std::size(edges) && j * 3 < e.size(); ++j) e[j * 3] = edges[j];
            std::vector<uint16_t> f16(e.size());  // (n) converted
            kt.f32_to_f16(e.data(), f16.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                CAPTURE(e[size_t(i)]);
                CHECK(f16[size_t(i)] == kiln::fp32_to_fp16(e[size_t(i)]));
            }
            CHECK(kt.argmax(x.data(), n) == std::max_element(x.begin(), x.end()) - x.begin());
        }
    }
}
