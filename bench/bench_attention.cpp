// Microbenchmarks of flash attention (src/cpu/attention.cpp) for one layer, best ISA, F16 /
// BF16 / Q8_0 caches: decode (1 token), verification (8) and a prefill chunk (64) against
// a cache of 512 / 4096 / 16384 positions, for the head layouts of the models kiln is
// measured on; single-threaded, and at 16384 also with 2 threads (decode's KV length split);
// decode at 65536 reads a cache too big for L3 (one layer at 16384 may partly fit).
// Bytes = the KV cache bytes the call reads; items = query heads x positions attended; per
// second of wall-clock time.
//   kiln_microbench --benchmark_filter=attention
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "cpu/session_impl.h"

namespace {

struct Layout {
    const char* name;
    int n_head, n_head_kv, head_dim;
};
constexpr Layout kLayouts[] = {{"llama1.1b", 32, 8, 64}, {"smollm2", 9, 3, 64}, {"gemma3", 4, 1, 256}};

void bm_attention(benchmark::State& state, Layout lay, kiln::DType type) {
    const int depth = int(state.range(0)), n = int(state.range(1)), threads = int(state.range(2));
    kiln::ModelConfig c;
    c.n_layer = 1, c.n_head = lay.n_head, c.n_head_kv = lay.n_head_kv, c.head_dim = c.head_dim_v = lay.head_dim;
    kiln::KvCache kv;
    kiln::AttnScratch scratch;
    if (!kv.allocate(c, depth + n, type, type) || !scratch.allocate(c, n, threads, type)) {
        state.SkipWithError("allocation failed");
        return;
    }
    if (!kv.reserve({{0, depth + n}})) {
        state.SkipWithError("KV pages");
        return;
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> k(size_t(c.head_dim)), q(size_t(n) * c.n_head * c.head_dim), out(size_t(n) * c.n_head * c.head_dim);
    for (int pos = 0; pos < depth + n; ++pos)
        for (int g = 0; g < c.n_head_kv; ++g) {
            for (float& x : k) x = nd(rng);
            kv.store(0, g, 0, pos, k.data(), k.data());
        }
    for (float& x : q) x = nd(rng);
    kiln::ThreadPool pool(threads);
    const kiln::cpu::KernelTable& kt = kiln::cpu::active();
    for (auto _ : state) {
        kiln::attention(kt, pool, kv, scratch, c, 0, depth, n, q.data(), out.data(), 0.125f, 0);
        benchmark::DoNotOptimize(out.data());
    }
    const double positions = double(depth) + n / 2.0;
    state.SetBytesProcessed(int64_t(double(state.iterations()) * positions * double(kv.bytes_per_position())));
    state.SetItemsProcessed(int64_t(double(state.iterations()) * positions * n * c.n_head));
}

void register_all() {
    for (const Layout& lay : kLayouts)
        for (kiln::DType t : {kiln::DType::F16, kiln::DType::BF16, kiln::DType::Q8_0}) {
            auto* b = benchmark::RegisterBenchmark((std::string("attention/") + lay.name + "/" + kiln::dtype_name(t)).c_str(),
                                                   [lay, t](benchmark::State& s) { bm_attention(s, lay, t); });
            b->ArgNames({"depth", "tokens", "threads"});
            for (int depth : {512, 4096, 16384})
                for (int n : {1, 8, 64}) b->Args({depth, n, 1});
            for (int n : {1, 8, 64}) b->Args({16384, n, 2});
            for (int depth : {64, 512}) b->Args({depth, 1, 2});  // a short decode: the job's own cost shows
            b->Args({65536, 1, 2});  // a cache well past L3, as a whole model's 16 layers are
            b->Unit(benchmark::kMicrosecond)->UseRealTime();  // the pool's other thread works too
        }
}

const bool registered = (register_all(), true);

}  // namespace
