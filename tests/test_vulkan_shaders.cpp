// Every Vulkan shader against the CPU scalar reference (kernels/ref) or the CPU kernel it
// replaces, on the first Vulkan device (lavapipe in CI), with tolerances derived from the
// data. Outputs start NaN-filled so an element the shader skips fails.
#ifdef KILN_HAVE_VULKAN
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "cpu/kernels.h"
#include "ref/quants.h"
#include "cpu/session_impl.h"
#include "test_weights.h"
#include "vulkan_test_util.h"

using kiln::DType;
using kiln::test::VulkanFixture;
using kiln::vulkan::Buffer;
using kiln::vulkan::whole;

using kiln::test::gaussian;

namespace {

constexpr double kEps = std::numeric_limits<float>::epsilon();

// Rows quantized from x; for the formats kiln has no quantizer for (the IQ grids), random
// blocks with sane scales (test_weights.h), seeded by x's size.
std::vector<uint8_t> quantized_rows(DType t, const std::vector<float>& x, int64_t rows, int64_t k) {
    if (!kiln::ref::has_quantizer(t)) return kiln::test::weight_rows(t, rows, k, uint32_t(x.size()));
    const size_t rb = kiln::row_bytes(t, k);
    std::vector<uint8_t> w(rb * size_t(rows));
    for (int64_t r = 0; r < rows; ++r) REQUIRE(kiln::ref::quantize_row(t, x.data() + r * k, w.data() + size_t(r) * rb, k) == rb);
    return w;
}

const DType kVulkanWeightTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                    DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_NL, DType::IQ4_XS,
                                    DType::IQ2_XXS, DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M};

// Bound on float rounding of a dot product of k terms whose magnitudes sum to `abs_sum`:
// at most k sequential additions (the tiled matmul; matvec's lanes add fewer, 16-term
// partial sums, then meet in a tree), plus one rounding of each dequantized weight.
double dot_tolerance(int64_t k, double abs_sum) { return kEps * double(k + 2) * abs_sum + 1e-30; }

}  // namespace

TEST_CASE("vulkan: dequant-matvec and tiled dequant-matmul match the scalar reference for every weight format and batch size") {
    VulkanFixture f;
    const uint32_t k = 512, rows = 37;  // rows not a multiple of the 16 per workgroup
    for (DType t : kVulkanWeightTypes) {
        const std::string format = kiln::dtype_name(t);
        CAPTURE(format);
        REQUIRE(kiln::vulkan::has_matvec(t));
        const auto wbytes = quantized_rows(t, gaussian(size_t(rows * k), 1, 0.05f), rows, k);
        std::vector<float> wdq(size_t(rows * k));
        for (int64_t r = 0; r < rows; ++r) kiln::ref::dequantize_row(t, wbytes.data() + r * kiln::row_bytes(t, k), wdq.data() + r * k, k);
        Buffer w = f.buffer(wbytes);
        // A matrix split in two bindings (as for tensors above maxStorageBufferRange): each
        // part writes its own output columns.
        if (t == DType::Q8_0) {
            const uint32_t split = 20, rb = uint32_t(kiln::row_bytes(t, k));
            Buffer w0 = f.buffer(std::vector<uint8_t>(wbytes.begin(), wbytes.begin() + split * rb));
            Buffer w1 = f.buffer(std::vector<uint8_t>(wbytes.begin() + split * rb, wbytes.end()));
            const auto x = gaussian(k, 5);
            Buffer xb = f.buffer(x), y = f.nan_buffer(rows), y_whole = f.nan_buffer(rows);
            f.run([&](auto& r) {
                REQUIRE(f.ops->matvec(r, t, whole(w0), whole(xb), whole(y), {k, split, 1, k, rows, 0, 0}).is_ok());
                REQUIRE(f.ops->matvec(r, t, whole(w1), whole(xb), whole(y), {k, rows - split, 1, k, rows, 0, split}).is_ok());
                REQUIRE(f.ops->matvec(r, t, whole(w), whole(xb), whole(y_whole), {k, rows, 1, k, rows}).is_ok());
            });
            CHECK(f.read<float>(y, rows) == f.read<float>(y_whole, rows));
        }
        // matvec: 9 is two groups of 8 tokens; tiled: 40 is two 32-token tiles.
        for (auto [n, tiled] : {std::pair{1, false}, {3, false}, {9, false}, {1, true}, {40, true}}) {
            CAPTURE(n);
            CAPTURE(tiled);
            const uint32_t y_stride = uint32_t(rows) + 5;  // rows land inside a wider output
            const auto x = gaussian(size_t(n * k), 2 + n);
            std::vector<float> block_sums(x.size() / 32, 0.0f);  // q4_1 / q5_1 take the min term from x's block sums
            for (size_t i = 0; i < x.size(); ++i) block_sums[i / 32] += x[i];
            Buffer xb = f.buffer(x), sb = f.buffer(block_sums), y = f.nan_buffer(size_t(n) * y_stride);
            f.run([&](auto& r) {
                const kiln::vulkan::Ops::MatvecShape s{k, rows, uint32_t(n), k, y_stride};
                REQUIRE((tiled ? f.ops->matmul_tiled(r, t, whole(w), whole(xb), whole(y), s, whole(sb)) : f.ops->matvec(r, t, whole(w), whole(xb), whole(y), s, whole(sb))).is_ok());
            });
            const auto got = f.read<float>(y, size_t(n) * y_stride);
            int bad = 0;
            for (int i = 0; i < n; ++i) {
                for (int64_t row = 0; row < rows; ++row) {
                    const float* xr = x.data() + i * k;
                    const double ref = kiln::ref::vec_dot_ref(t, wbytes.data() + row * kiln::row_bytes(t, k), xr, k);
                    double abs_sum = 0;
                    for (int64_t j = 0; j < k; ++j) abs_sum += std::fabs(double(wdq[size_t(row * k + j)]) * xr[j]);
                    const double g = got[size_t(i) * y_stride + size_t(row)];
                    if (!(std::fabs(g - ref) <= dot_tolerance(k, abs_sum))) ++bad;
                }
                for (uint32_t row = uint32_t(rows); row < y_stride; ++row) CHECK(std::isnan(got[size_t(i) * y_stride + row]));  // untouched
            }
            CHECK(bad == 0);
        }
        // The tolerance can fail: a weight row swapped for another is caught.
        if (t == DType::Q4_K) {
            auto swapped = wbytes;
            const size_t rb = kiln::row_bytes(t, k);
            std::copy(wbytes.begin() + rb, wbytes.begin() + 2 * rb, swapped.begin());
            Buffer ws = f.buffer(swapped);
            const auto x = gaussian(size_t(k), 7);
            Buffer xb = f.buffer(x), y = f.nan_buffer(size_t(rows));
            f.run([&](auto& r) { REQUIRE(f.ops->matvec(r, t, whole(ws), whole(xb), whole(y), {k, rows, 1, k, rows}).is_ok()); });
            const double ref = kiln::ref::vec_dot_ref(t, wbytes.data(), x.data(), k);
            CHECK(std::fabs(f.read<float>(y, 1)[0] - ref) > dot_tolerance(k, 1.0));
        }
    }
}

