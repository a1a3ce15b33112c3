// Flash attention over the KV cache: causal, optionally sliding-window, grouped-query.
// The kernel (kernels/cpu/flash_attn-inl.h) handles one tile of 64 positions of one KV head
// for all the query heads that share it, times the tokens in the batch, so K and V are read
// once per group. Two ways to spread the work over threads, with identical results:
//  - decode and verification (n <= 8 tokens): the tiles are split across threads, each
//    tile's partial result is stored, then merged per query in position order;
//  - prefill: jobs are (KV head, block of tokens), each walking its tiles in order.
// Either way every query merges the same per-tile partials in the same order, so a token's
// output does not depend on the batch it came in (speculative verification is exact).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "session_impl.h"

namespace kiln {

namespace {

constexpr int kSplitTokens = 8;     // up to this many tokens the KV length is split across threads
constexpr int kWave = 128;          // tiles per round of the split path (bounds attn_part)
constexpr size_t kInlineMergeFloats = 16384;  // partials up to this size merge on the calling thread
// Target queries per prefill job (tokens x group heads). Each job reads (and widens) every
// K/V tile it sees once, so larger blocks read the cache fewer times: 128 rather than 32
// made prefill attention at 16K 5-11% faster; 256 gained little more.
constexpr int kBlockQueries = 128;

struct Query {
    const uint8_t* q;  // prepared query
    int lo, pos;       // visible cache positions [lo, pos]
};

int group_size(const ModelConfig& c) { return c.n_head / c.n_head_kv; }
int max_queries(const ModelConfig& c) { return std::max(kSplitTokens * group_size(c), std::max(kBlockQueries, group_size(c))); }

// Per-thread scratch, each (nq) or (nq, Dv): tile kernel scratch | the kernel's outputs
// km, kl, kacc for the queries that see the tile | m, l, acc per query | M, L, ACC.
struct ThreadScratch {
    float *tile, *km, *kl, *kacc, *m, *l, *acc, *M, *L, *ACC;
};
// Floats of the tile kernel's scratch, rounded up to keep what follows 64-byte aligned.
size_t tile_scratch_floats(const ModelConfig& c) { return (cpu::attn_scratch_floats(max_queries(c), c.head_dim, c.head_dim_v) + 15) / 16 * 16; }
// All of one thread's scratch: the tile's, then three sets of (m, l, acc) for nq queries.
size_t thread_scratch_floats(const ModelConfig& c) {
    return (tile_scratch_floats(c) + 3 * size_t(max_queries(c)) * (size_t(c.head_dim_v) + 2) + 15) / 16 * 16;
}
ThreadScratch thread_scratch(AttnScratch& s, const ModelConfig& c, int ti) {
    const size_t nq = size_t(max_queries(c)), Dv = size_t(c.head_dim_v);
    ThreadScratch t;
    t.tile = s.thread() + size_t(ti) * s.thread_floats;
    t.km = t.tile + tile_scratch_floats(c);
    t.kl = t.km + nq;
    t.kacc = t.kl + nq;
    t.m = t.kacc + nq * Dv;
    t.l = t.m + nq;
    t.acc = t.l + nq;
    t.M = t.acc + nq * Dv;
    t.L = t.M + nq;
    t.ACC = t.L + nq;
    return t;
}

// Runs tile t of KV head g for the queries that can see any of it. Outputs, per query in
// `qs` order: m (-inf when the query sees nothing of the tile), l, acc (Dv).
struct TileRunner {
    const KvCache& kv;
    const cpu::KernelTable& kt;
    int il, Dv;
    float scale;
    std::vector<const uint8_t*> q;  // (nq) compacted kernel arguments
    std::vector<int> lo, hi, which;

