// Flash attention (src/cpu/attention.cpp + kernels/cpu/flash_attn-inl.h) against a naive
// double-precision reference on every ISA, KV cache type, head layout, window and batch
// shape; and its batch invariance (a token's output is bit-identical whether it comes
// alone, with 7 others or in a prefill chunk).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <iterator>
#include <span>
#include <random>
#include <vector>

#include <Eigen/Dense>

#include "cpu/kv_layout.h"
#include "kiln/model.h"
#include "cpu/session_impl.h"
#include "test_util.h"

using kiln::DType;

namespace {

struct Shape {
    int n_head, n_head_kv, head_dim;
};

kiln::ModelConfig config(const Shape& sh) {
    kiln::ModelConfig c;
    c.n_layer = 1;
    c.n_head = sh.n_head;
    c.n_head_kv = sh.n_head_kv;
    c.head_dim = c.head_dim_v = sh.head_dim;
    return c;
}

// The reference: softmax(scale * K q) over the keys a query sees, then V^T p, in double
// with Eigen (an implementation independent of the kernels), with q and k exactly as the
// kernels see them (q prepared like the keys, k and v read back from the cache), so the
// only difference left is float arithmetic.
void reference(const kiln::KvCache& kv, const kiln::ModelConfig& c, int pos0, int n, const float* q, float scale, int window, std::vector<double>& out) {
    const int H = c.n_head, G = c.n_head / c.n_head_kv, D = c.head_dim, Dv = c.head_dim_v;
    out.assign(size_t(n) * H * Dv, 0.0);
    std::vector<uint8_t> qp(kiln::cpu::attn_q_bytes(kv.type_k, D));
    std::vector<float> row(static_cast<size_t>(std::max(D, Dv)));
    for (int i = 0; i < n; ++i) {
        const int pos = pos0 + i, lo = window > 0 ? std::max(0, pos - window + 1) : 0, m = pos - lo + 1;
        for (int h = 0; h < H; ++h) {
            kiln::cpu::prepare_q(kv.type_k, q + (size_t(i) * H + h) * D, D, qp.data());
            Eigen::VectorXd qd(D);  // (D) the query as the kernels see it
            if (kv.type_k == DType::Q8_0 || kv.type_k == DType::Q4_0) {
                const auto* b = reinterpret_cast<const kiln::cpu::AttnQ8*>(qp.data());
                for (int d = 0; d < D; ++d) qd[d] = double(b[d / 32].d * float(b[d / 32].qs[d % 32]));
            } else {
                for (int d = 0; d < D; ++d) qd[d] = reinterpret_cast<const float*>(qp.data())[d];
            }
            Eigen::MatrixXd K(m, D), V(m, Dv);  // (m, D), (m, Dv) the visible keys and values
            for (int j = lo; j <= pos; ++j) {
                const int page = kv.seqs.page_of(0, j), slot = j % kiln::kKvPage;
                kiln::cpu::load_k(kv.type_k, kv.k_tile(0, page, h / G) + size_t(slot / kiln::cpu::kKvPanel) * kv.k_panel, slot % kiln::cpu::kKvPanel, D, row.data());
                for (int d = 0; d < D; ++d) K(j - lo, d) = row[size_t(d)];
                kiln::cpu::load_v(kv.type_v, kv.v_tile(0, page, h / G), kv.v_row, slot, Dv, row.data());
                for (int d = 0; d < Dv; ++d) V(j - lo, d) = row[size_t(d)];
            }
            const Eigen::VectorXd s = K * qd * double(scale);  // (m) scores
            const Eigen::VectorXd p = (s.array() - s.maxCoeff()).exp().matrix();
            const Eigen::VectorXd o = V.transpose() * p / p.sum();  // (Dv)
            for (int d = 0; d < Dv; ++d) out[(size_t(i) * H + h) * Dv + size_t(d)] = o[d];
        }
    }
}

struct Fixture {
    kiln::ModelConfig c;
    kiln::KvCache kv;
    kiln::AttnScratch scratch;
    std::vector<float> q;  // (n_tokens, H, D)
    Fixture(const Shape& sh, DType tk, DType tv, int n_ctx, int n_tokens, uint32_t seed, bool hadamard = false) : c(config(sh)) {
        REQUIRE(kv.allocate(c, n_ctx, tk, tv, hadamard).is_ok());
        REQUIRE(scratch.allocate(c, n_tokens, 2, tk).is_ok());
        REQUIRE(kv.reserve({{0, n_tokens}}).is_ok());
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> k(size_t(c.head_dim)), v(size_t(c.head_dim_v));
        // Keys with a few large dims, as real models have, so scores spread out.
        for (int pos = 0; pos < n_tokens; ++pos)
            for (int g = 0; g < c.n_head_kv; ++g) {
                for (size_t d = 0; d < k.size(); ++d) k[d] = nd(rng) * (d % 7 == 0 ? 3.0f : 1.0f);
                for (float& x : v) x = nd(rng);
                kv.store(0, g, 0, pos, k.data(), v.data());
            }
        q.resize(size_t(n_tokens) * c.n_head * c.head_dim);
        for (float& x : q) x = nd(rng);
    }
    // Attention of tokens [pos0, pos0 + n), (n, H, Dv).
    std::vector<float> run(const kiln::cpu::KernelTable& kt, kiln::ThreadPool& pool, int pos0, int n, float scale, int window) {
        std::vector<float> out(size_t(n) * c.n_head * c.head_dim_v, NAN);
        kiln::attention(kt, pool, kv, scratch, c, 0, pos0, n, q.data() + size_t(pos0) * c.n_head * c.head_dim, out.data(), scale, window);
        return out;
    }
};

}  // namespace