TEST_CASE("vulkan: rounded activations through matvec and tiled matmul give the CPU backend's quantized matmul") {
    VulkanFixture f;
    const uint32_t k = 512, rows = 37, n = 12;
    const auto& kt = kiln::cpu::active();
    for (DType t : kVulkanWeightTypes) {
        const kiln::cpu::ActFormat af = kiln::cpu::act_format(t);
        if (af == kiln::cpu::ActFormat::F32) continue;
        const std::string format = kiln::dtype_name(t);
        CAPTURE(format);
        const auto wbytes = quantized_rows(t, gaussian(size_t(rows * k), 1, 0.05f), rows, k);
        std::vector<float> wdq(size_t(rows * k));
        for (int64_t r = 0; r < rows; ++r) kiln::ref::dequantize_row(t, wbytes.data() + r * kiln::row_bytes(t, k), wdq.data() + r * k, k);
        const auto x = gaussian(size_t(n * k), 3, 2.0f);
        // The CPU: activations quantized once, then the kernel table's matmul.
        const size_t qrow = kiln::cpu::act_row_bytes(af, k);
        std::vector<uint8_t> xq(qrow * n);
        for (uint32_t i = 0; i < n; ++i) {
            if (af == kiln::cpu::ActFormat::Q8K) kt.quantize_q8K(x.data() + i * k, reinterpret_cast<kiln::block_q8_K*>(xq.data() + i * qrow), k);
            else kt.quantize_q8x32(x.data() + i * k, reinterpret_cast<kiln::cpu::block_q8_x32*>(xq.data() + i * qrow), k);
        }
        std::vector<float> y_cpu(size_t(n) * rows);
        kt.matmul[int(t)](k, wbytes.data(), kiln::row_bytes(t, k), 0, rows, kiln::cpu::ActRows{xq.data(), qrow, int(n)}, y_cpu.data(), rows);
        Buffer w = f.buffer(wbytes), xb = f.buffer(x), xr = f.nan_buffer(x.size()), sums = f.nan_buffer(x.size() / 32);
        for (bool tiled : {false, true}) {
            CAPTURE(tiled);
            Buffer y = f.nan_buffer(size_t(n) * rows);
            f.run([&](auto& r) {
                REQUIRE(f.ops->act_round(r, whole(xb), whole(xr), whole(sums), k, n, af == kiln::cpu::ActFormat::Q8K).is_ok());
                r.barrier();
                const kiln::vulkan::Ops::MatvecShape s{k, rows, n, k, rows};
                REQUIRE((tiled ? f.ops->matmul_tiled(r, t, whole(w), whole(xr), whole(y), s, whole(sums)) : f.ops->matvec(r, t, whole(w), whole(xr), whole(y), s, whole(sums))).is_ok());
            });
            const auto got = f.read<float>(y, size_t(n) * rows), x_rounded = f.read<float>(xr, x.size()), s_rounded = f.read<float>(sums, x.size() / 32);
            // Both sum the same products in different orders (twice the float bound of one
            // dot); with exact block sums instead of the CPU's fp16-rounded ones, q4_1 fails.
            int bad = 0;
            double worst_err = 0;
            for (uint32_t i = 0; i < n; ++i)
                for (uint32_t row = 0; row < rows; ++row) {
                    double abs_sum = 0;
                    for (uint32_t j = 0; j < k; ++j) abs_sum += std::fabs(double(wdq[row * k + j]) * x_rounded[i * k + j]);
                    for (uint32_t b = 0; kiln::vulkan::needs_block_sums(t) && b < k / 32; ++b) abs_sum += std::fabs(double(s_rounded[i * k / 32 + b])) * 0.1;  // |min| < 0.1 here
                    const double err = std::fabs(double(got[i * rows + row]) - y_cpu[i * rows + row]), tol = 2 * dot_tolerance(k, abs_sum);
                    bad += !(err <= tol);
                    worst_err = std::max(worst_err, err);
                }
            CHECK(bad == 0);
            // The tolerance can fail: q4_1's min times the exact block sums of the rounded x
            // (not q8_1's fp16-rounded ones) parts from the CPU.
            if (t == DType::Q4_1) {
                std::vector<float> exact(x.size() / 32, 0.0f);
                for (size_t j = 0; j < x.size(); ++j) exact[j / 32] += x_rounded[j];
                Buffer eb = f.buffer(exact), y2 = f.nan_buffer(size_t(n) * rows);
                f.run([&](auto& r) {
                    const kiln::vulkan::Ops::MatvecShape s{k, rows, n, k, rows};
                    REQUIRE(f.ops->linear(r, t, whole(w), whole(xr), whole(y2), s, whole(eb)).is_ok());
                });
                const auto got2 = f.read<float>(y2, size_t(n) * rows);
                double worst2 = 0;
                for (size_t i = 0; i < got2.size(); ++i) worst2 = std::max(worst2, std::fabs(double(got2[i]) - y_cpu[i]));
                CHECK(worst2 > 10 * worst_err);
            }
        }
    }
}

