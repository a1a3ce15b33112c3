// linear(): quantize the activations once, then split the weight rows across the threads.
// Several matrices that read the same input (q/k/v, gate/up) run as one job: their rows
// are one range to split, so the threads meet once instead of once per matrix.
#include <algorithm>
#include <iterator>

#include "cpu/r16.h"
#include "cpu/session_impl.h"

namespace kiln {

namespace {

// x (n, k) -> quantized rows in `fmt`, into dst; returns the row stride.
size_t quantize_rows(const cpu::KernelTable& kt, ThreadPool& pool, cpu::ActFormat fmt, const float* x, int n, int64_t k, uint8_t* dst) {
    const size_t stride = cpu::act_row_bytes(fmt, k);
    pool.parallel_for(n, 1, [&](int64_t c0, int64_t c1, int) {
        for (int64_t c = c0; c < c1; ++c) {
            if (fmt == cpu::ActFormat::Q8K) kt.quantize_q8K(x + c * k, reinterpret_cast<block_q8_K*>(dst + c * stride), k);
            else kt.quantize_q8x32(x + c * k, reinterpret_cast<cpu::block_q8_x32*>(dst + c * stride), k);
        }
    });
    return stride;
}

// The row-interleaved kernel for w when it has an r16 copy and its 16-row groups line up
// with the 16-row pieces the threads get (row0: w's first row in its group's combined
// range); null: the original rows. variant: the decode variant (KernelTable::decode_r16).
cpu::MatmulFn r16_kernel(const cpu::KernelTable& kt, const TensorView& w, int64_t row0, int variant = 0) {
    if (!w.packed || row0 % cpu::kR16Rows != 0) return nullptr;
    return kt.decode_r16(w.dtype, variant);
}

// Bytes of its share of a streaming job a worker reads ahead: a quarter of its 1 MB L2 on
// Zen 4/5, a few microseconds of streaming, about what the serial work between jobs takes.
constexpr size_t kWarmBytes = 256 << 10;
constexpr int kMaxWarmThreads = 64;  // larger pools skip it (a stack array per call)

// Where thread t's share of the rows of `ws` starts (the cut parallel_for_shares makes with
// grain 16), and up to kWarmBytes of it within its matrix.
void share_starts(const cpu::KernelTable& kt, std::initializer_list<const TensorView*> ws, int n_threads, WarmRange* out /* (n_threads) */) {
    int64_t total = 0;
    for (const TensorView* w : ws) total += w->rows();
    const int64_t grains = (total + 15) / 16;
    for (int t = 0; t < n_threads; ++t) {
        const int64_t r = 16 * (grains * t / n_threads), share_rows = 16 * (grains * (t + 1) / n_threads) - r;
        int64_t row0 = 0;
        out[t] = {};
        for (const TensorView* w : ws) {
            if (!w->data) break;  // a tensor this layer does not have
            if (r < row0 + w->rows()) {
                const int64_t i = r - row0, rows = std::min(share_rows, w->rows() - i);
                const bool packed = r16_kernel(kt, *w, row0) != nullptr;
                const uint8_t* base = static_cast<const uint8_t*>(packed ? w->packed : w->data);
                const size_t row_bytes = packed ? w->packed_group_bytes / 16 : w->row_size();
                out[t] = {base + size_t(i) * row_bytes, std::min(kWarmBytes, size_t(rows) * row_bytes)};
                break;
            }
            row0 += w->rows();
        }
    }
}

// One pass of linear_group over n rows of x (one kernel call per thread and matrix).
void linear_pass(SessionState& s, ThreadPool& pool, std::initializer_list<const TensorView*> ws, const float* x, int n, float* const* ys,
                 std::initializer_list<const TensorView*> next) {
    struct Job {
        const TensorView* w;
        float* y;
        cpu::MatmulFn fn;
        cpu::ActRows a;
        int64_t row0;       // first row of this matrix in the combined row range
        size_t stride;      // bytes per row (or per 16-row group for the r16 layout)
        const void* data;   // the original rows or their r16 copy
    };
    Job jobs[4];
    int n_jobs = 0;
    int64_t total = 0;
    const int64_t k = (*ws.begin())->cols();
    // One quantized copy of x per activation format the matrices need.
    const void* quantized[3] = {x, nullptr, nullptr};
    size_t strides[3] = {size_t(k) * sizeof(float), 0, 0};
    uint64_t ids[3] = {};  // ActRows::id of each quantized copy (x itself: 0): the GEMM packs its tokens once per thread, not per matrix and chunk
    uint8_t* scratch = s.act();
    float* const* y_it = ys;
    const int variant = s.decode_variant;  // 0 unless this is a one-token forward
    for (const TensorView* w : ws) {
        KILN_ASSERT(w->cols() == k, "linear_group: '%s' has %lld columns, expected %lld", w->name, (long long)w->cols(), (long long)k);
        const cpu::MatmulFn fn = s.kt->decode_rows(w->dtype, variant);
        KILN_ASSERT(fn != nullptr, "no %s matmul kernel for %s weights ('%s')", cpu::isa_name(s.kt->isa), dtype_name(w->dtype), w->name);
        const int f = int(cpu::act_format(w->dtype));
        if (!quantized[f]) {
            const size_t bytes = size_t(n) * cpu::act_row_bytes(cpu::ActFormat(f), k);
            KILN_ASSERT(scratch + bytes <= s.act() + s.act.size, "activation scratch too small");
            strides[f] = quantize_rows(*s.kt, pool, cpu::ActFormat(f), x, n, k, scratch);
            quantized[f] = scratch;
            ids[f] = cpu::new_act_id();
            scratch += (bytes + 63) / 64 * 64;
        }
        jobs[n_jobs++] = {w, *y_it++, fn, cpu::ActRows{quantized[f], strides[f], n, ids[f]}, total, w->row_size(), w->data};
        if (const cpu::MatmulFn r16 = r16_kernel(*s.kt, *w, total, variant)) {
            Job& jb = jobs[n_jobs - 1];
            jb.fn = r16;
            jb.stride = w->packed_group_bytes;
            jb.data = w->packed;
        }
        total += w->rows();
    }
    // Each thread takes contiguous slices of the combined rows (multiples of 16, the GEMM
    // panel height); the kernels tile them for the cache.
    auto rows = [&](int64_t b, int64_t e, int) {
        for (int j = 0; j < n_jobs; ++j) {
            const Job& jb = jobs[j];
            const int64_t lo = std::max(b, jb.row0), hi = std::min(e, jb.row0 + jb.w->rows());
            if (lo < hi) jb.fn(k, jb.data, jb.stride, lo - jb.row0, hi - jb.row0, jb.a, jb.y, size_t(jb.w->rows()));
        }
    };
    // Up to 8 tokens the weights stream from memory once: each thread reads its share
    // unbroken and the threads finish together (1.1B decode +1-4%, one process, variants
    // alternated every 4 tokens). Past that the GEMM is compute-bound and takes chunks.
    if (n <= kStreamingTokens) {
        WarmRange warm_ranges[kMaxWarmThreads], *warm = nullptr;  // (pool.size())
        if (s.read_ahead && next.size() && pool.size() <= kMaxWarmThreads) {
            share_starts(*s.kt, next, pool.size(), warm_ranges);
            warm = warm_ranges;
        }
        pool.parallel_for_shares(total, 16, rows, warm);
    } else {
        pool.parallel_for(total, 16, rows);
    }
}

}  // namespace

void linear_group(SessionState& s, ThreadPool& pool, std::initializer_list<const TensorView*> ws, const float* x, int n,
                  std::initializer_list<float*> ys, std::initializer_list<const TensorView*> next, int streamed) {
    KILN_ASSERT(ws.size() == ys.size() && ws.size() <= 4, "linear_group: %zu weights, %zu outputs", ws.size(), ys.size());
    if (s.observer)
        for (const TensorView* w : ws) s.observer->matmul_input(*w, -1, x, n);
    if (streamed < 0 || (streamed == n && n <= kStreamingTokens) || (streamed == 0 && n > kStreamingTokens)) {
        linear_pass(s, pool, ws, x, n, std::data(ys), next);
        return;
    }
    // Rows [0, streamed) in passes of up to kStreamingTokens (the row kernels), the rest in
    // one (the GEMM): each row goes through the kernel it would alone.
    const int64_t k = (*ws.begin())->cols();
    auto pass = [&](int r0, int r1, std::initializer_list<const TensorView*> ahead) {
        float* y[4];  // (ws) each output's rows from r0
        size_t j = 0;
        for (const TensorView* w : ws) y[j] = std::data(ys)[j] + size_t(r0) * size_t(w->rows()), ++j;
        linear_pass(s, pool, ws, x + size_t(r0) * size_t(k), r1 - r0, y, ahead);
    };
    for (int r0 = 0; r0 < streamed; r0 += kStreamingTokens) {
        const int r1 = std::min(streamed, r0 + kStreamingTokens);
        pass(r0, r1, r1 == streamed && streamed == n ? next : std::initializer_list<const TensorView*>{});
    }
    if (streamed < n) pass(streamed, n, {});
}

void linear(SessionState& s, ThreadPool& pool, const TensorView& w, const float* x, int n, float* y,
            std::initializer_list<const TensorView*> next, int streamed) {
    linear_group(s, pool, {&w}, x, n, {y}, next, streamed);
}

}  // namespace kiln
