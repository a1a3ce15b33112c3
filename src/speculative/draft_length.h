// The adaptive draft length of the speculative driver (speculative.cpp): each round, the k
// in [k_min, k_max] with the most expected tokens per second, from running estimates of
//  - the drafter's per-token acceptance a (decayed counts: recent text counts most), which
//    makes k drafts yield (1 - a^(k+1)) / (1 - a) tokens;
//  - the seconds a verification of n tokens takes, t[n], each n measured as it is used.
//    Why not a cost per extra token: the curve is not linear and moves with the machine.
//    One token streams the weights from memory; a few more add compute that the stream
//    hides when memory is slow and does not when it is fast (the 1.5B on 2 Zen 4 cores:
//    2 tokens cost 1.05x one at 30 GB/s, 1.4x at 44 GB/s);
//  - the seconds per drafted token.
// k = 0 is plain decoding, chosen when no draft length pays (a weak draft on a fast
// machine). Every kProbe-th round takes the other side, a draft when plain wins and plain
// when drafting wins, so no estimate goes stale.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

namespace kiln {

class DraftLengthModel {
public:
    static constexpr int kMaxN = 16;   // verification sizes tracked: 1 .. kMaxN tokens
    static constexpr int kProbe = 8;   // every kProbe-th round probes the side not chosen

    // t1, t_max: seconds of a one-token verification and one of 1 + k_max tokens (measured
    // before the prefill); sizes in between start on the line through them.
    DraftLengthModel(int k_min, int k_max, double t1, double t_max) : k_min_(k_min), k_max_(std::min(k_max, kMaxN - 1)) {
        for (int n = 1; n <= kMaxN; ++n) t_[size_t(n)] = t1 + (t_max - t1) * (n - 1) / std::max(1, k_max_);
        measured_[1] = measured_[size_t(k_max_ + 1)] = true;
    }

    // The draft length for the next round.
    int next() {
        int k = best();
        if (++round_ % kProbe == 0 && k_min_ == 0) k = k == 0 ? std::max(1, best(1)) : 0;
        return k;
    }

    // A round verified n tokens in verify_s seconds (any drafter: the target's cost).
    void record_verify(int n, double verify_s) {
        if (n < 1 || n > kMaxN || !(verify_s > 0)) return;
        const size_t i = size_t(n);
        t_[i] = measured_[i] ? 0.7 * t_[i] + 0.3 * verify_s : verify_s;
        measured_[i] = true;
    }
    // A round whose drafter pays per token: `drafted` tokens in draft_s seconds (< 0: not
    // a representative time), the first `accepted` of them kept.
    void record_draft(int drafted, int accepted, double draft_s) {
        if (drafted <= 0) return;
        acc_ = 0.9 * acc_ + accepted;
        trials_ = 0.9 * trials_ + accepted + (accepted < drafted ? 1 : 0);
        if (draft_s < 0) return;
        const double per_token = draft_s / drafted;
        draft_s_ = have_draft_ ? 0.8 * draft_s_ + 0.2 * per_token : per_token;
        have_draft_ = true;
    }

    double acceptance() const { return acc_ / trials_; }
    // Seconds of a verification of n tokens: measured, or interpolated between the nearest
    // measured sizes around it.
    double verify_seconds(int n) const {
        n = std::clamp(n, 1, kMaxN);
        if (measured_[size_t(n)]) return t_[size_t(n)];
        int lo = n, hi = n;
        while (lo > 1 && !measured_[size_t(lo)]) --lo;
        while (hi < kMaxN && !measured_[size_t(hi)]) ++hi;
        if (!measured_[size_t(hi)]) return t_[size_t(lo)] * n / lo;
        return t_[size_t(lo)] + (t_[size_t(hi)] - t_[size_t(lo)]) * (n - lo) / (hi - lo);
    }
    // Expected tokens per second with k drafts.
    double rate(int k) const {
        const double a = std::min(acceptance(), 0.999);
        const double tokens = (1 - std::pow(a, k + 1)) / (1 - a);
        return tokens / (verify_seconds(k + 1) + k * (have_draft_ ? draft_s_ : 0.0));
    }

private:
    int best(int from = -1) const {
        int best_k = std::max(from, k_min_);
        for (int k = best_k + 1; k <= k_max_; ++k)
            if (rate(k) > rate(best_k)) best_k = k;
        return best_k;
    }

    int k_min_, k_max_;
    std::array<double, kMaxN + 1> t_{};   // (kMaxN + 1) seconds per verification size; [0] unused
    std::array<bool, kMaxN + 1> measured_{};
    double acc_ = 2, trials_ = 3;          // decayed accepted drafts / acceptance trials (a prior of 2/3)
    double draft_s_ = 0;                   // seconds per drafted token
    bool have_draft_ = false;
    long round_ = 0;
};

}  // namespace kiln