TEST_CASE("vulkan: MoE router, expert matvec over grouped tokens and combine match a scalar reference") {
    VulkanFixture f;
    const uint32_t k = 256, R = 24, X = 6, K = 2;  // R rows per expert: not a multiple of 16
    for (DType t : {DType::Q8_0, DType::Q4_K, DType::F16, DType::IQ2_XXS}) {
        const std::string format = kiln::dtype_name(t);
        CAPTURE(format);
        const auto wbytes = quantized_rows(t, gaussian(size_t(X * R * k), 11, 0.05f), X * R, k);  // (X, R, k) expert tensor
        const size_t rb = kiln::row_bytes(t, k);
        for (uint32_t n : {1u, 5u, 300u}) {  // 300 tokens: 600 pairs, more than one batch of 8 per expert
            CAPTURE(n);
            const auto logits = gaussian(size_t(n * X), 20 + n, 2.0f);  // (n, X) router logits
            const auto x = gaussian(size_t(n * k), 30 + n);              // (n, k) tokens
            for (bool norm : {false, true}) {
                Buffer lb = f.buffer(logits), sel = f.buffer(std::vector<uint32_t>(n * K, 0xffffffffu)), wsel = f.nan_buffer(n * K);
                f.run([&](auto& r) { REQUIRE(f.ops->moe_route(r, whole(lb), whole(sel), whole(wsel), n, X, K, norm).is_ok()); });
                const auto got_sel = f.read<uint32_t>(sel, n * K);
                const auto got_w = f.read<float>(wsel, n * K);
                // Reference: softmax, the K largest (ties to the lower index), renormalized.
                int bad_sel = 0, bad_w = 0;
                for (uint32_t i = 0; i < n; ++i) {
                    const float* l = logits.data() + size_t(i) * X;
                    std::vector<uint32_t> order(X);
                    for (uint32_t e = 0; e < X; ++e) order[e] = e;
                    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return l[a] > l[b]; });
                    double m = *std::max_element(l, l + X), sum = 0, top = 0;
                    for (uint32_t e = 0; e < X; ++e) sum += std::exp(double(l[e]) - m);
                    for (uint32_t j = 0; j < K; ++j) top += std::exp(double(l[order[j]]) - m) / sum;
                    for (uint32_t j = 0; j < K; ++j) {
                        const double p = std::exp(double(l[order[j]]) - m) / sum, want = norm ? p / top : p;
                        bad_sel += got_sel[i * K + j] != order[j];
                        bad_w += !(std::fabs(got_w[i * K + j] - want) <= 1e-5 * want + 1e-7);
                    }
                }
                CHECK(bad_sel == 0);
                CHECK(bad_w == 0);

                // gate-style (x row = token) into a wider output; then the weighted combine.
                const uint32_t y_stride = R + 3;
                Buffer w = f.buffer(wbytes), xb = f.buffer(x), y = f.nan_buffer(size_t(n * K) * y_stride), y_split = f.nan_buffer(size_t(n * K) * y_stride);
                // The tensor also split in two bindings mid-expert (rows 0..39 and 40..143), as a large one is.
                const uint32_t split = 40;
                Buffer w0 = f.buffer(std::vector<uint8_t>(wbytes.begin(), wbytes.begin() + split * rb));
                Buffer w1 = f.buffer(std::vector<uint8_t>(wbytes.begin() + split * rb, wbytes.end()));
                f.run([&](auto& r) {
                    REQUIRE(f.ops->moe_matvec(r, t, whole(w), whole(xb), whole(y), whole(sel), {k, R, n * K, K, k, y_stride, 0, 0, X * R}).is_ok());
                    REQUIRE(f.ops->moe_matvec(r, t, whole(w0), whole(xb), whole(y_split), whole(sel), {k, R, n * K, K, k, y_stride, 0, 0, split}).is_ok());
                    REQUIRE(f.ops->moe_matvec(r, t, whole(w1), whole(xb), whole(y_split), whole(sel), {k, R, n * K, K, k, y_stride, 0, split, X * R - split}).is_ok());
                });
                const auto got_split = f.read<float>(y_split, size_t(n * K) * y_stride);
                const auto got = f.read<float>(y, size_t(n * K) * y_stride);
                int bad = 0, untouched = 0, split_differs = 0;
                for (uint32_t pr = 0; pr < n * K; ++pr) {
                    const uint32_t e = got_sel[pr];
                    const float* xr = x.data() + size_t(pr / K) * k;
                    for (uint32_t row = 0; row < R; ++row) {
                        const uint8_t* wr = wbytes.data() + (size_t(e) * R + row) * rb;
                        std::vector<float> wdq(k);
                        kiln::ref::dequantize_row(t, wr, wdq.data(), k);
                        double abs_sum = 0;
                        for (uint32_t j = 0; j < k; ++j) abs_sum += std::fabs(double(wdq[j]) * xr[j]);
                        const double ref = kiln::ref::vec_dot_ref(t, wr, xr, k);
                        bad += !(std::fabs(got[pr * y_stride + row] - ref) <= dot_tolerance(k, abs_sum));
                        split_differs += got_split[pr * y_stride + row] != got[pr * y_stride + row];
                    }
                    for (uint32_t row = R; row < y_stride; ++row) untouched += std::isnan(got[pr * y_stride + row]);
                }
                CHECK(bad == 0);
                CHECK(split_differs == 0);
                CHECK(untouched == int(n * K * (y_stride - R)));
            }
        }
    }
    // Combine: y = sum_s w * down (+ sigmoid(g) * shared).
    const uint32_t n = 3, E = 40;
    const auto down = gaussian(n * K * E, 41), wts = gaussian(n * K, 42), shared = gaussian(n * E, 43), gate = gaussian(n, 44);
    for (auto mode : {kiln::vulkan::Ops::Shared::None, kiln::vulkan::Ops::Shared::Ungated, kiln::vulkan::Ops::Shared::Gated}) {
        Buffer db = f.buffer(down), wb = f.buffer(wts), yb = f.buffer(shared), gb = f.buffer(gate);
        f.run([&](auto& r) { REQUIRE(f.ops->moe_combine(r, whole(db), whole(wb), whole(yb), whole(gb), E, K, n, mode).is_ok()); });
        const auto got = f.read<float>(yb, n * E);
        int bad = 0;
        for (uint32_t t = 0; t < n; ++t)
            for (uint32_t c = 0; c < E; ++c) {
                double want = 0, mag = 0;
                for (uint32_t s = 0; s < K; ++s) want += double(wts[t * K + s]) * down[(t * K + s) * E + c], mag += std::fabs(double(wts[t * K + s]) * down[(t * K + s) * E + c]);
                if (mode != kiln::vulkan::Ops::Shared::None) {
                    const double g = mode == kiln::vulkan::Ops::Shared::Gated ? 1 / (1 + std::exp(-double(gate[t]))) : 1;
                    want += g * shared[t * E + c];
                    mag += std::fabs(g * shared[t * E + c]);
                }
                bad += !(std::fabs(got[t * E + c] - want) <= 8 * kEps * mag + 1e-30);
            }
        CHECK(bad == 0);
    }
}

