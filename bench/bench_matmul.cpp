// Microbenchmarks of the quantized matmul kernels, per weight type, ISA and batch size
// (1 = decode, 8 = speculative verification, 64 / 512 = prefill), single-threaded.
// Bytes processed = weight bytes streamed; items processed = multiply-accumulates.
//   build/kiln_microbench --benchmark_filter='matmul/q4_K'
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "bandwidth.h"
#include "cpu/kernels.h"
#include "cpu/r16.h"
#include "ref/quants.h"
#include "ref/random_blocks.h"
#include "runtime/streamed_alloc.h"

namespace {

using kiln::DType;
using namespace kiln::cpu;

struct Setup {
    std::vector<uint8_t> w, act;
    std::vector<float> y;
    size_t w_stride = 0, a_stride = 0;
};

Setup make(const KernelTable& kt, DType t, int64_t rows, int64_t k, int ny) {
    Setup s;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    s.w_stride = kiln::row_bytes(t, k);
    s.w.resize(s.w_stride * size_t(rows));
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < rows && kiln::ref::has_quantizer(t); ++r) {
        for (float& x : row) x = nd(rng);
        kiln::ref::quantize_row(t, row.data(), s.w.data() + size_t(r) * s.w_stride, k);
    }
    if (!kiln::ref::has_quantizer(t)) kiln::ref::random_blocks(t, 1, s.w.data(), rows * k, 0.001f, 0.011f);  // the IQ grids
    const ActFormat f = act_format(t);
    s.a_stride = act_row_bytes(f, k);
    s.act.resize(s.a_stride * size_t(ny));
    for (int c = 0; c < ny; ++c) {
        for (float& x : row) x = nd(rng) * 20;
        uint8_t* dst = s.act.data() + size_t(c) * s.a_stride;
        if (f == ActFormat::Q8K) kt.quantize_q8K(row.data(), reinterpret_cast<kiln::block_q8_K*>(dst), k);
        else if (f == ActFormat::Q8x32) kt.quantize_q8x32(row.data(), reinterpret_cast<block_q8_x32*>(dst), k);
        else std::memcpy(dst, row.data(), size_t(k) * 4);
    }
    s.y.resize(size_t(rows) * size_t(ny));
    return s;
}

void bm_matmul(benchmark::State& state, Isa isa, DType t) {
    const KernelTable* kt = table_for(isa);
    if (!kt) {
        state.SkipWithError("ISA not supported by this CPU");
        return;
    }
    const int ny = int(state.range(0));
    const int64_t rows = 1024, k = 2048;
    Setup s = make(*kt, t, rows, k, ny);
    const ActRows a{s.act.data(), s.a_stride, ny};
    for (auto _ : state) {
        kt->matmul[int(t)](k, s.w.data(), s.w_stride, 0, rows, a, s.y.data(), size_t(rows));
        benchmark::DoNotOptimize(s.y.data());
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(s.w.size()));
    state.SetItemsProcessed(int64_t(state.iterations()) * rows * k * ny);
}

// The same, over the row-interleaved copy (--repack).
void bm_matmul_r16(benchmark::State& state, Isa isa, DType t) {
    const KernelTable* kt = table_for(isa);
    if (!kt || !kt->matmul_r16[int(t)]) {
        state.SkipWithError("no r16 kernel on this ISA");
        return;
    }
    const int ny = int(state.range(0));
    const int64_t rows = 1024, k = 2048;
    Setup s = make(*kt, t, rows, k, ny);
    const size_t gb = r16_group_bytes(t, k);
    std::vector<uint8_t> packed(gb * size_t(rows / kR16Rows));
    r16_repack(t, s.w.data(), s.w_stride, rows, k, packed.data());
    const ActRows a{s.act.data(), s.a_stride, ny};
    for (auto _ : state) {
        kt->matmul_r16[int(t)](k, packed.data(), gb, 0, rows, a, s.y.data(), size_t(rows));
        benchmark::DoNotOptimize(s.y.data());
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(packed.size()));
    state.SetItemsProcessed(int64_t(state.iterations()) * rows * k * ny);
}

// Bytes a streaming benchmark reads a pass: 4x the L3, at least 128 MiB, at most 1 GiB.
// Why: 128 MiB was past a Zen 4 CCD's 32 MiB, but a Xeon's 300 MiB L3 held much of it
// (two threads "streamed" 33-35 GB/s where a model's decode reads ~29).
size_t stream_bytes() {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return std::clamp(size_t(std::max(0L, l3)) * 4, size_t(128) << 20, size_t(1) << 30);
}

