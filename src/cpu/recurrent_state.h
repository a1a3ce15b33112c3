// The recurrent state of a hybrid model's gated DeltaNet layers, per sequence, with the
// snapshots that let a sequence be truncated back (rejected drafts, a shorter shared
// prefix) without recomputing the tokens it keeps.
//
// Each sequence has `slots` slots; a slot holds, for every recurrent layer, the conv window
// (the last conv_kernel - 1 inputs) and the DeltaNet state, as of one sequence length. A
// chunk of n tokens reads the slot at the sequence's length and writes the states after its
// last min(n, slots - 1) tokens into the other slots, oldest first: the delta-rule kernel
// writes its output state into a slot instead of in place, so keeping them costs no copy.
// Truncating to a length some slot holds selects that slot; 0 restarts from zeros.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kiln/model.h"
#include "kiln/status.h"
#include "runtime/aligned_buffer.h"

namespace kiln {

class RecurrentStates {
public:
    // Which slot a chunk of a sequence reads and which it writes after each token.
    struct Plan {
        int seq = 0;
        int in = 0;            // slot of the state before the chunk
        std::vector<int> out;  // (n) slot written after token t, -1: not kept (the last token always is)
        int length = 0;        // the sequence's length after the chunk
    };

    // State for n_seq sequences of a model whose recurrent layers are those of c (none: an
    // empty store); a sequence can go back by up to `rollback` tokens. with_data false: the
    // bookkeeping only (a device holds the states; an empty state is a length-0 slot there).
    Status allocate(const ModelConfig& c, int n_seq, int rollback, bool with_data = true);
    // Slots per sequence for a rollback: one for each kept state, the current one, and the one
    // pin() holds during a several-chunk decode() (a device's state buffers have as many).
    static int slots_for(int rollback) { return std::max(rollback, 1) + 2; }
    bool empty() const { return n_rec_ == 0; }
    int rollback() const { return slots_ - 2; }

    // (conv_kernel - 1, conv channels) the conv window of slot `slot` of seq, recurrent layer
    // rl (ModelConfig::recurrent_index).
    float* conv(int seq, int slot, int rl) const { return layer(seq, slot, rl); }
    // (v_heads, state, state) the DeltaNet state: per value head, row j = value dim j over the key dims.
    float* ssm(int seq, int slot, int rl) const { return layer(seq, slot, rl) + conv_floats_; }

    // True when seq can be truncated to n tokens (a slot holds length n, or n == 0).
    bool can_keep(int seq, int n) const { return n == 0 || find(seq, n) >= 0; }
    void truncate(int seq, int n);     // can_keep(seq, n) checked
    void fork(int src, int dst, int n);  // dst = src truncated to n; can_keep(src, n) checked
    // The slots a chunk of n tokens of seq (now of length `length`) reads and writes; the
    // slots it will write stop holding their old lengths. The pinned slot is never written.
    Plan plan(int seq, int length, int n);
    void commit(const Plan& p);  // the chunk ran: its states are the sequence's
    // Keeps seq's current slot from being overwritten until unpin (a decode() of several
    // chunks can then be undone).
    void pin(int seq) {
        if (!empty()) seqs_[size_t(seq)].pinned = seqs_[size_t(seq)].cur;
    }
    void unpin(int seq) {
        if (!empty()) seqs_[size_t(seq)].pinned = -1;
    }

private:
    struct Seq {
        std::vector<int> length;  // (slots) the sequence length each slot's state is at, -1: none
        std::vector<long> age;    // (slots) when each slot was last written (the oldest is reused first)
        int cur = 0, pinned = -1;
    };
    int n_rec_ = 0, slots_ = 0;
    size_t conv_floats_ = 0, layer_floats_ = 0;  // per recurrent layer: conv window, conv window + state
    std::vector<Seq> seqs_;          // (n_seq)
    long clock_ = 0;
    AlignedBuffer<float> data_;      // (n_seq, slots, n_rec, layer_floats)

    float* layer(int seq, int slot, int rl) const {
        return data_.data + ((size_t(seq) * size_t(slots_) + size_t(slot)) * size_t(n_rec_) + size_t(rl)) * layer_floats_;
    }
    int find(int seq, int n) const;
    void zero(int seq, int slot);
};

}  // namespace kiln