TEST_CASE("vulkan: activation rounding gives the CPU's 8-bit activations bit for bit (q8_0-style blocks and q8_K)") {
    VulkanFixture f;
    const uint32_t rows = 3, k = 512;
    auto x = gaussian(rows * k, 31, 3.0f);
    std::fill(x.begin() + k, x.begin() + k + 256, 0.0f);  // row 1: an all-zero q8_K block
    // Row 2 starts with exact halves (scale 1: the largest magnitude is 127): round-half-even.
    const float ties[] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 126.5f, -3.5f};
    std::fill(x.begin() + 2 * k, x.begin() + 2 * k + 256, 0.0f);
    std::copy(std::begin(ties), std::end(ties), x.begin() + 2 * k);
    Buffer xb = f.buffer(x);
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        const auto& kt = *kiln::cpu::table_for(isa);
        const std::string isa_name = kiln::cpu::isa_name(isa);
        CAPTURE(isa_name);
        for (bool q8_K : {false, true}) {
            CAPTURE(q8_K);
            Buffer yb = f.nan_buffer(x.size()), sb = f.nan_buffer(x.size() / 32);
            f.run([&](auto& r) { REQUIRE(f.ops->act_round(r, whole(xb), whole(yb), whole(sb), k, rows, q8_K).is_ok()); });
            const auto y = f.read<float>(yb, x.size()), sums = f.read<float>(sb, x.size() / 32);
            int bad = 0, bad_sums = 0;
            for (uint32_t i = 0; i < rows; ++i) {
                const float* xr = x.data() + size_t(i) * k;
                const float* yr = y.data() + size_t(i) * k;
                if (q8_K) {
                    std::vector<kiln::block_q8_K> blocks(k / 256);
                    kt.quantize_q8K(xr, blocks.data(), k);
                    for (uint32_t j = 0; j < k; ++j) bad += yr[j] != blocks[j / 256].d * float(blocks[j / 256].qs[j % 256]);
                } else {
                    std::vector<kiln::cpu::block_q8_x32> blocks(k / 32);
                    kt.quantize_q8x32(xr, blocks.data(), k);
                    for (uint32_t j = 0; j < k; ++j) bad += yr[j] != blocks[j / 32].d * float(blocks[j / 32].qs[j % 32]);
                    for (uint32_t b = 0; b < k / 32; ++b) bad_sums += sums[i * (k / 32) + b] != kiln::fp16_to_fp32(blocks[b].s);
                }
            }
            CHECK(bad == 0);
            CHECK(bad_sums == 0);
        }
    }
}

