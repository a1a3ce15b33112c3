// The CPU KV cache: a pool of fixed pages shared by many sequences.
//
// A page holds kKvPage consecutive positions of one sequence, for every layer and KV
// head, in the layouts of kernels/cpu/kv_layout.h. A page is one attention tile, so the
// attention kernel reads a tile from one page and a sequence's page table is all it needs
// to find its keys: sequences grow a page at a time, drop pages when truncated or removed,
// and a fork shares its parent's pages (copy-on-write: the first write into a shared,
// partly filled page copies it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/aligned_buffer.h"
#include "cpu/kernels.h"
#include "kiln/model.h"
#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

constexpr int kKvPage = cpu::kAttnTile;  // positions per page: one attention tile
static_assert(kKvPage == kKvPagePositions, "the public page size is the attention tile");

// The pages of every sequence and who holds them; no KV data (the Vulkan backend, which
// keeps its cache on the device, tracks its one sequence with this too).
class KvPages {
public:
    // n_pages pages for sequence ids [0, n_seq).
    void reset(int n_pages, int n_seq);
    int n_seq() const { return int(seqs_.size()); }
    int n_pages() const { return int(refs_.size()); }
    int free_pages() const { return int(free_.size()); }
    int length(int seq) const { return seqs_[size_t(seq)].length; }
    // (ceil(length / kKvPage)) the page of each tile of positions of a sequence.
    const int32_t* pages(int seq) const { return seqs_[size_t(seq)].pages.data(); }
    int page_of(int seq, int pos) const { return seqs_[size_t(seq)].pages[size_t(pos / kKvPage)]; }

    // Pages appending n positions to seq would take from the pool (new pages, plus a copy
    // of a shared partly filled last page).
    int pages_needed(int seq, int n) const;
    // Makes room for positions [length, length + n) and sets the length to length + n.
    // The caller checked pages_needed against free_pages(). copy(from, to) copies a shared
    // page before it is written.
    template <class CopyPage>
    void append(int seq, int n, CopyPage&& copy);
    // Keeps positions [0, n_keep) of seq; the pages past them go back to the pool.
    void truncate(int seq, int n_keep);
    // dst (emptied first) shares src's first n positions.
    void fork(int src, int dst, int n);

private:
    struct Seq {
        std::vector<int32_t> pages;  // (ceil(length / kKvPage)) page ids, one per tile of positions
        int length = 0;
    };
    std::vector<Seq> seqs_;        // (n_seq)
    std::vector<int32_t> refs_;    // (n_pages) sequences holding each page
    std::vector<int32_t> free_;    // unused page ids, taken from the back
    int32_t take();
    void release(int32_t page);
};

// KV data for a KvPages pool. Per layer, K is (n_pages, n_head_kv, kKvPage / kKvPanel)
// panels of k_panel bytes and V is (n_pages, n_head_kv, kKvPage) rows of v_row bytes. The
// memory starts zeroed, so a tile's unwritten tail holds finite numbers (the kernel masks
// those positions, and 0 * finite adds nothing).
struct KvCache {
    DType type_k = DType::F16, type_v = DType::F16;
    int n_head_kv = 0, head_dim = 0, head_dim_v = 0;
    size_t k_panel = 0, v_row = 0;             // bytes of one K panel / one V row
    std::vector<AlignedBuffer<uint8_t>> k, v;  // [layer], empty for the recurrent layers of a hybrid model
    KvPages seqs;
    bool hadamard = false;  // entries stored rotated (SessionOptions::kv_hadamard)
    cpu::ToF16Fn to_f16 = nullptr;  // the session's kernel table's fp16 conversion (F16 entries)

    size_t k_page_bytes() const { return size_t(n_head_kv) * (kKvPage / cpu::kKvPanel) * k_panel; }
    size_t v_page_bytes() const { return size_t(n_head_kv) * kKvPage * v_row; }
    // The K panels (kKvPage / kKvPanel of them) and V rows (kKvPage) of one page and head.
    uint8_t* k_tile(int layer, int page, int head) const { return k[size_t(layer)].data + size_t(page) * k_page_bytes() + size_t(head) * (kKvPage / cpu::kKvPanel) * k_panel; }
    uint8_t* v_tile(int layer, int page, int head) const { return v[size_t(layer)].data + size_t(page) * v_page_bytes() + size_t(head) * kKvPage * v_row; }

    // Writes one head's key and value at position pos of sequence seq (its page exists).
    void store(int layer, int head, int seq, int pos, const float* key, const float* value) {
        float k_rot[512], v_rot[512];  // head sizes are at most 512 (allocate checks)
        if (hadamard) key = rotated(key, head_dim, k_rot), value = rotated(value, head_dim_v, v_rot);
        const int page = seqs.page_of(seq, pos), slot = pos % kKvPage;
        cpu::store_k(type_k, key, head_dim, k_tile(layer, page, head) + size_t(slot / cpu::kKvPanel) * k_panel, slot % cpu::kKvPanel, to_f16);
        cpu::store_v(type_v, value, head_dim_v, v_tile(layer, page, head), v_row, slot, to_f16);
    }
    static const float* rotated(const float* x, int n, float* buf);
    // Fails (changing nothing) unless every (seq, n) append fits in the free pages.
    Status reserve(const std::vector<std::pair<int, int>>& appends);
    void copy_page(int from, int to);
    size_t bytes_per_position() const {
        const auto cached = std::count_if(k.begin(), k.end(), [](const AlignedBuffer<uint8_t>& b) { return b.data != nullptr; });
        return size_t(cached) * size_t(n_head_kv) * (k_panel / cpu::kKvPanel + v_row);
    }

    // n_layer layers of ceil(n_positions / kKvPage) pages for n_seq sequences, zeroed.
    Status allocate(const ModelConfig& c, int n_positions, DType type_k, DType type_v, bool hadamard = false, int n_seq = 1);
};

template <class CopyPage>
void KvPages::append(int seq, int n, CopyPage&& copy) {
    Seq& s = seqs_[size_t(seq)];
    if (n <= 0) return;
    if (s.length % kKvPage && refs_[size_t(s.pages.back())] > 1) {  // shared partly filled page: copy before writing
        const int32_t own = take();
        copy(s.pages.back(), own);
        release(s.pages.back());
        s.pages.back() = own;
    }
    s.length += n;
    while (int(s.pages.size()) * kKvPage < s.length) s.pages.push_back(take());
}

}  // namespace kiln