    // m, l (nq), acc (nq, Dv).
    void run(int g, int t, const Query* qs, int nq, const ThreadScratch& ts, float* m, float* l, float* acc) {
        const int t0 = t * cpu::kAttnTile;
        q.clear(), lo.clear(), hi.clear(), which.clear();
        for (int i = 0; i < nq; ++i) {
            const int a = std::max(qs[i].lo - t0, 0), b = std::min(qs[i].pos - t0 + 1, cpu::kAttnTile);
            if (a < b) q.push_back(qs[i].q), lo.push_back(a), hi.push_back(b), which.push_back(i);
        }
        // Every query sees the tile (the common case): the kernel writes the outputs in place.
        const bool all = int(q.size()) == nq;
        if (!all) std::fill(m, m + nq, -INFINITY);
        if (q.empty()) return;
        const cpu::AttnTile a{kv.type_k, kv.type_v, kv.head_dim, Dv, kv.k_panel_at(il, g, t0), kv.k_panel, kv.v_at(il, g, t0), kv.v_row,
                              int(q.size()), q.data(), lo.data(), hi.data(), scale, all ? m : ts.km, all ? l : ts.kl, all ? acc : ts.kacc, ts.tile};
        kt.attn_tile(a);
        if (all) return;
        for (size_t k = 0; k < which.size(); ++k) {
            const size_t i = size_t(which[k]);
            m[i] = ts.km[k], l[i] = ts.kl[k];
            std::copy(ts.kacc + k * size_t(Dv), ts.kacc + (k + 1) * size_t(Dv), acc + i * size_t(Dv));
        }
    }
};

// out (Dv) = ACC / L, rotated back when the cache holds rotated values.
void normalize(const float* ACC, float L, int Dv, bool rotated, float* out) {
    const float inv = 1.0f / L;
    for (int d = 0; d < Dv; ++d) out[d] = ACC[d] * inv;
    if (rotated) cpu::hadamard(out, Dv);
}

}  // namespace

Status KvCache::allocate(const ModelConfig& c, int n_ctx_tokens, DType tk, DType tv, bool rotate) {
    for (auto [what, t, dim] : {std::tuple{"K", tk, c.head_dim}, std::tuple{"V", tv, c.head_dim_v}})
        if (!cpu::kv_type_supported(t, dim))
            return Status::error("%s cache type %s is not supported for head size %d (f16, bf16, q8_0, q4_0 or f32; the block types need a multiple of 32)",
                                 what, dtype_name(t), dim);
    if (c.head_dim % 16 || c.head_dim_v % 16 || c.head_dim > 512 || c.head_dim_v > 512)
        return Status::error("head sizes %d/%d are not supported (multiples of 16 up to 512)", c.head_dim, c.head_dim_v);
    if (rotate && !(cpu::is_power_of_two(c.head_dim) && cpu::is_power_of_two(c.head_dim_v)))
        return Status::error("the Hadamard-rotated KV cache needs power-of-two head sizes, this model has %d/%d", c.head_dim, c.head_dim_v);
    type_k = tk, type_v = tv, hadamard = rotate;
    n_ctx = (n_ctx_tokens + cpu::kAttnTile - 1) / cpu::kAttnTile * cpu::kAttnTile;  // whole tiles
    n_head_kv = c.n_head_kv, head_dim = c.head_dim, head_dim_v = c.head_dim_v;
    k_panel = cpu::k_panel_bytes(tk, c.head_dim);
    v_row = cpu::v_row_bytes(tv, c.head_dim_v);
    k.resize(size_t(c.n_layer));
    v.resize(size_t(c.n_layer));
    for (int il = 0; il < c.n_layer; ++il) {
        AlignedBuffer<uint8_t>& K = k[size_t(il)];
        AlignedBuffer<uint8_t>& V = v[size_t(il)];
        K.resize(size_t(n_head_kv) * (n_ctx / cpu::kKvPanel) * k_panel);
        V.resize(size_t(n_head_kv) * n_ctx * v_row);
        if (!K.data || !V.data) return Status::error("out of memory allocating the KV cache (%d tokens, %.1f MiB)", n_ctx_tokens, double(bytes()) / (1 << 20));
        std::memset(K.data, 0, K.size), std::memset(V.data, 0, V.size);  // finite values in unused tile tails
    }
    return Status::ok();
}

Status AttnScratch::allocate(const ModelConfig& c, int n_batch, int n_threads, DType type_k) {
    const size_t stride = size_t(c.head_dim_v) + 2;
    q.resize(size_t(n_batch) * size_t(c.n_head) * cpu::attn_q_bytes(type_k, c.head_dim));
    thread_floats = thread_scratch_floats(c);
    thread.resize(size_t(n_threads) * thread_floats);
    // decode: tile partials (n_head_kv, kWave) and running state (n_head_kv) blocks of nq (Dv + 2)
    part.resize(size_t(c.n_head_kv) * (kWave + 1) * size_t(kSplitTokens * group_size(c)) * stride);
    if (!q.data || !thread.data || !part.data) return Status::error("out of memory allocating attention scratch");
    return Status::ok();
}

void attention(const cpu::KernelTable& kt, ThreadPool& pool, const KvCache& kv, AttnScratch& s, const ModelConfig& c, int il,
               int pos0, int n, const float* q, float* out, float kq_scale, int window) {
    const int H = c.n_head, Hkv = c.n_head_kv, G = group_size(c), D = c.head_dim, Dv = c.head_dim_v;
    const size_t qbytes = cpu::attn_q_bytes(kv.type_k, D);
    auto first_visible = [&](int pos) { return window > 0 ? std::max(0, pos - window + 1) : 0; };

    // Queries in the kernels' form (rounded or quantized like the keys), (n, H, qbytes).
    auto prepare = [&](int64_t a, int64_t b, int) {
        float rot[512];  // (D) the rotated query, for a rotated cache
        for (int64_t i = a; i < b; ++i) {
            uint8_t* out = s.q() + size_t(i) * qbytes;
            const float* qi = kv.hadamard ? KvCache::rotated(q + size_t(i) * D, D, rot) : q + size_t(i) * D;
            if (kv.type_k == DType::F16) {  // the common case, with the ISA's vector fp16 rounding
                std::memcpy(out, qi, sizeof(float) * size_t(D));
                kt.round_f16(reinterpret_cast<float*>(out), D);
            } else {
                cpu::prepare_q(kv.type_k, qi, D, out);
            }
        }
    };
    if (n <= kSplitTokens) prepare(0, int64_t(n) * H, 0);  // a few microseconds: not worth a barrier
    else pool.parallel_for(int64_t(n) * H, 16, prepare);
    // The queries of KV head g for tokens [i0, i1), token-major: (i1 - i0, G).
    auto group_queries = [&](int g, int i0, int i1, std::vector<Query>& qs) {
        qs.clear();
        for (int i = i0; i < i1; ++i)
            for (int h = g * G; h < (g + 1) * G; ++h) qs.push_back({s.q() + (size_t(i) * H + h) * qbytes, first_visible(pos0 + i), pos0 + i});
    };

    if (n > kSplitTokens) {
        // Prefill: job = (KV head, block of tokens), walking its tiles in order.
        const int tb = std::max(1, kBlockQueries / G), n_blocks = (n + tb - 1) / tb;
        pool.parallel_for(int64_t(Hkv) * n_blocks, 1, [&](int64_t j0, int64_t j1, int ti) {
            const ThreadScratch ts = thread_scratch(s, c, ti);
            TileRunner tr{kv, kt, il, Dv, kq_scale, {}, {}, {}, {}};
            std::vector<Query> qs;
            for (int64_t j = j0; j < j1; ++j) {
                const int g = int(j % Hkv), i0 = int(j / Hkv) * tb, i1 = std::min(n, i0 + tb), nq = (i1 - i0) * G;
                group_queries(g, i0, i1, qs);
                std::fill(ts.M, ts.M + nq, -INFINITY);
                const int t_first = qs.front().lo / cpu::kAttnTile, t_last = qs.back().pos / cpu::kAttnTile;
                for (int t = t_first; t <= t_last; ++t) {
                    tr.run(g, t, qs.data(), nq, ts, ts.m, ts.l, ts.acc);
                    kt.attn_merge(nq, Dv, ts.m, ts.l, ts.acc, ts.M, ts.L, ts.ACC);
                }
                for (int k = 0; k < nq; ++k) {
                    const int i = i0 + k / G, h = g * G + k % G;
                    normalize(ts.ACC + size_t(k) * Dv, ts.L[k], Dv, kv.hadamard, out + (size_t(i) * H + h) * Dv);
                }
            }
        });
        return;
    }

    // Decode / verification: tiles split across threads in rounds of kWave, partials
    // (Hkv, kWave) blocks of [m (nq), l (nq), acc (nq, Dv)], then merged in tile order into
    // the running state, (Hkv) blocks of [M (nq), L (nq), ACC (nq, Dv)].
    const int nq = n * G;
    const size_t block = size_t(nq) * (size_t(Dv) + 2);
    float* part = s.part();
    float* state = part + size_t(Hkv) * kWave * block;
    for (int g = 0; g < Hkv; ++g) std::fill(state + size_t(g) * block, state + size_t(g) * block + nq, -INFINITY);
    const int t_first = first_visible(pos0) / cpu::kAttnTile, t_last = (pos0 + n - 1) / cpu::kAttnTile;
    for (int w0 = t_first; w0 <= t_last; w0 += kWave) {
        const int nw = std::min(kWave, t_last + 1 - w0);
        pool.parallel_for(int64_t(Hkv) * nw, 1, [&](int64_t j0, int64_t j1, int ti) {
            const ThreadScratch ts = thread_scratch(s, c, ti);
            TileRunner tr{kv, kt, il, Dv, kq_scale, {}, {}, {}, {}};
            std::vector<Query> qs;
            for (int64_t j = j0; j < j1; ++j) {
                const int g = int(j / nw), t = int(j % nw);
                group_queries(g, 0, n, qs);
                float* p = part + (size_t(g) * kWave + t) * block;
                tr.run(g, w0 + t, qs.data(), nq, ts, p, p + nq, p + 2 * nq);
            }
        });
        const bool last = w0 + kWave > t_last;
        auto merge = [&](int64_t g0, int64_t g1, int) {
            for (int64_t g = g0; g < g1; ++g) {
                float* st = state + size_t(g) * block;
                for (int t = 0; t < nw; ++t) {
                    const float* p = part + (size_t(g) * kWave + t) * block;
                    kt.attn_merge(nq, Dv, p, p + nq, p + 2 * nq, st, st + nq, st + 2 * nq);
                }
                if (!last) continue;
                for (int k = 0; k < nq; ++k) {
                    const int i = k / G, h = int(g) * G + k % G;
                    normalize(st + 2 * nq + size_t(k) * Dv, st[nq + k], Dv, kv.hadamard, out + (size_t(i) * H + h) * Dv);
                }
            }
        };
        // A decode's few tiles merge in about a microsecond, less than a job's own cost
        // once the state's lines have to cross between cores (bench_ops' thread_pool).
        if (size_t(Hkv) * size_t(nw) * block < kInlineMergeFloats) merge(0, Hkv, 0);
        else pool.parallel_for(Hkv, 1, merge);
    }
}

}  // namespace kiln