TEST_CASE("vulkan: embedding lookup dequantizes the rows the ids name") {
    VulkanFixture f;
    const uint32_t k = 256, vocab = 50;
    const std::vector<int32_t> ids = {3, 0, 49, 3, 17};
    for (DType t : kVulkanWeightTypes) {
        const std::string format = kiln::dtype_name(t);
        CAPTURE(format);
        const auto wbytes = quantized_rows(t, gaussian(size_t(vocab * k), 11), vocab, k);
        Buffer w = f.buffer(wbytes), idb = f.buffer(ids), out = f.nan_buffer(ids.size() * size_t(k));
        const float scale = 1.5f;
        f.run([&](auto& r) { REQUIRE(f.ops->get_rows(r, t, whole(w), whole(idb), whole(out), k, uint32_t(ids.size()), scale, 0, vocab).is_ok()); });
        const auto got = f.read<float>(out, ids.size() * size_t(k));
        std::vector<float> ref(static_cast<size_t>(k));
        int bad = 0;
        for (size_t i = 0; i < ids.size(); ++i) {
            kiln::ref::dequantize_row(t, wbytes.data() + size_t(ids[i]) * kiln::row_bytes(t, k), ref.data(), k);
            float mx = 0;
            for (float v : ref) mx = std::max(mx, std::fabs(v));
            for (int64_t j = 0; j < k; ++j) bad += !(std::fabs(got[i * size_t(k) + size_t(j)] - ref[size_t(j)] * scale) <= 4 * kEps * mx * scale);
        }
        CHECK(bad == 0);
        // The table in two parts (two bindings): each dispatch fills the tokens it holds.
        const uint32_t split = 20, rb = uint32_t(kiln::row_bytes(t, k));
        Buffer w0 = f.buffer(std::vector<uint8_t>(wbytes.begin(), wbytes.begin() + split * rb));
        Buffer w1 = f.buffer(std::vector<uint8_t>(wbytes.begin() + split * rb, wbytes.end()));
        Buffer out2 = f.nan_buffer(ids.size() * size_t(k));
        f.run([&](auto& r) {
            REQUIRE(f.ops->get_rows(r, t, whole(w0), whole(idb), whole(out2), k, uint32_t(ids.size()), scale, 0, split).is_ok());
            REQUIRE(f.ops->get_rows(r, t, whole(w1), whole(idb), whole(out2), k, uint32_t(ids.size()), scale, split, vocab - split).is_ok());
        });
        CHECK(f.read<float>(out2, got.size()) == got);
    }
}

