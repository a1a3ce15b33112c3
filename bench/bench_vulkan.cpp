// Microbenchmarks of the Vulkan shaders on device 0 (VK_ICD_FILENAMES picks the driver):
// dequant-matvec / tiled matmul per weight format and batch size (what Ops::linear picks:
// matvec up to 8 tokens, the tiled matmul above), the MoE expert matvec, and flash attention at a KV depth.
// Each iteration records kReps dispatches (with barriers) and waits, so the submit latency
// is spread over them. Bytes = weights (or KV cache) read; items = multiply-accumulates.
// lavapipe numbers say nothing about GPUs.
//   build/kiln_microbench --benchmark_filter='vulkan/'
#ifdef KILN_HAVE_VULKAN
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "ref/quants.h"
#include "ref/random_blocks.h"
#include "vulkan/buffer.h"
#include "vulkan/commands.h"
#include "vulkan/ops.h"

namespace {

using kiln::DType;
using namespace kiln::vulkan;

constexpr int kReps = 10;

struct Device {
    std::shared_ptr<Context> ctx;
    std::unique_ptr<Recorder> rec;
    std::unique_ptr<Ops> ops;
    std::string error;
};

Device& device() {
    static Device d;
    static const bool opened = [] {
        auto c = Context::create(0);
        if (!c) return d.error = c.message(), false;
        d.ctx = c.value();
        auto r = Recorder::create(*d.ctx);
        if (!r) return d.error = r.message(), false;
        d.rec = std::move(r.value());
        d.ops = std::make_unique<Ops>(d.ctx);
        return true;
    }();
    (void)opened;
    return d;
}

template <class T>
Buffer filled(const std::vector<T>& v) {
    Device& d = device();
    auto b = Buffer::create(*d.ctx, v.size() * sizeof(T), Memory::DeviceLocal);
    if (!b) std::abort();
    if (!upload(*d.ctx, b.value(), 0, v.data(), v.size() * sizeof(T))) std::abort();
    return std::move(b.value());
}

std::vector<float> gaussian(size_t n, float scale) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
}

// Records kReps dispatches of `fn` and times the submission, after one untimed round
// (the driver compiles the pipeline on first use).
template <class Fn>
bool run(benchmark::State& state, Fn&& fn) {
    Device& d = device();
    d.rec->begin();
    if (!fn(*d.rec).is_ok() || !d.rec->submit_and_wait().is_ok()) return state.SkipWithError("warm-up failed"), false;
    for (auto _ : state) {
        d.rec->begin();
        for (int i = 0; i < kReps; ++i) {
            if (!fn(*d.rec).is_ok()) return state.SkipWithError("dispatch failed"), false;
            d.rec->barrier();
        }
        if (!d.rec->submit_and_wait().is_ok()) return state.SkipWithError("submit failed"), false;
    }
    return true;
}

void bm_linear(benchmark::State& state, DType t) {
    if (!device().ops) return state.SkipWithError(device().error.c_str());
    const uint32_t rows = 1024, k = 2048, n = uint32_t(state.range(0));
    const auto wf = gaussian(size_t(rows) * k, 0.05f);
    std::vector<uint8_t> w(kiln::row_bytes(t, k) * rows);
    for (uint32_t r = 0; r < rows && kiln::ref::has_quantizer(t); ++r) kiln::ref::quantize_row(t, wf.data() + size_t(r) * k, w.data() + r * kiln::row_bytes(t, k), k);
    if (!kiln::ref::has_quantizer(t)) kiln::ref::random_blocks(t, 1, w.data(), int64_t(rows) * k, 0.001f, 0.011f);  // the IQ lattices
    Buffer wb = filled(w), xb = filled(gaussian(size_t(n) * k, 1.0f)), yb = filled(std::vector<float>(size_t(n) * rows));
    // x stands in for its block sums (q4_1 / q5_1 read them): the timing is the same.
    if (!run(state, [&](Recorder& r) { return device().ops->linear(r, t, whole(wb), whole(xb), whole(yb), {k, rows, n, k, rows}, whole(xb)); })) return;
    state.SetBytesProcessed(int64_t(state.iterations()) * kReps * int64_t(w.size()));
    state.SetItemsProcessed(int64_t(state.iterations()) * kReps * int64_t(rows) * k * n);
}

