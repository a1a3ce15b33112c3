// KvPages bookkeeping and KvCache allocation (kv_cache.h).
#include "cpu/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace kiln {

void KvPages::reset(int n_pages, int n_seq) {
    seqs_.assign(size_t(n_seq), Seq{});
    refs_.assign(size_t(n_pages), 0);
    free_.resize(size_t(n_pages));
    for (int i = 0; i < n_pages; ++i) free_[size_t(i)] = n_pages - 1 - i;  // page 0 taken first
}

int32_t KvPages::take() {
    const int32_t p = free_.back();
    free_.pop_back();
    refs_[size_t(p)] = 1;
    return p;
}

void KvPages::release(int32_t page) {
    if (--refs_[size_t(page)] == 0) free_.push_back(page);
}

int KvPages::pages_needed(int seq, int n) const {
    const Seq& s = seqs_[size_t(seq)];
    if (n <= 0) return 0;
    const int have = int(s.pages.size()), want = (s.length + n + kKvPage - 1) / kKvPage;
    const bool copy = s.length % kKvPage && refs_[size_t(s.pages.back())] > 1;
    return want - have + (copy ? 1 : 0);
}

void KvPages::truncate(int seq, int n_keep) {
    Seq& s = seqs_[size_t(seq)];
    const size_t keep = size_t((n_keep + kKvPage - 1) / kKvPage);
    while (s.pages.size() > keep) release(s.pages.back()), s.pages.pop_back();
    s.length = n_keep;
}

void KvPages::fork(int src, int dst, int n) {
    truncate(dst, 0);
    const Seq& from = seqs_[size_t(src)];
    Seq& to = seqs_[size_t(dst)];
    to.pages.assign(from.pages.begin(), from.pages.begin() + (n + kKvPage - 1) / kKvPage);
    for (int32_t p : to.pages) ++refs_[size_t(p)];
    to.length = n;
}

const float* KvCache::rotated(const float* x, int n, float* buf) {
    std::copy(x, x + n, buf);
    cpu::hadamard(buf, n);
    return buf;
}

Status KvCache::reserve(const std::vector<std::pair<int, int>>& appends) {
    int need = 0;
    for (auto [seq, n] : appends) need += seqs.pages_needed(seq, n);
    if (need > seqs.free_pages())
        return Status::error("KV cache full: the batch needs %d more pages of %d positions, %d of %d are free (a larger n_ctx, or fewer sequences)", need, kKvPage,
                             seqs.free_pages(), seqs.n_pages());
    for (auto [seq, n] : appends) seqs.append(seq, n, [&](int from, int to) { copy_page(from, to); });
    return Status::ok();
}

void KvCache::copy_page(int from, int to) {
    for (size_t il = 0; il < k.size(); ++il) {
        if (!k[il].data) continue;  // a recurrent layer
        std::memcpy(k[il].data + size_t(to) * k_page_bytes(), k[il].data + size_t(from) * k_page_bytes(), k_page_bytes());
        std::memcpy(v[il].data + size_t(to) * v_page_bytes(), v[il].data + size_t(from) * v_page_bytes(), v_page_bytes());
    }
}

Status KvCache::allocate(const ModelConfig& c, int n_positions, DType tk, DType tv, bool rotate, int n_seq) {
    for (auto [what, t, dim] : {std::tuple{"K", tk, c.head_dim}, std::tuple{"V", tv, c.head_dim_v}})
        if (!cpu::kv_type_supported(t, dim))
            return Status::error("%s cache type %s is not supported for head size %d (f16, bf16, q8_0, q4_0 or f32; the block types need a multiple of 32)",
                                 what, dtype_name(t), dim);
    if (c.head_dim % 16 || c.head_dim_v % 16 || c.head_dim > 512 || c.head_dim_v > 512)
        return Status::error("head sizes %d/%d are not supported (multiples of 16 up to 512)", c.head_dim, c.head_dim_v);
    if (rotate && !(cpu::is_power_of_two(c.head_dim) && cpu::is_power_of_two(c.head_dim_v)))
        return Status::error("the Hadamard-rotated KV cache needs power-of-two head sizes, this model has %d/%d", c.head_dim, c.head_dim_v);
    if (n_seq < 1) return Status::error("n_seq_max %d must be >= 1", n_seq);
    type_k = tk, type_v = tv, hadamard = rotate;
    n_head_kv = c.n_head_kv, head_dim = c.head_dim, head_dim_v = c.head_dim_v;
    k_panel = cpu::k_panel_bytes(tk, c.head_dim);
    v_row = cpu::v_row_bytes(tv, c.head_dim_v);
    const int n_pages = (n_positions + kKvPage - 1) / kKvPage;
    seqs.reset(n_pages, n_seq);
    k.resize(size_t(c.n_layer));
    v.resize(size_t(c.n_layer));
    for (int il = 0; il < c.n_layer; ++il) {
        if (c.recurrent(il)) continue;  // a DeltaNet layer keeps a recurrent state instead (recurrent_state.h)
        AlignedBuffer<uint8_t>& K = k[size_t(il)];
        AlignedBuffer<uint8_t>& V = v[size_t(il)];
        K.resize(size_t(n_pages) * k_page_bytes());
        V.resize(size_t(n_pages) * v_page_bytes());
        if (!K.data || !V.data)
            return Status::error("out of memory allocating the KV cache (%d positions, %.1f MiB)", n_positions,
                                 double(c.n_layer - c.recurrent_index(c.n_layer)) * double(k_page_bytes() + v_page_bytes()) * n_pages / (1 << 20));
        std::memset(K.data, 0, K.size), std::memset(V.data, 0, V.size);  // finite values in unused tile tails
    }
    return Status::ok();
}

}  // namespace kiln