TEST_CASE("vulkan: RMSNorm, residual/bias add, SwiGLU and GELU match the CPU definitions") {
    VulkanFixture f;
    const auto& kt = kiln::cpu::active();
    const uint32_t rows = 5, width = 640;
    const auto x = gaussian(rows * width, 21, 3.0f), w = gaussian(width, 22);
    SUBCASE("rms_norm, in place and out of place") {
        for (bool in_place : {false, true}) {
            Buffer xb = f.buffer(x), wb = f.buffer(w), yb = f.nan_buffer(x.size());
            const Buffer& out = in_place ? xb : yb;
            f.run([&](auto& r) { REQUIRE(f.ops->rms_norm(r, whole(xb), whole(wb), whole(out), rows, width, 1e-6f).is_ok()); });
            const auto got = f.read<float>(out, x.size());
            int bad = 0;
            for (uint32_t i = 0; i < rows; ++i) {
                double ss = 0;
                for (uint32_t j = 0; j < width; ++j) ss += double(x[i * width + j]) * x[i * width + j];
                const double s = 1.0 / std::sqrt(ss / width + 1e-6);
                for (uint32_t j = 0; j < width; ++j) {
                    const double ref = x[i * width + j] * s * w[j];
                    bad += !(std::fabs(got[i * width + j] - ref) <= 8 * kEps * (std::fabs(ref) + 1e-30) + kEps * std::log2(double(width)) * std::fabs(ref));
                }
            }
            CHECK(bad == 0);
        }
    }
    SUBCASE("add: residual and a bias repeated per row") {
        for (uint32_t x_len : {rows * width, width}) {
            Buffer yb = f.buffer(x), bb = f.buffer(std::vector<float>(w.begin(), w.end()));
            Buffer full = f.buffer(gaussian(rows * width, 23));
            const Buffer& src = x_len == width ? bb : full;
            const auto src_v = x_len == width ? w : gaussian(rows * width, 23);
            f.run([&](auto& r) { REQUIRE(f.ops->add(r, whole(yb), whole(src), rows * width, x_len).is_ok()); });
            const auto got = f.read<float>(yb, x.size());
            int bad = 0;
            for (size_t i = 0; i < x.size(); ++i) bad += got[i] != x[i] + src_v[i % x_len];  // one rounding, exact
            CHECK(bad == 0);
        }
    }
    SUBCASE("glu: SiLU and Gemma's fp16-rounded GELU") {
        const auto up = gaussian(x.size(), 24);
        for (bool gelu : {false, true}) {
            CAPTURE(gelu);
            Buffer gb = f.buffer(x), ub = f.buffer(up);
            f.run([&](auto& r) { REQUIRE(f.ops->glu(r, whole(gb), whole(ub), uint32_t(x.size()), gelu).is_ok()); });
            const auto got = f.read<float>(gb, x.size());
            auto ref = x;
            (gelu ? kt.gelu_mul : kt.silu_mul)(ref.data(), up.data(), int64_t(ref.size()));
            int bad = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                // SiLU: a few ulps of exp; GELU: its fp16-rounded result may land one fp16 ulp
                // (up to 2^-10 relative) the other way, and for negative x, 1 + tanh cancels:
                // a few eps of tanh become an absolute error of eps |x| in gelu.
                const double rel = gelu ? std::ldexp(1.0, -10) : 16 * kEps;
                const double cancel = gelu ? 8 * kEps * std::fabs(x[i]) : 0.0;
                if (!(std::fabs(got[i] - ref[i]) <= (rel * std::fabs(ref[i] / up[i]) + cancel) * std::fabs(up[i]) + 1e-30) && bad++ < 5)
                    MESSAGE("x " << x[i] << " up " << up[i] << " got " << got[i] << " ref " << ref[i]);
            }
            CHECK(bad == 0);
        }
    }
}

TEST_CASE("vulkan: RoPE rotates like the CPU path in both pair layouts") {
    VulkanFixture f;
    kiln::ModelConfig c;
    c.head_dim = 64;
    c.rope_dim = 64;
    c.rope_theta = 10000.0f;
    const int n = 7, heads = 3, pos0 = 1000;
    std::vector<float> freqs(size_t(c.rope_dim / 2), 1.0f), cs(size_t(n * c.rope_dim));
    kiln::rope_table(c, freqs, c.rope_theta, c.rope_freq_scale, pos0, n, cs.data());
    const auto x = gaussian(size_t(n * heads * c.head_dim), 31);
    for (bool neox : {false, true}) {
        CAPTURE(neox);
        Buffer xb = f.buffer(x), csb = f.buffer(cs);
        f.run([&](auto& r) { REQUIRE(f.ops->rope(r, whole(xb), whole(csb), n, heads, uint32_t(c.head_dim), uint32_t(c.rope_dim), neox).is_ok()); });
        const auto got = f.read<float>(xb, x.size());
        int bad = 0;
        const int half = c.rope_dim / 2;
        for (int i = 0; i < n; ++i)
            for (int h = 0; h < heads; ++h)
                for (int p = 0; p < half; ++p) {
                    const size_t base = size_t(i * heads + h) * size_t(c.head_dim);
                    const size_t ia = base + size_t(neox ? p : 2 * p), ib = ia + size_t(neox ? half : 1);
                    const double co = cs[size_t((i * half + p) * 2)], si = cs[size_t((i * half + p) * 2 + 1)];
                    const double a = double(x[ia]) * co - double(x[ib]) * si, b = double(x[ia]) * si + double(x[ib]) * co;
                    const double tol = 4 * kEps * (std::fabs(x[ia]) + std::fabs(x[ib]));
                    bad += !(std::fabs(got[ia] - a) <= tol) + !(std::fabs(got[ib] - b) <= tol);
                }
        CHECK(bad == 0);
    }
}

