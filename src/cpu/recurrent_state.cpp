// RecurrentStates: slots of DeltaNet state per sequence (recurrent_state.h).
#include "cpu/recurrent_state.h"

#include <algorithm>
#include <cstring>

namespace kiln {

Status RecurrentStates::allocate(const ModelConfig& c, int n_seq, int rollback, bool with_data) {
    n_rec_ = c.recurrent_index(c.n_layer);  // all the recurrent layers
    if (n_rec_ == 0) return Status::ok();
    if (rollback < 0 || rollback > 256) return Status::error("recurrent rollback %d is outside [0, 256]", rollback);
    slots_ = slots_for(rollback);
    conv_floats_ = size_t(c.ssm_conv_kernel - 1) * size_t(c.ssm_conv_channels());
    layer_floats_ = conv_floats_ + size_t(c.ssm_v_heads) * size_t(c.ssm_state) * size_t(c.ssm_state);
    layer_floats_ = (layer_floats_ + 15) / 16 * 16;  // each layer's block 64-byte aligned
    const size_t total = size_t(n_seq) * size_t(slots_) * size_t(n_rec_) * layer_floats_;
    if (with_data) data_.resize(total);
    if (with_data && !data_.data)
        return Status::error("out of memory allocating the recurrent state (%d sequences x %d snapshots, %.1f MiB)", n_seq, slots_, double(total) * 4 / (1 << 20));
    seqs_.assign(size_t(n_seq), Seq{});
    for (int s = 0; s < n_seq; ++s) {
        seqs_[size_t(s)].length.assign(size_t(slots_), -1);
        seqs_[size_t(s)].age.assign(size_t(slots_), 0);
        truncate(s, 0);
    }
    return Status::ok();
}

int RecurrentStates::find(int seq, int n) const {
    const Seq& s = seqs_[size_t(seq)];
    for (int i = 0; i < slots_; ++i)
        if (s.length[size_t(i)] == n) return i;
    return -1;
}

void RecurrentStates::zero(int seq, int slot) {
    if (!data_.data) return;  // bookkeeping only
    std::memset(layer(seq, slot, 0), 0, size_t(n_rec_) * layer_floats_ * sizeof(float));
}

void RecurrentStates::truncate(int seq, int n) {
    if (empty()) return;
    Seq& s = seqs_[size_t(seq)];
    int slot = find(seq, n);
    if (slot < 0) {  // n == 0: start over in the current slot (or another if it is pinned)
        slot = s.cur == s.pinned ? (s.cur + 1) % slots_ : s.cur;
        zero(seq, slot);
        s.length[size_t(slot)] = 0;
    }
    s.cur = slot;
    for (int i = 0; i < slots_; ++i)  // states past n are no longer on this sequence's path
        if (s.length[size_t(i)] > n && i != s.pinned) s.length[size_t(i)] = -1;
}

void RecurrentStates::fork(int src, int dst, int n) {
    if (empty()) return;
    const int from = n == 0 ? -1 : find(src, n);
    Seq& d = seqs_[size_t(dst)];
    std::fill(d.length.begin(), d.length.end(), -1);
    d.cur = 0, d.pinned = -1;
    if (from < 0) zero(dst, 0);
    else if (data_.data) std::memcpy(layer(dst, 0, 0), layer(src, from, 0), size_t(n_rec_) * layer_floats_ * sizeof(float));
    d.length[0] = n;
}

RecurrentStates::Plan RecurrentStates::plan(int seq, int length, int n) {
    Seq& s = seqs_[size_t(seq)];
    Plan p;
    p.seq = seq, p.in = s.cur, p.length = length + n;
    p.out.assign(size_t(n), -1);
    // The free slots, oldest first; the last min(n, free) tokens get one each.
    std::vector<int> free;  // slots this chunk may write
    for (int i = 0; i < slots_; ++i)
        if (i != s.cur && i != s.pinned) free.push_back(i);
    std::sort(free.begin(), free.end(), [&](int a, int b) { return s.age[size_t(a)] < s.age[size_t(b)]; });
    const int kept = std::min(n, int(free.size()));
    for (int j = 0; j < kept; ++j) {
        const int slot = free[size_t(j)];
        p.out[size_t(n - kept + j)] = slot;
        s.length[size_t(slot)] = -1;
        s.age[size_t(slot)] = ++clock_;
    }
    return p;
}

void RecurrentStates::commit(const Plan& p) {
    Seq& s = seqs_[size_t(p.seq)];
    const int n = int(p.out.size());
    for (int t = 0; t < n; ++t)
        if (p.out[size_t(t)] >= 0) s.length[size_t(p.out[size_t(t)])] = p.length - n + 1 + t;
    s.cur = p.out.back();
}

}  // namespace kiln