TEST_CASE("attention: flash attention matches a naive reference on every ISA, cache type, layout and window") {
    kiln::ThreadPool pool(2);
    const Shape shapes[] = {{4, 4, 64}, {8, 2, 64}, {9, 3, 64}, {4, 1, 256}, {32, 4, 64}, {6, 2, 128}, {2, 1, 32}};
    const DType types[] = {DType::F16, DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0};
    uint32_t seed = 1;
    double worst = 0, worst_bf16 = 0;  // error / max |v|, f32 weights and bf16 weights
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        const kiln::cpu::KernelTable& kt = *kiln::cpu::table_for(isa);
        for (const Shape& sh : shapes) {
            for (DType tk : types) {
                const DType tv = types[seed % 5];
                // (context filled before the batch, batch size, window): decode and
                // verification at several depths, prefill chunks, a sliding window.
                const int cases[][3] = {{0, 1, 0}, {70, 1, 0}, {300, 8, 0}, {5, 40, 0}, {130, 77, 0}, {200, 3, 50}, {100, 60, 64}};
                for (const auto& cs : cases) {
                    const int pos0 = cs[0], n = cs[1], window = cs[2];
                    INFO(std::string(kiln::cpu::isa_name(isa)), " heads ", sh.n_head, "/", sh.n_head_kv, " dim ", sh.head_dim, " K ", std::string(kiln::dtype_name(tk)),
                         " V ", std::string(kiln::dtype_name(tv)), " pos0 ", pos0, " n ", n, " window ", window);
                    Fixture f(sh, tk, tv, pos0 + n, pos0 + n, seed++);
                    const float scale = 1.0f / std::sqrt(float(sh.head_dim));
                    const std::vector<float> got = f.run(kt, pool, pos0, n, scale, window);
                    std::vector<double> want;
                    reference(f.kv, f.c, pos0, n, f.q.data() + size_t(pos0) * sh.n_head * sh.head_dim, scale, window, want);
                    // Outputs are convex combinations of values: the error scale is the
                    // largest |v| (f32 rounding over a few hundred terms: ~1e-6 of it).
                    // With bf16 dot products (AVX-512, BF16 values) the probabilities are
                    // rounded to bf16 too: each weight p_j / sum p moves by at most 2^-9 of
                    // itself for its own rounding and 2^-9 for the sum's, so the output by at
                    // most 2^-8 of max |v - out| <= 2 max |v|.
                    double vmax = 0, err = 0;
                    for (size_t i = 0; i < want.size(); ++i) {
                        vmax = std::max(vmax, std::abs(want[i]));
                        err = std::isfinite(got[i]) ? std::max(err, std::abs(double(got[i]) - want[i])) : INFINITY;
                    }
                    const bool bf16_weights = isa == kiln::cpu::Isa::Avx512 && tv == DType::BF16;
                    CHECK(err <= (bf16_weights ? std::ldexp(2.0, -8) : 2e-5) * vmax);
                    (bf16_weights ? worst_bf16 : worst) = std::max(bf16_weights ? worst_bf16 : worst, err / vmax);
                }
            }
        }
    }
    MESSAGE("worst error / max |v|: " << worst << " (f32 weights), " << worst_bf16 << " (bf16 weights)");
}