void bm_flash_attn(benchmark::State& state) {
    if (!device().ops) return state.SkipWithError(device().error.c_str());
    const uint32_t depth = uint32_t(state.range(0)), n = uint32_t(state.range(1));
    const Ops::KvShape s{8, 2, 128, 128, depth + n};  // a Llama-3-8B-like group of heads
    const size_t cache = size_t(s.n_head_kv) * s.n_ctx * s.head_dim;
    Buffer q = filled(gaussian(size_t(n) * s.n_head * s.head_dim, 1.0f)), out = filled(std::vector<float>(size_t(n) * s.n_head * s.head_dim_v));
    Buffer kc = filled(std::vector<uint16_t>(cache, kiln::fp32_to_fp16(0.1f))), vc = filled(std::vector<uint16_t>(cache, kiln::fp32_to_fp16(0.2f)));
    if (!run(state, [&](Recorder& r) { return device().ops->flash_attn(r, whole(q), whole(kc), whole(vc), whole(out), s, n, depth, 0, 0.088f); })) return;
    state.SetBytesProcessed(int64_t(state.iterations()) * kReps * int64_t(2 * cache * 2));
    state.SetItemsProcessed(int64_t(state.iterations()) * kReps * int64_t(n) * s.n_head * int64_t(depth) * (s.head_dim + s.head_dim_v));
}

// One MoE expert projection (Qwen3-30B-A3B-like: 64 experts of 768 x 2048, 8 per token) over
// n tokens routed round-robin: bytes = the rows of the experts some token chose.
void bm_moe_matvec(benchmark::State& state, DType t) {
    if (!device().ops) return state.SkipWithError(device().error.c_str());
    const uint32_t X = 64, R = 768, k = 2048, K = 8, n = uint32_t(state.range(0));
    const auto wf = gaussian(size_t(R) * k, 0.05f);
    const size_t rb = kiln::row_bytes(t, k);
    std::vector<uint8_t> one(rb * R), w(rb * R * X);  // one expert quantized, repeated X times
    for (uint32_t r = 0; r < R; ++r) kiln::ref::quantize_row(t, wf.data() + size_t(r) * k, one.data() + r * rb, k);
    for (uint32_t e = 0; e < X; ++e) std::copy(one.begin(), one.end(), w.begin() + long(e * one.size()));
    std::vector<uint32_t> sel(size_t(n) * K);
    for (size_t i = 0; i < sel.size(); ++i) sel[i] = uint32_t((i * 7 + i / K) % X);
    const size_t used = std::min<size_t>(X, sel.size());
    Buffer wb = filled(w), xb = filled(gaussian(size_t(n) * k, 1.0f)), yb = filled(std::vector<float>(size_t(n) * K * R)), sb = filled(sel);
    if (!run(state, [&](Recorder& r) { return device().ops->moe_matvec(r, t, whole(wb), whole(xb), whole(yb), whole(sb), {k, R, n * K, K, k, R, 0, 0, X * R}); })) return;
    state.SetBytesProcessed(int64_t(state.iterations()) * kReps * int64_t(used * one.size()));
    state.SetItemsProcessed(int64_t(state.iterations()) * kReps * int64_t(n) * K * R * k);
}

void register_all() {
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::F16, DType::IQ4_XS, DType::IQ2_XXS, DType::IQ3_XXS}) {
        const std::string name = std::string("vulkan/linear/") + kiln::dtype_name(t);
        benchmark::RegisterBenchmark(name.c_str(), bm_linear, t)->Arg(1)->Arg(8)->Arg(64)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    for (DType t : {DType::Q4_K, DType::Q8_0}) {
        const std::string name = std::string("vulkan/moe_matvec/") + kiln::dtype_name(t);
        benchmark::RegisterBenchmark(name.c_str(), bm_moe_matvec, t)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
    benchmark::RegisterBenchmark("vulkan/flash_attn", bm_flash_attn)->Args({4096, 1})->Args({4096, 8})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

const bool registered = (register_all(), true);

}  // namespace
#endif  // KILN_HAVE_VULKAN
