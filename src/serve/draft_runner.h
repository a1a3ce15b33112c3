// DraftRunner: a draft model beside the Engine's session, drafting greedily for many
// sequences at once (one batched draft forward per drafted position). Each engine sequence
// has a draft sequence of the same id that holds a prefix of the target's tokens: it is
// caught up lazily (the target's tokens it lacks are fed in the next drafting pass) and
// follows the target's truncations, forks and removals, so prefix-cache hits carry over.
#pragma once

#include <memory>
#include <vector>

#include "kiln/model.h"
#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

struct DraftJob {
    int seq = 0;
    const std::vector<int32_t>* held = nullptr;  // the tokens the target's KV cache holds for seq
    int32_t pending = 0;                         // the token the target feeds next
    int n_max = 0;                               // drafts wanted
    std::vector<int32_t> out;                    // the drafts (greedy), up to n_max
};

class DraftRunner {
public:
    // A session of `draft` with the target session's context, sequence count and thread pool.
    static Expected<std::unique_ptr<DraftRunner>> create(std::shared_ptr<const Model> draft, const Model& target, const Session& target_session);

    // Mirrors of the target's sequence operations.
    void truncate(int seq, int n_keep);
    void fork(int src, int dst, int n);
    void remove(int seq);

    // Drafts for every job: catches each sequence up with its held tokens and the pending
    // one, then proposes up to n_max tokens, all jobs in one forward per position. A job
    // whose history has a token the draft's vocabulary lacks gets no drafts.
    Status draft(std::vector<DraftJob>& jobs);

private:
    std::unique_ptr<Session> session_;
    int n_vocab_ = 0;
};

}  // namespace kiln