TEST_CASE("attention: a token's output does not depend on the batch it comes in") {
    kiln::ThreadPool pool(2);
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        const kiln::cpu::KernelTable& kt = *kiln::cpu::table_for(isa);
        for (DType t : {DType::F16, DType::BF16, DType::Q8_0}) {
            for (int window : {0, 40}) {
                CAPTURE(std::string(kiln::cpu::isa_name(isa)));
                CAPTURE(std::string(kiln::dtype_name(t)));
                CAPTURE(window);
                const Shape sh{8, 2, 64};
                const int pos0 = 150, n = 20;
                Fixture f(sh, t, t, pos0 + n, pos0 + n, 99);
                const size_t row = size_t(sh.n_head) * sh.head_dim;
                const std::vector<float> prefill = f.run(kt, pool, pos0, n, 0.125f, window);  // one chunk of 20 (prefill path)
                std::vector<float> eights;                                                   // 8 + 8 + 4 (verification path)
                for (int i = 0; i < n; i += 8) {
                    const auto part = f.run(kt, pool, pos0 + i, std::min(8, n - i), 0.125f, window);
                    eights.insert(eights.end(), part.begin(), part.end());
                }
                std::vector<float> singles;  // 20 decode steps
                for (int i = 0; i < n; ++i) {
                    const auto part = f.run(kt, pool, pos0 + i, 1, 0.125f, window);
                    singles.insert(singles.end(), part.begin(), part.end());
                }
                REQUIRE(prefill.size() == size_t(n) * row);
                CHECK(std::memcmp(prefill.data(), singles.data(), sizeof(float) * prefill.size()) == 0);
                CHECK(std::memcmp(eights.data(), singles.data(), sizeof(float) * prefill.size()) == 0);
            }
        }
    }
}

TEST_CASE("attention: a Hadamard-rotated cache computes the same attention") {
    // Keys, queries and values rotated, the output rotated back: in exact arithmetic
    // nothing changes, so with an F32 cache only float rounding may differ.
    kiln::ThreadPool pool(2);
    for (kiln::cpu::Isa isa : kiln::cpu::available_isas()) {
        const kiln::cpu::KernelTable& kt = *kiln::cpu::table_for(isa);
        for (const Shape& sh : {Shape{8, 2, 64}, Shape{4, 1, 256}, Shape{2, 1, 32}}) {
            for (auto [pos0, n] : {std::pair{90, 1}, std::pair{200, 8}, std::pair{0, 70}}) {
                CAPTURE(std::string(kiln::cpu::isa_name(isa)));
                CAPTURE(sh.head_dim);
                CAPTURE(n);
                Fixture plain(sh, DType::F32, DType::F32, pos0 + n, pos0 + n, 7), rotated(sh, DType::F32, DType::F32, pos0 + n, pos0 + n, 7, true);
                const std::vector<float> want = plain.run(kt, pool, pos0, n, 0.125f, 0), got = rotated.run(kt, pool, pos0, n, 0.125f, 0);
                double vmax = 0, err = 0;
                for (size_t i = 0; i < want.size(); ++i) {
                    vmax = std::max(vmax, std::abs(double(want[i])));
                    err = std::isfinite(got[i]) ? std::max(err, std::abs(double(got[i]) - want[i])) : INFINITY;
                }
                CHECK(err <= 2e-5 * vmax);
                CHECK(err > 0);  // the rotation really ran (the rounding differs somewhere)
            }
        }
    }
    kiln::KvCache kv;
    const kiln::Status s = kv.allocate(config(Shape{2, 1, 48}), 64, DType::F16, DType::F16, true);
    REQUIRE_FALSE(s.is_ok());
    CHECK(s.message().find("power-of-two") != std::string::npos);
}

