// Microbenchmarks of the row ops and activation quantizers, per ISA (single-threaded).
// Bytes processed = bytes read and written; items = elements.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "cpu/kernels.h"
#include "kiln/thread_pool.h"

namespace {

using namespace kiln::cpu;

std::vector<float> data(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
}

enum class Op { RmsNorm, Softmax, SiluMul, GeluMul, RoundF16, QuantQ8x32, QuantQ8K };

void bm_op(benchmark::State& state, Isa isa, Op op) {
    const KernelTable* kt = table_for(isa);
    if (!kt) {
        state.SkipWithError("ISA not supported by this CPU");
        return;
    }
    const int64_t n = state.range(0);
    auto x = data(size_t(n), 1), w = data(size_t(n), 2), y = data(size_t(n), 3);
    std::vector<block_q8_x32> q32(static_cast<size_t>(n / 32));
    std::vector<kiln::block_q8_K> qk(static_cast<size_t>(n / 256));
    size_t bytes = 0;
    for (auto _ : state) {
        switch (op) {
            case Op::RmsNorm: kt->rms_norm(x.data(), w.data(), y.data(), n, 1e-5f), bytes = 12 * size_t(n); break;
            case Op::Softmax: y = x, kt->softmax(y.data(), n), bytes = 8 * size_t(n); break;
            case Op::SiluMul: y = x, kt->silu_mul(y.data(), w.data(), n), bytes = 12 * size_t(n); break;
            case Op::GeluMul: y = x, kt->gelu_mul(y.data(), w.data(), n), bytes = 12 * size_t(n); break;
            case Op::RoundF16: y = x, kt->round_f16(y.data(), n), bytes = 8 * size_t(n); break;
            case Op::QuantQ8x32: kt->quantize_q8x32(x.data(), q32.data(), n), bytes = 5 * size_t(n); break;
            case Op::QuantQ8K: kt->quantize_q8K(x.data(), qk.data(), n), bytes = 5 * size_t(n); break;
        }
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
    state.SetItemsProcessed(int64_t(state.iterations()) * n);
}

// One parallel_for of 2 threads over nearly no work: what a job costs beyond its work
// (waking the worker, claiming chunks, waiting for the last one). A decode runs 5 jobs a
// layer: SmolLM2 ~150 a token of ~1.7 ms.
void bm_parallel_for(benchmark::State& state) {
    static kiln::ThreadPool pool(2);
    const int per_thread = int(state.range(0));
    std::vector<float> out(1024, 0.0f);  // (1024,) one float per index, so the chunks do some writes
    for (auto _ : state) {
        pool.parallel_for(1024, 16, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) out[size_t(i)] += 1.0f;
        }, per_thread);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(int64_t(state.iterations()));
}

// The same over parallel_for_shares (a decode matmul's split): two shares, each taken in
// shrinking pieces, so more claims than one chunk a thread.
void bm_parallel_for_shares(benchmark::State& state) {
    static kiln::ThreadPool pool(2);
    std::vector<float> out(1024, 0.0f);  // (1024,)
    for (auto _ : state) {
        pool.parallel_for_shares(1024, 16, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) out[size_t(i)] += 1.0f;
        });
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(int64_t(state.iterations()));
}

// The gated delta rule (Qwen3.5's DeltaNet) over the 32 value heads of a Qwen3.5-9B layer,
// state 128 x 128 per head: a decode token's recurrent work in one layer. Arg: tokens in a
// row per head (1: decode, reading and writing a state per head; 64: a prefill chunk, the
// state staying in L2). Bytes = the states read and written.
void bm_delta_rule(benchmark::State& state, Isa isa) {
    const KernelTable* kt = table_for(isa);
    if (!kt) {
        state.SkipWithError("ISA not supported by this CPU");
        return;
    }
    constexpr int64_t S = 128, H = 32;
    const int64_t T = state.range(0);
    auto states = data(size_t(H * S * S), 1);   // (H, S, S) read
    std::vector<float> out(states.size());       // (H, S, S) written
    auto q = data(size_t(S), 2), k = data(size_t(S), 3), v = data(size_t(S), 4);
    std::vector<float> o(static_cast<size_t>(S));  // (S) one head's output
    for (auto _ : state) {
        for (int64_t h = 0; h < H; ++h) {
            const float* in = states.data() + h * S * S;
            float* dst = out.data() + h * S * S;
            for (int64_t t = 0; t < T; ++t, in = dst) kt->delta_rule(in, dst, q.data(), k.data(), v.data(), 0.9f, 0.5f, 0.088f, o.data(), S);
        }
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * H * S * S * 8);
    state.SetItemsProcessed(int64_t(state.iterations()) * H * T);  // head-tokens
}

void register_all() {
    for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Generic})
        benchmark::RegisterBenchmark((std::string("ops/delta_rule/") + isa_name(isa)).c_str(), bm_delta_rule, isa)->Arg(1)->Arg(64)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("thread_pool/parallel_for/chunks_per_thread", bm_parallel_for)->Arg(1)->Arg(2)->Arg(4)->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark("thread_pool/parallel_for_shares", bm_parallel_for_shares)->Unit(benchmark::kMicrosecond);
    const std::pair<const char*, Op> ops[] = {{"rms_norm", Op::RmsNorm},   {"softmax", Op::Softmax},     {"silu_mul", Op::SiluMul},
                                              {"gelu_mul", Op::GeluMul},   {"round_f16", Op::RoundF16},
                                              {"quantize_q8x32", Op::QuantQ8x32}, {"quantize_q8K", Op::QuantQ8K}};
    for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Generic})
        for (const auto& [name, op] : ops)
            benchmark::RegisterBenchmark((std::string("ops/") + name + "/" + isa_name(isa)).c_str(), bm_op, isa, op)->Arg(2048)->Arg(8192);
}

const bool registered = (register_all(), true);

}  // namespace
