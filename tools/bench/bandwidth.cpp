#include "bandwidth.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "runtime/streamed_alloc.h"

namespace kiln::bench {

namespace {

// 512-bit loads, 8 accumulators: enough memory-level parallelism to saturate a Zen 4 core.
// The n bytes as `streams` equal parts read side by side, 512 bytes of each in turn. Why:
// one core reads two distant streams faster than one (Zen 5, one core: 34 vs 40 GB/s), so a
// probe that reads one would understate what the machine can deliver. (The r16 decode
// kernels read their ranges' halves side by side for a while: -1..-4% in a model, whose
// threads' slices of 0.3-2 MB are too short for it, against +3..12% on 128 MB.)
// prefetch: each line also prefetched 4 KB ahead into L1 and 32 KB ahead into L2, as the
// decode kernels can (prefetch_ahead): on an Intel Xeon that reads faster than the
// hardware prefetchers alone, and a probe must not be slower than the decode it rates.
// The prefetch addresses are integers: past the end of the buffer they are harmless.
__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t n, int streams, bool prefetch) {
    __m512i a[8];
    for (auto& x : a) x = _mm512_setzero_si512();
    const size_t part = n / size_t(streams) / 512 * 512;
    for (size_t i = 0; i < part; i += 512)
        for (int s = 0; s < streams; ++s) {
            const uint8_t* q = p + size_t(s) * part + i;
            if (prefetch)
                for (int k = 0; k < 8; ++k) {
                    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(q) + 4096 + 64 * k), _MM_HINT_T0);
                    _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(q) + 32768 + 64 * k), _MM_HINT_T1);
                }
            for (int k = 0; k < 8; ++k) a[k] = _mm512_xor_si512(a[k], _mm512_load_si512(q + 64 * k));
        }
    for (int k = 1; k < 8; ++k) a[0] = _mm512_xor_si512(a[0], a[k]);
    alignas(64) uint64_t lanes[8];
    _mm512_store_si512(lanes, a[0]);
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3] ^ lanes[4] ^ lanes[5] ^ lanes[6] ^ lanes[7];
}

uint64_t read_plain(const uint8_t* p, size_t n, int streams) {
    uint64_t a[8] = {};
    const size_t part = n / size_t(streams) / 64 * 64;
    for (size_t i = 0; i < part; i += 64)
        for (int s = 0; s < streams; ++s)
            for (int k = 0; k < 8; ++k) {
                uint64_t v;
                std::memcpy(&v, p + size_t(s) * part + i + 8 * k, 8);
                a[k] ^= v;
            }
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

}  // namespace

uint64_t read_pass(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    return __builtin_cpu_supports("avx512f") ? read_avx512(b, n, 1, true) : read_plain(b, n, 1);
}

constexpr size_t kProbeBytes = size_t(1) << 30;  // 1 GiB: 32x the L3 of a Zen 4 CCD

// On huge pages like the weights and KV cache it stands for: fewer TLB misses.
ReadProbe::ReadProbe(int threads) : threads_(threads), buf_(static_cast<uint8_t*>(alloc_streamed(kProbeBytes))) {
    if (buf_) std::memset(buf_, 1, kProbeBytes);  // fault every page in before timing
}

ReadProbe::~ReadProbe() { std::free(buf_); }

double ReadProbe::measure(int passes) {
    if (!buf_) return 0;
    const bool wide = __builtin_cpu_supports("avx512f");
    double best = 0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < passes; ++pass) {  // in turn: one stream a thread, two, one prefetched; the best
        const int streams = 1 + pass % 3 % 2;
        const bool prefetch = pass % 3 == 2;
        std::vector<std::thread> ts;
        std::vector<uint64_t> out(static_cast<size_t>(threads_));
        const size_t slice = kProbeBytes / size_t(threads_) / 4096 * 4096;
        auto t0 = std::chrono::steady_clock::now();
        for (int t = 0; t < threads_; ++t)
            ts.emplace_back([&, t] {
                const uint8_t* p = buf_ + size_t(t) * slice;
                out[size_t(t)] = wide ? read_avx512(p, slice, streams, prefetch) : read_plain(p, slice, streams);
            });
        for (auto& t : ts) t.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (uint64_t v : out) sink = sink ^ v;
        best = std::max(best, double(slice) * threads_ / s / 1e9);  // slice: whole 512-byte steps of either part
    }
    return best;
}

}  // namespace kiln::bench
