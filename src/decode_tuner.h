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
    explicit DecodeTuner(int n_variants = 2) : n_(std::max(1, n_variants)), candidate_(n_ > 1 ? 1 : 0) {}

    // The variant the next one-token forward runs with, in [0, n).
    int next() const { return n_ > 1 && i_ < kTrialTokens && is_trial_alt(i_) ? candidate_ : current_; }
    // The time of the forward just run with next()'s variant.
    void record(double seconds) {
        if (n_ > 1 && i_ < kTrialTokens) {
            (next() == current_ ? t_cur_ : t_cand_) += seconds;
            if (i_ == kTrialTokens - 1) {
                const int loser = t_cand_ < t_cur_ * (1.0 - kMargin) ? current_ : candidate_;
                current_ = loser == current_ ? candidate_ : current_;
                candidate_ = other_after(loser);  // the next trial's challenger: the variants in turn
                t_cur_ = t_cand_ = 0;
            }
        }
        i_ = (i_ + 1) % kPeriod;
    }
    int current() const { return current_; }
    int candidate() const { return candidate_; }

    // Every kPeriod tokens, the first kTrialTokens run in pairs as current, candidate,
    // candidate, current, ... (so a drift in speed over the trial weighs on both alike); the
    // candidate replaces the current one when it took less time by more than kMargin. Each
    // trial has the next variant in turn as its candidate.
    static constexpr int kPeriod = 64, kTrialTokens = 8;
    static constexpr double kMargin = 0.01;

private:
    static bool is_trial_alt(int i) { return ((i / 2) % 4 == 1) || ((i / 2) % 4 == 2); }
    // The first variant after v (cyclically) that is not the current one.
    int other_after(int v) const {
        int c = (v + 1) % n_;
        if (c == current_) c = (c + 1) % n_;
        return c;
    }
    int n_;
    int candidate_;      // the variant the current trial times against it
    int i_ = 0;          // position in the period
    int current_ = 0;    // variant outside trials; starts with 0 (the kernels' default)
    double t_cur_ = 0, t_cand_ = 0;  // seconds of this trial's tokens on each
};

}  // namespace kiln
