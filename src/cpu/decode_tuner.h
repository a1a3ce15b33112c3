// Which of n kernel variants one-token forwards use, chosen by timing them now and then.
// The variants are the decode kernels' weight-prefetch distances (KernelTable::
// decode_rows / decode_r16): which is fastest depends on the bandwidth memory gives at the
// moment (on a shared VM it changes minute to minute), not on the model alone. All compute
// the same bits, so the choice moves speed only.
#pragma once

#include <algorithm>

namespace kiln {

class DecodeTuner {
public:
    explicit DecodeTuner(int n_variants = 2) : n_(std::max(1, n_variants)) { pick_candidate(); }

    // The variant the next one-token forward runs with, in [0, n).
    int next() const { return trialing() && is_trial_alt(i_) ? candidate_ : current_; }
    // The time of the forward just run with next()'s variant.
    void record(double seconds) {
        if (trialing()) {
            (next() == current_ ? t_cur_ : t_cand_) += seconds;
            if (i_ == kTrialTokens - 1) finish_trial();
        }
        if (++i_ == kPeriod) {
            i_ = 0;
            ++period_;
            pick_candidate();
        }
    }
    int current() const { return current_; }
    // This period's challenger, or -1 when the period has no trial.
    int candidate() const { return candidate_; }

    // Every kPeriod tokens, the first kTrialTokens run in pairs as current, candidate,
    // candidate, current, ... (so a drift in speed over the trial weighs on both alike); the
    // candidate replaces the current one when it took less time by more than kMargin. Each
    // trial has the next variant in turn as its candidate. After a trial whose candidate lost
    // by more than kClearLoss the tuner sits out 1 period, after the next such loss in a row
    // 2, then 4, ... up to kMaxWait. Why: on a Xeon the three variants without an L2 stream
    // are ~10% slower (README, the L2 stream's gain), so a trial in every period, 4 of its
    // 64 tokens on the loser, cost ~0.6% of decode for nothing; with the waits, trials come
    // in periods 0, 2, 5, 10, 19, 36, then every 17th. A close result or a switch makes every
    // period a trial again.
    static constexpr int kPeriod = 64, kTrialTokens = 8, kMaxWait = 16;
    static constexpr double kMargin = 0.01, kClearLoss = 0.05;

private:
    static bool is_trial_alt(int i) { return ((i / 2) % 4 == 1) || ((i / 2) % 4 == 2); }
    bool trialing() const { return candidate_ >= 0 && i_ < kTrialTokens; }

    // The first variant from from_ on (cyclically) that is not the current one, if a trial is due.
    void pick_candidate() {
        candidate_ = -1;
        for (int j = 0; j < n_ && candidate_ < 0 && period_ >= due_; ++j)
            if (const int v = (from_ + j) % n_; v != current_) candidate_ = v;
    }
    void finish_trial() {
        const int cand = candidate_;
        if (t_cand_ < t_cur_ * (1.0 - kMargin)) {
            wait_ = 0;
            from_ = current_ + 1;  // the next turn starts after the loser
            current_ = cand;
        } else {
            wait_ = t_cand_ > t_cur_ * (1.0 + kClearLoss) ? std::clamp(2 * wait_, 1, kMaxWait) : 0;
            from_ = cand + 1;
        }
        due_ = period_ + 1 + wait_;
        t_cur_ = t_cand_ = 0;
    }

    int n_;
    int candidate_ = -1;   // the variant this period's trial times against the current one, or -1
    int current_ = 0;      // variant outside trials; starts with 0 (the kernels' default)
    int from_ = 1;         // where the turn of the next candidate starts
    int i_ = 0;            // position in the period
    long period_ = 0;      // periods so far
    int wait_ = 0;         // periods sat out after the last trial: 0, or 1, 2, 4, ... after clear losses in a row
    long due_ = 0;         // the first period of the next trial
    double t_cur_ = 0, t_cand_ = 0;  // seconds of this trial's tokens on each
};

}  // namespace kiln