// Decode (one token) over stream_bytes() of weights, past L3, as the model's matrices are
// read each token: one thread's streaming rate, which in-cache rows above cannot show. The
// 1024-row matrix is repeated (in its original rows, or repacked); the kernel sees one
// tall matrix. Arg = k: 2048, or 18944 (a 7B's ffn_down), whose activation row no longer
// fits L1 beside the stream. Read beside read/stream (the bare loop, same bytes).
void bm_matmul_stream(benchmark::State& state, DType t, bool repacked) {
    const KernelTable* kt = table_for(Isa::Avx512);
    if (!kt || (repacked && !kt->matmul_r16[int(t)])) {
        state.SkipWithError("no AVX-512 kernel for this layout");
        return;
    }
    const int64_t rows = 1024, k = state.range(0);
    Setup s = make(*kt, t, rows, k, 1);
    const size_t stride = repacked ? r16_group_bytes(t, k) : s.w_stride;  // bytes of one group (r16) or row
    const size_t one = repacked ? stride * size_t(rows / kR16Rows) : s.w.size();
    const int copies = int(stream_bytes() / one);
    std::unique_ptr<uint8_t, decltype(&std::free)> w(static_cast<uint8_t*>(kiln::alloc_streamed(one * size_t(copies))), &std::free);  // copies x (rows x k) weights
    if (repacked) r16_repack(t, s.w.data(), s.w_stride, rows, k, w.get());
    else std::memcpy(w.get(), s.w.data(), one);
    for (int c = 1; c < copies; ++c) std::memcpy(w.get() + size_t(c) * one, w.get(), one);
    std::vector<float> y(size_t(rows) * size_t(copies));  // (rows x copies)
    const ActRows a{s.act.data(), s.a_stride, 1};
    const MatmulFn fn = repacked ? kt->matmul_r16[int(t)] : kt->matmul[int(t)];
    for (auto _ : state) {
        fn(k, w.get(), stride, 0, rows * copies, a, y.data(), y.size());
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(one) * copies);
}

// kiln-bench's probe loop (prefetching as the decode kernels do) over stream_bytes(): the
// rate the streaming kernels above reach at best. threads:2, each over its own buffer.
void bm_read_stream(benchmark::State& state) {
    const size_t n = stream_bytes();
    std::unique_ptr<uint8_t, decltype(&std::free)> buf(static_cast<uint8_t*>(kiln::alloc_streamed(n)), &std::free);  // (n) bytes
    std::memset(buf.get(), 1, n);
    for (auto _ : state) benchmark::DoNotOptimize(kiln::bench::read_pass(buf.get(), n));
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n));
}

void register_all() {
    benchmark::RegisterBenchmark("read/stream", bm_read_stream)->Unit(benchmark::kMicrosecond)->UseRealTime()->Threads(1)->Threads(2);
    for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::IQ4_XS}) {
        const std::string name = std::string("matmul_r16/") + kiln::dtype_name(t) + "/avx512";
        benchmark::RegisterBenchmark(name.c_str(), bm_matmul_r16, Isa::Avx512, t)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond);
        // threads:2 = two copies streaming at once, one per core: the rate a two-thread decode can reach
        benchmark::RegisterBenchmark((name + "/stream").c_str(), bm_matmul_stream, t, true)->Arg(2048)->Arg(18944)->Unit(benchmark::kMicrosecond)->UseRealTime()->Threads(1)->Threads(2);
        const std::string rows_name = std::string("matmul/") + kiln::dtype_name(t) + "/avx512/stream";
        benchmark::RegisterBenchmark(rows_name.c_str(), bm_matmul_stream, t, false)->Arg(2048)->Arg(18944)->Unit(benchmark::kMicrosecond)->UseRealTime()->Threads(1)->Threads(2);
    }
    for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Generic}) {
        for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16, DType::IQ4_XS, DType::IQ2_XXS,
                        DType::IQ2_XS, DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S, DType::IQ1_M}) {
            const std::string name = std::string("matmul/") + kiln::dtype_name(t) + "/" + isa_name(isa);
            auto* b = benchmark::RegisterBenchmark(name.c_str(), bm_matmul, isa, t);
            for (int ny : {1, 8, 64, 512})
                if (isa == Isa::Avx512 || ny <= 8) b->Arg(ny);
            b->Unit(benchmark::kMicrosecond);
        }
    }
}

const bool registered = (register_all(), true);

}  // namespace