TEST_CASE("vulkan: softmax and argmax") {
    VulkanFixture f;
    const uint32_t rows = 4, width = 1000;
    auto x = gaussian(rows * width, 41, 4.0f);
    x[2 * width + 500] = x[2 * width + 100] = 100.0f;  // a tie: the lower index wins
    Buffer xb = f.buffer(x), idx = f.buffer(std::vector<uint32_t>(rows, 12345));
    f.run([&](auto& r) { REQUIRE(f.ops->argmax(r, whole(xb), whole(idx), rows, width).is_ok()); });
    const auto got_idx = f.read<uint32_t>(idx, rows);
    for (uint32_t i = 0; i < rows; ++i) CHECK(got_idx[i] == uint32_t(std::max_element(x.begin() + i * width, x.begin() + (i + 1) * width) - (x.begin() + i * width)));
    CHECK(got_idx[2] == 100);
    f.run([&](auto& r) { REQUIRE(f.ops->softmax(r, whole(xb), rows, width).is_ok()); });
    const auto got = f.read<float>(xb, x.size());
    int bad = 0;
    for (uint32_t i = 0; i < rows; ++i) {
        const double mx = *std::max_element(x.begin() + i * width, x.begin() + (i + 1) * width);
        double sum = 0;
        for (uint32_t j = 0; j < width; ++j) sum += std::exp(x[i * width + j] - mx);
        for (uint32_t j = 0; j < width; ++j) {
            const double ref = std::exp(x[i * width + j] - mx) / sum;
            bad += !(std::fabs(got[i * width + j] - ref) <= 64 * kEps * ref + 1e-9);
        }
    }
    CHECK(bad == 0);
}

TEST_CASE("vulkan: greedy speculative verification counts the drafts that match the target's picks") {
    VulkanFixture f;
    const uint32_t width = 300;
    for (int case_i = 0; case_i < 4; ++case_i) {
        CAPTURE(case_i);
        const uint32_t n = 6;  // one pending token + 5 drafts
        const auto logits = gaussian(n * width, 80 + uint32_t(case_i));
        std::vector<int32_t> picks(n), drafts(n - 1);
        for (uint32_t i = 0; i < n; ++i) picks[i] = int32_t(std::max_element(logits.begin() + i * width, logits.begin() + (i + 1) * width) - (logits.begin() + i * width));
        // Cases 0..2: the first case_i drafts agree with the target, the next does not; case 3: all agree.
        const int agree = case_i == 3 ? int(n - 1) : case_i;
        for (uint32_t i = 0; i < n - 1; ++i) drafts[i] = int(i) < agree ? picks[i] : (picks[i] + 1) % int32_t(width);
        Buffer lb = f.buffer(logits), pb = f.buffer(std::vector<uint32_t>(n, 0)), db = f.buffer(drafts), rb = f.buffer(std::vector<uint32_t>(2, 999));
        f.run([&](auto& r) {
            REQUIRE(f.ops->argmax(r, whole(lb), whole(pb), n, width).is_ok());
            r.barrier();
            REQUIRE(f.ops->spec_verify(r, whole(pb), whole(db), whole(rb), n - 1).is_ok());
        });
        const auto result = f.read<uint32_t>(rb, 2);
        CHECK(result[0] == uint32_t(agree));
        CHECK(result[1] == uint32_t(picks[size_t(agree)]));
    }
}

namespace {

// Naive attention in double over fp16-rounded keys and values: out (n, H, Dv).
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& kc, const std::vector<float>& vc, int n, int H, int Hkv, int D,
                                    int Dv, int n_ctx, int pos0, int window, float scale) {
    std::vector<double> out(size_t(n * H * Dv));
    for (int i = 0; i < n; ++i)
        for (int h = 0; h < H; ++h) {
            const int g = h / (H / Hkv), pos = pos0 + i, lo = window > 0 ? std::max(0, pos - window + 1) : 0;
            std::vector<double> s;
            for (int p = lo; p <= pos; ++p) {
                double d = 0;
                for (int j = 0; j < D; ++j) d += double(q[size_t((i * H + h) * D + j)]) * kc[size_t((g * n_ctx + p) * D + j)];
                s.push_back(d * scale);
            }
            const double mx = *std::max_element(s.begin(), s.end());
            double sum = 0;
            for (double& v : s) sum += (v = std::exp(v - mx));
            for (int j = 0; j < Dv; ++j) {
                double a = 0;
                for (int p = lo; p <= pos; ++p) a += s[size_t(p - lo)] * vc[size_t((g * n_ctx + p) * Dv + j)];
                out[size_t((i * H + h) * Dv + j)] = a / sum;
            }
        }
    return out;
}

float round_f16(float x) { return kiln::fp16_to_fp32(kiln::fp32_to_fp16(x)); }

}  // namespace