// Quality of the quantized caches on a real model and real text: the KL divergence of
// each position's next-token distribution between two caches, over the GNU GPL v3 text
// (~3000 tokens; Debian's base-files ships it). The model is SmolLM2-135M with its
// weights in F16 (tools/make_synthetic_models.sh writes it from the Q4_1 file): F16
// matmuls keep activations in f32, so the cache's rounding is all that differs. (With the
// Q4_1 file, 8-bit activation quantization turns any cache change into a KL of ~0.004,
// F16 vs F32 included, and hides the cache.)
namespace {

double mean_kl(kiln::Session& ref, kiln::Session& test, const std::vector<int32_t>& tokens, int n_vocab) {
    double total = 0;
    int rows = 0;
    std::vector<double> p(static_cast<size_t>(n_vocab)), q(static_cast<size_t>(n_vocab));
    auto softmax = [&](const float* x, std::vector<double>& out) {
        const double mx = *std::max_element(x, x + n_vocab);
        double sum = 0;
        for (int i = 0; i < n_vocab; ++i) sum += (out[size_t(i)] = std::exp(double(x[i]) - mx));
        for (double& v : out) v /= sum;
    };
    for (size_t at = 0; at < tokens.size(); at += 256) {
        const std::span<const int32_t> chunk(tokens.data() + at, std::min<size_t>(256, tokens.size() - at));
        REQUIRE(ref.forward(chunk, true).is_ok());
        REQUIRE(test.forward(chunk, true).is_ok());
        for (int r = 0; r < ref.n_logits(); ++r) {
            softmax(ref.logits(r), p);
            softmax(test.logits(r), q);
            double kl = 0;
            for (int i = 0; i < n_vocab; ++i)
                if (p[size_t(i)] > 0) kl += p[size_t(i)] * std::log(p[size_t(i)] / std::max(q[size_t(i)], 1e-300));
            total += kl, ++rows;
        }
    }
    return total / rows;
}

}  // namespace

TEST_CASE("model: KV cache types on real text: Q8_0 and BF16 within 0.002 KL of F16, Hadamard helps Q4_0") {
    const std::string path = kiln::test::model_path("synth/smollm2-f16.gguf");
    const std::string text_path = "/usr/share/common-licenses/GPL-3";
    if (!kiln::test::require_file(path) || !kiln::test::require_file(text_path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    std::ifstream in(text_path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<int32_t> tokens = model.value()->tokenizer().encode(text, true, false);
    tokens.resize(std::min<size_t>(tokens.size(), 3000));
    REQUIRE(tokens.size() >= 2000);
    struct Cache {
        DType type;
        bool hadamard;
    };
    auto session = [&](Cache cache) {
        kiln::SessionOptions so;
        so.n_ctx = int(tokens.size());
        so.n_threads = 2;
        so.n_batch = 256;
        so.type_k = so.type_v = cache.type;
        so.kv_hadamard = cache.hadamard ? kiln::KvHadamard::On : kiln::KvHadamard::Off;
        auto s = kiln::Session::create(model.value(), so);
        REQUIRE(s.is_ok());
        return std::move(s.value());
    };
    auto kl = [&](Cache ref, Cache test) {
        auto a = session(ref), b = session(test);
        const double v = mean_kl(*a, *b, tokens, model.value()->config().n_vocab);
        const std::string label = std::string(kiln::dtype_name(test.type)) + (test.hadamard ? "+hadamard" : "") + " vs " + kiln::dtype_name(ref.type);
        MESSAGE(label << " K and V cache, " << tokens.size() << " tokens of the GPL v3: mean KL " << v);
        return v;
    };
    const Cache f32{DType::F32, false}, f16{DType::F16, false}, bf16{DType::BF16, false}, q8{DType::Q8_0, false}, q4{DType::Q4_0, false},
        q4h{DType::Q4_0, true};
    const double f16_vs_f32 = kl(f32, f16), bf16_vs_f16 = kl(f16, bf16), q8_vs_f16 = kl(f16, q8), q4_vs_f16 = kl(f16, q4), q4h_vs_f16 = kl(f16, q4h);
    CHECK(q8_vs_f16 <= 0.002);             // the long-context issue's bound
    CHECK(bf16_vs_f16 <= 0.002);           // bf16 keys, values, queries and (AVX-512) probabilities
    CHECK(f16_vs_f32 < bf16_vs_f16);       // 8 bits of mantissa against 11
    CHECK(f16_vs_f32 < q8_vs_f16);         // the metric sees the cache: more bits, closer
    CHECK(q8_vs_f16 < q4_vs_f16);
    CHECK(q4h_vs_f16 < 0.75 * q4_vs_f16);  // the rotation spreads outlier channels: a clear gain
}
