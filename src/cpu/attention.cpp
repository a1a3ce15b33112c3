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
#include <span>
#include <vector>

#include "cpu/session_impl.h"

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
    void run(const int32_t* pages, int g, int t, const Query* qs, int nq, const ThreadScratch& ts, float* m, float* l, float* acc) {
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
        const cpu::AttnTile a{kv.type_k, kv.type_v, kv.head_dim, Dv, kv.k_tile(il, pages[t], g), kv.k_panel, kv.v_tile(il, pages[t], g), kv.v_row,
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

Status AttnScratch::allocate(const ModelConfig& c, int n_batch, int n_threads, DType type_k) {
    const size_t stride = size_t(c.head_dim_v) + 2;
    q.resize(size_t(n_batch) * size_t(c.n_head) * cpu::attn_q_bytes(type_k, c.head_dim));
    thread_floats = thread_scratch_floats(c);
    thread.resize(size_t(n_threads) * thread_floats);
    // decode: tile partials (n_head_kv, kWave) and running state (n_head_kv, kSplitTokens sequences) blocks of nq (Dv + 2)
    part.resize(size_t(c.n_head_kv) * (kWave + kSplitTokens) * size_t(kSplitTokens * group_size(c)) * stride);
    if (!q.data || !thread.data || !part.data) return Status::error("out of memory allocating attention scratch");
    return Status::ok();
}

void attention(const cpu::KernelTable& kt, ThreadPool& pool, const KvCache& kv, AttnScratch& s, const ModelConfig& c, int il,
               std::span<const AttnGroup> groups, const float* q, float* out, float kq_scale, int window) {
    const int H = c.n_head, Hkv = c.n_head_kv, G = group_size(c), D = c.head_dim, Dv = c.head_dim_v;
    const size_t qbytes = cpu::attn_q_bytes(kv.type_k, D);
    int n = 0;  // rows of q and out
    for (const AttnGroup& gr : groups) n += gr.n;
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
    // The queries of KV head g for tokens [k0, k1) of group gr, token-major: (k1 - k0, G).
    auto group_queries = [&](const AttnGroup& gr, int g, int k0, int k1, std::vector<Query>& qs) {
        qs.clear();
        for (int k = k0; k < k1; ++k)
            for (int h = g * G; h < (g + 1) * G; ++h)
                qs.push_back({s.q() + (size_t(gr.row0 + k) * H + h) * qbytes, first_visible(gr.pos0 + k), gr.pos0 + k});
    };
    // out rows of query k (token-major, (tokens, G)) of KV head g in group gr.
    auto out_row = [&](const AttnGroup& gr, int g, int k) { return out + (size_t(gr.row0 + k / G) * H + size_t(g) * G + k % G) * Dv; };
    auto pages = [&](const AttnGroup& gr) { return kv.seqs.pages(gr.seq); };

    if (n > kSplitTokens) {
        // Prefill: job = (sequence, KV head, block of its tokens), walking its tiles in order.
        const int tb = std::max(1, kBlockQueries / G);
        struct Job { int group, g, k0; };
        std::vector<Job> jobs;  // (sum over groups of Hkv * blocks)
        for (int gi = 0; gi < int(groups.size()); ++gi)
            for (int k0 = 0; k0 < groups[size_t(gi)].n; k0 += tb)
                for (int g = 0; g < Hkv; ++g) jobs.push_back({gi, g, k0});
        pool.parallel_for(int64_t(jobs.size()), 1, [&](int64_t j0, int64_t j1, int ti) {
            const ThreadScratch ts = thread_scratch(s, c, ti);
            TileRunner tr{kv, kt, il, Dv, kq_scale, {}, {}, {}, {}};
            std::vector<Query> qs;
            for (int64_t j = j0; j < j1; ++j) {
                const Job& job = jobs[size_t(j)];
                const AttnGroup& gr = groups[size_t(job.group)];
                const int k1 = std::min(gr.n, job.k0 + tb), nq = (k1 - job.k0) * G;
                group_queries(gr, job.g, job.k0, k1, qs);
                std::fill(ts.M, ts.M + nq, -INFINITY);
                const int t_first = qs.front().lo / cpu::kAttnTile, t_last = qs.back().pos / cpu::kAttnTile;
                for (int t = t_first; t <= t_last; ++t) {
                    tr.run(pages(gr), job.g, t, qs.data(), nq, ts, ts.m, ts.l, ts.acc);
                    kt.attn_merge(nq, Dv, ts.m, ts.l, ts.acc, ts.M, ts.L, ts.ACC);
                }
                for (int k = 0; k < nq; ++k) normalize(ts.ACC + size_t(k) * Dv, ts.L[k], Dv, kv.hadamard, out_row(gr, job.g, job.k0 * G + k));
            }
        });
        return;
    }

    // Decode / verification: the (sequence, tile) items split across threads in rounds of
    // kWave, partials (Hkv, kWave) blocks of [m (nq), l (nq), acc (nq, Dv)], then merged in
    // tile order into each sequence's running state, (Hkv, kSplitTokens) blocks of
    // [M (nq), L (nq), ACC (nq, Dv)]; nq = the sequence's tokens x G.
    struct Item { int group, tile; bool last; };
    std::vector<Item> items;  // each group's visible tiles, group by group, in tile order
    for (int gi = 0; gi < int(groups.size()); ++gi) {
        const AttnGroup& gr = groups[size_t(gi)];
        const int t_first = first_visible(gr.pos0) / cpu::kAttnTile, t_last = (gr.pos0 + gr.n - 1) / cpu::kAttnTile;
        for (int t = t_first; t <= t_last; ++t) items.push_back({gi, t, t == t_last});
    }
    const size_t block = size_t(kSplitTokens * G) * (size_t(Dv) + 2);
    float* part = s.part();
    float* state = part + size_t(Hkv) * kWave * block;
    auto state_of = [&](int g, int gi) { return state + (size_t(g) * kSplitTokens + size_t(gi)) * block; };
    for (int g = 0; g < Hkv; ++g)
        for (int gi = 0; gi < int(groups.size()); ++gi) std::fill(state_of(g, gi), state_of(g, gi) + groups[size_t(gi)].n * G, -INFINITY);
    for (int w0 = 0; w0 < int(items.size()); w0 += kWave) {
        const int nw = std::min(kWave, int(items.size()) - w0);
        pool.parallel_for(int64_t(Hkv) * nw, 1, [&](int64_t j0, int64_t j1, int ti) {
            const ThreadScratch ts = thread_scratch(s, c, ti);
            TileRunner tr{kv, kt, il, Dv, kq_scale, {}, {}, {}, {}};
            std::vector<Query> qs;
            for (int64_t j = j0; j < j1; ++j) {
                const int g = int(j / nw), t = int(j % nw);
                const Item& it = items[size_t(w0 + t)];
                const AttnGroup& gr = groups[size_t(it.group)];
                const int nq = gr.n * G;
                group_queries(gr, g, 0, gr.n, qs);
                float* p = part + (size_t(g) * kWave + t) * block;
                tr.run(pages(gr), g, it.tile, qs.data(), nq, ts, p, p + nq, p + 2 * nq);
            }
        });
        auto merge = [&](int64_t g0, int64_t g1, int) {
            for (int64_t g = g0; g < g1; ++g) {
                for (int t = 0; t < nw; ++t) {
                    const Item& it = items[size_t(w0 + t)];
                    const AttnGroup& gr = groups[size_t(it.group)];
                    const int nq = gr.n * G;
                    const float* p = part + (size_t(g) * kWave + t) * block;
                    float* st = state_of(int(g), it.group);
                    kt.attn_merge(nq, Dv, p, p + nq, p + 2 * nq, st, st + nq, st + 2 * nq);
                    if (!it.last) continue;
                    for (int k = 0; k < nq; ++k) normalize(st + 2 * nq + size_t(k) * Dv, st[nq + k], Dv, kv.hadamard, out_row(gr, int(g), k));
                }
            }
        };
        // A decode's few tiles merge in about a microsecond, less than a job's own cost
        // once the state's lines have to cross between cores (bench_ops' thread_pool).
        if (size_t(Hkv) * size_t(nw) * size_t(n * G) * (size_t(Dv) + 2) < kInlineMergeFloats) merge(0, Hkv, 0);
        else pool.parallel_for(Hkv, 1, merge);
    }
}

void attention(const cpu::KernelTable& kt, ThreadPool& pool, const KvCache& kv, AttnScratch& s, const ModelConfig& c, int il,
               int pos0, int n, const float* q, float* out, float kq_scale, int window) {
    const AttnGroup group{0, pos0, n, 0};
    attention(kt, pool, kv, s, c, il, std::span<const AttnGroup>(&group, 1), q, out, kq_scale, window);
}

}  // namespace kiln