TEST_CASE("vulkan: KV store and flash attention (f16 and q8_0 cache, GQA, causal, sliding window, several tiles)") {
    VulkanFixture f;
    struct Shape {
        int H, Hkv, D;
    };
    for (DType kv_type : {DType::F16, DType::Q8_0})
    for (Shape sh : {Shape{6, 2, 64}, Shape{4, 1, 256}}) {  // SmolLM2-like and Gemma-3-like heads
        for (int window : {0, 50}) {
            const std::string cache_type = kiln::dtype_name(kv_type);
            CAPTURE(cache_type);
            CAPTURE(sh.D);
            CAPTURE(window);
            const int H = sh.H, Hkv = sh.Hkv, D = sh.D, Dv = D, n_ctx = 160;
            const kiln::vulkan::Ops::KvShape s{uint32_t(H), uint32_t(Hkv), uint32_t(D), uint32_t(Dv), uint32_t(n_ctx), kv_type};
            const size_t k_row = kiln::vulkan::Ops::kv_row_bytes(kv_type, uint32_t(D)), v_row = kiln::vulkan::Ops::kv_row_bytes(kv_type, uint32_t(Dv));
            Buffer kc = f.buffer(std::vector<uint8_t>(size_t(Hkv * n_ctx) * k_row)), vc = f.buffer(std::vector<uint8_t>(size_t(Hkv * n_ctx) * v_row));
            // The values the cache should hold: each row rounded to fp16, or q8_0-quantized
            // by the scalar reference (its bytes too).
            std::vector<float> kref(size_t(Hkv * n_ctx * D)), vref(size_t(Hkv * n_ctx * Dv));
            std::vector<uint8_t> kbytes(size_t(Hkv * n_ctx) * k_row);
            auto reference_row = [&](const float* x, int dim, float* values, uint8_t* bytes) {
                if (kv_type == DType::F16) {
                    for (int j = 0; j < dim; ++j) values[j] = round_f16(x[j]);
                    return;
                }
                kiln::ref::quantize_row_q8_0(x, reinterpret_cast<kiln::block_q8_0*>(bytes), dim);
                kiln::ref::dequantize_row_q8_0(reinterpret_cast<const kiln::block_q8_0*>(bytes), values, dim);
            };
            std::vector<uint8_t> scratch(std::max(k_row, v_row));
            const float scale = 1.0f / std::sqrt(float(D));
            int pos0 = 0;
            for (int n : {130, 1, 3}) {  // prefill over three 64-position tiles, decode, a verification batch
                CAPTURE(n);
                const auto q = gaussian(size_t(n * H * D), 50 + n, 2.0f), k = gaussian(size_t(n * Hkv * D), 60 + n), v = gaussian(size_t(n * Hkv * Dv), 70 + n);
                for (int i = 0; i < n; ++i)
                    for (int g = 0; g < Hkv; ++g) {
                        const size_t row = size_t(g * n_ctx + pos0 + i);
                        reference_row(&k[size_t((i * Hkv + g) * D)], D, &kref[row * size_t(D)], &kbytes[row * k_row]);
                        reference_row(&v[size_t((i * Hkv + g) * Dv)], Dv, &vref[row * size_t(Dv)], scratch.data());
                    }
                Buffer qb = f.buffer(q), kb = f.buffer(k), vb = f.buffer(v), out = f.nan_buffer(size_t(n * H * Dv));
                f.run([&](auto& r) {
                    REQUIRE(f.ops->kv_store(r, whole(kb), whole(vb), whole(kc), whole(vc), s, uint32_t(n), uint32_t(pos0)).is_ok());
                    r.barrier();
                    REQUIRE(f.ops->flash_attn(r, whole(qb), whole(kc), whole(vc), whole(out), s, uint32_t(n), uint32_t(pos0), uint32_t(window), scale).is_ok());
                });
                // The key cache holds exactly the reference rows (fp16 values, q8_0 bytes).
                const auto kc_got = f.read<uint8_t>(kc, size_t(Hkv * n_ctx) * k_row);
                int bad_cache = 0;
                for (int g = 0; g < Hkv; ++g)
                    for (int p = pos0; p < pos0 + n; ++p) {
                        const size_t row = size_t(g * n_ctx + p);
                        if (kv_type == DType::Q8_0) {
                            bad_cache += std::memcmp(&kc_got[row * k_row], &kbytes[row * k_row], kiln::row_bytes(kv_type, D)) != 0;
                            continue;
                        }
                        for (int j = 0; j < D; ++j) {
                            uint16_t h;
                            std::memcpy(&h, &kc_got[row * k_row + size_t(j) * 2], 2);
                            bad_cache += kiln::fp16_to_fp32(h) != kref[row * size_t(D) + size_t(j)];
                        }
                    }
                CHECK(bad_cache == 0);

                const auto got = f.read<float>(out, size_t(n * H * Dv));
                // The shader rounds each query as the CPU backend prepares it (to fp16, or
                // q8_0 for a q8_0 cache: the reference's bytes), so the reference does too.
                std::vector<float> q_rounded(q.size());
                for (size_t row = 0; row < q.size() / size_t(D); ++row) reference_row(&q[row * size_t(D)], D, &q_rounded[row * size_t(D)], scratch.data());
                const auto ref = naive_attention(q_rounded, kref, vref, n, H, Hkv, D, Dv, n_ctx, pos0, window, scale);
                // A score's rounding error (D-term float dot) moves its weight by that much
                // relative; the output, a convex mix of V, moves by at most twice the largest
                // score error times max|V|, plus the float accumulation of the mix.
                double qmax = 0, vmax = 0;
                for (float x : q) qmax = std::max(qmax, double(std::fabs(x)));
                for (float x : vref) vmax = std::max(vmax, double(std::fabs(x)));
                const double kmax = 5.0;  // |N(0,1)| samples stay below
                const double score_err = kEps * D * qmax * kmax * scale * 2;
                const double tol = vmax * (2 * score_err + kEps * (n_ctx + 8));
                int bad = 0;
                for (size_t i = 0; i < ref.size(); ++i) bad += !(std::fabs(got[i] - ref[i]) <= tol);
                CHECK(bad == 0);
                pos0 += n;
            }
        }
    }
}

#endif  // KILN_HAVE_VULKAN
