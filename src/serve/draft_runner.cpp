// DraftRunner (draft_runner.h): batched greedy drafting with a draft model for the Engine.
#include "serve/draft_runner.h"

#include <algorithm>

#include "kiln/speculative.h"

namespace kiln {

Expected<std::unique_ptr<DraftRunner>> DraftRunner::create(std::shared_ptr<const Model> draft, const Model& target, const Session& target_session) {
    KILN_TRY(check_vocab_compatible(target, *draft));
    SessionOptions so;
    so.n_ctx = target_session.n_ctx();
    so.n_seq_max = target_session.n_seq_max();
    so.pool = target_session.shared_pool();  // the two run alternately: one pool, no spinning twins
    auto s = Session::create(draft, so);
    if (!s) return s.status().with_context("draft model");
    std::unique_ptr<DraftRunner> r(new DraftRunner());
    r->n_vocab_ = draft->config().n_vocab;
    r->session_ = std::move(s.value());
    return r;
}

void DraftRunner::truncate(int seq, int n_keep) {
    if (session_->seq_length(seq) <= n_keep) return;
    // A hybrid draft keeps its recurrent state at a few lengths only: else start over.
    (void)session_->seq_truncate(seq, session_->seq_can_keep(seq, n_keep) ? n_keep : 0);
}

void DraftRunner::fork(int src, int dst, int n) {
    n = std::min(n, session_->seq_length(src));
    (void)session_->seq_fork(src, dst, session_->seq_can_keep(src, n) ? n : 0);
}

void DraftRunner::remove(int seq) { (void)session_->seq_remove(seq); }

Status DraftRunner::draft(std::vector<DraftJob>& jobs) {
    auto in_vocab = [&](int32_t t) { return t >= 0 && t < n_vocab_; };
    // First pass: each job's missing held tokens and its pending token (logits on the last).
    Batch batch;
    std::vector<DraftJob*> live;  // (jobs drafting) in batch order of their logits rows
    std::vector<int> row;         // (live) the batch row of each live job's logits
    for (DraftJob& j : jobs) {
        j.out.clear();
        const int have = session_->seq_length(j.seq), held = int(j.held->size());
        if (j.n_max <= 0 || have > held || !in_vocab(j.pending) ||
            !std::all_of(j.held->begin() + have, j.held->end(), in_vocab)) {
            truncate(j.seq, 0);  // (a sequence the draft cannot follow starts over next time)
            continue;
        }
        for (int p = have; p < held; ++p) batch.add((*j.held)[size_t(p)], j.seq, p, false);
        batch.add(j.pending, j.seq, held, true);
        live.push_back(&j);
        row.push_back(batch.size() - 1);
    }
    // Each pass: the argmax after each live job's last token, fed back in the next pass.
    while (!live.empty()) {
        KILN_TRY(session_->decode(batch));
        Batch next;
        std::vector<DraftJob*> still;
        std::vector<int> next_row;
        for (size_t k = 0; k < live.size(); ++k) {
            DraftJob& j = *live[k];
            const float* l = session_->batch_logits(row[k]);
            const int32_t t = int32_t(std::max_element(l, l + n_vocab_) - l);
            j.out.push_back(t);
            if (int(j.out.size()) < j.n_max) {
                next.add(t, j.seq, session_->seq_length(j.seq), true);
                still.push_back(&j);
                next_row.push_back(next.size() - 1);
            }
        }
        batch = std::move(next);
        live = std::move(still);
        row = std::move(next_row);
    }
    return Status::ok();
}

}  // namespace kiln
