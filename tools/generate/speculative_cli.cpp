#include "speculative_cli.h"

#include <chrono>
#include <cstdio>

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// --spec-compare: plain decoding interleaved with the speculative run. After each token the
// speculative run emits, a second target session decodes it one forward at a time, as plain
// decoding would (sample from its logits, then forward the token), so the two rates are
// measured seconds apart in the same state of the machine (a shared VM's memory bandwidth
// drifts by tens of percent between minutes). At --temp 0 each plain pick must be the
// speculative run's token: the equality check and the timing come from the same run.
class ShadowPlain {
public:
    static kiln::Expected<std::unique_ptr<ShadowPlain>> start(std::shared_ptr<const kiln::Model> model, const kiln::SessionOptions& so,
                                                              const std::vector<int32_t>& prompt, const kiln::SamplerParams& sampling) {
        auto s = kiln::Session::create(model, so);
        if (!s) return kiln::Status(s.status());
        std::unique_ptr<ShadowPlain> p(new ShadowPlain(std::move(s.value()), sampling));
        for (int32_t t : prompt) p->sampler_.accept(t);
        KILN_TRY(p->s_->forward(prompt));
        return p;
    }
    // The speculative run emitted t: decode the previous token, then pick as plain decoding.
    kiln::Status push(int32_t t) {
        int32_t pick = -1;
        KILN_TRY(step(&pick));
        same_ = same_ && pick == t;
        sampler_.accept(t);
        prev_ = t;
        ++n_;
        return kiln::Status::ok();
    }
    // The speculative run stopped at an end-of-generation token: plain decoding would have
    // run one more forward to see it.
    kiln::Status finish_at_eog() {
        int32_t pick = -1;
        KILN_TRY(step(&pick));
        same_ = same_ && s_->model().tokenizer().is_eog(pick);
        return kiln::Status::ok();
    }
    double decode_tps() const { return decode_s_ > 0 && n_ > 1 ? (n_ - 1) / decode_s_ : 0; }
    bool same() const { return same_; }  // every pick equal (meaningful at --temp 0)

private:
    // One plain decoding step, timed: forward the previous token (none after the prompt), pick the next.
    kiln::Status step(int32_t* pick) {
        auto t0 = Clock::now();
        if (prev_ >= 0) KILN_TRY(s_->forward(std::span<const int32_t>(&prev_, 1)));
        *pick = sampler_.sample(s_->logits());
        decode_s_ += seconds_since(t0);
        return kiln::Status::ok();
    }
    ShadowPlain(std::unique_ptr<kiln::Session> s, const kiln::SamplerParams& p) : s_(std::move(s)), sampler_(p, s_->model().config().n_vocab) {}
    std::unique_ptr<kiln::Session> s_;
    kiln::Sampler sampler_;
    int32_t prev_ = -1;
    int n_ = 0;
    double decode_s_ = 0;
    bool same_ = true;
};

}  // namespace

kiln::Status run_speculative(std::shared_ptr<const kiln::Model> model, kiln::Session& s, const kiln::SessionOptions& so_in, kiln::Sampler& sampler,
                             const std::vector<int32_t>& prompt, const GenerateArgs& a, std::vector<int32_t>* out_tokens, std::string* out_text,
                             SpecRun* run) {
    kiln::SessionOptions so = so_in;  // for the calibration and the --spec-compare run
    so.n_ctx = s.n_ctx();
    so.pool = s.shared_pool();  // every session here runs in turn with the target: one pool, no workers spinning against each other

    kiln::DraftModelOptions dopt;
    dopt.n_ctx = a.ctx_draft;
    dopt.n_threads = a.session.n_threads;
    dopt.pool = s.shared_pool();
    dopt.p_min = a.draft_p_min;
    dopt.head_size = a.draft_head;
    dopt.sampling = a.sampling;
    std::unique_ptr<kiln::Drafter> drafter;
    nlohmann::json j;
    double calib_s = 0;
    if (a.lookup_alone()) {
        drafter = kiln::make_lookup_drafter(a.lookup_ngram);
    } else if (a.self_spec) {
        dopt.skip_layers = a.skip_layers;
        if (dopt.skip_layers.empty()) {
            auto t0 = Clock::now();
            auto cal = kiln::calibrate_skip_layers(model, std::span<const int32_t>(prompt).first(std::min<size_t>(prompt.size(), 128)), so);
            if (!cal) return kiln::Status(cal.status());
            calib_s = seconds_since(t0);
            dopt.skip_layers = cal.value().skip_layers;
            dopt.head_tokens = cal.value().head_tokens;
            const int head = dopt.head_tokens.empty() ? model->config().n_vocab : int(dopt.head_tokens.size());
            j["calibration"] = {{"skip_layers", dopt.skip_layers}, {"head_tokens", head}, {"agreement", cal.value().agreement},
                                {"est_speedup", cal.value().est_speedup}, {"seconds", calib_s}};
            if (dopt.skip_layers.empty() && dopt.head_tokens.empty())
                return kiln::Status::error("self-speculation calibration found no layer to skip on this prompt; pass --skip-layers");
            std::string list;
            for (int il : dopt.skip_layers) {
                if (!list.empty()) list.push_back(',');
                list.append(std::to_string(il));
            }
            if (!a.quiet)
                std::fprintf(stderr,
                             "kiln-generate: self-speculation calibrated in %.2f s: layers skipped: %s (%zu of %d), output head of %d tokens, top-1 agreement "
                             "%.2f, estimated %.2fx%s\n",
                             calib_s, list.empty() ? "none" : list.c_str(), dopt.skip_layers.size(), model->config().n_layer, head, cal.value().agreement,
                             cal.value().est_speedup,
                             cal.value().est_speedup < 1 ? ": not expected to pay here" : "");
        }
        auto d = kiln::make_model_drafter(model, *model, s.n_ctx(), dopt);
        if (!d) return kiln::Status(d.status());
        drafter = std::move(d.value());
    } else {
        kiln::LoadOptions lo;
        lo.use_mmap = a.load.use_mmap;
        lo.repack = a.load.repack;
        auto dm = kiln::Model::load(a.model_draft, lo);
        if (!dm) return kiln::Status(dm.status());
        if (a.pard) {
            dopt.pard_mask_id = a.pard_mask_id;
            if (dopt.pard_mask_id < 0) {
                auto id = kiln::pard_mask_id(*dm.value());
                if (!id) return kiln::Status(id.status());
                dopt.pard_mask_id = id.value();
            }
        }
        auto d = kiln::make_model_drafter(dm.value(), *model, s.n_ctx(), dopt);
        if (!d) return kiln::Status(d.status());
        drafter = std::move(d.value());
        if (!a.pard && a.lookup_ngram != 0)  // prompt lookup in front of the draft model
            drafter = kiln::make_hybrid_drafter(kiln::make_lookup_drafter(a.lookup_ngram > 0 ? a.lookup_ngram : kiln::kHybridLookupMax, kiln::kHybridLookupMin),
                                                std::move(drafter));
    }

    std::unique_ptr<ShadowPlain> plain;
    if (a.spec_compare) {
        auto p = ShadowPlain::start(model, so, prompt, a.sampling);
        if (!p) return kiln::Status(p.status());
        plain = std::move(p.value());
    }

    kiln::SpecOptions o;
    o.draft_max = a.draft_max;
    o.draft_min = a.draft_min;
    o.adaptive = a.adaptive_draft;
    o.n_predict = a.n_predict;
    o.ignore_eos = a.ignore_eos;
    kiln::TokenStreamDecoder stream(model->tokenizer());
    kiln::SpecStats st;
    kiln::Status shadow = kiln::Status::ok();
    double shadow_s = 0;  // time the interleaved plain decoding took inside the callback
    KILN_TRY(kiln::speculative_generate(s, sampler, *drafter, prompt, o, [&](int32_t t) {
        if (plain) {
            auto t0 = Clock::now();
            shadow = plain->push(t);
            shadow_s += seconds_since(t0);
            if (!shadow.is_ok()) return false;
        }
        out_tokens->push_back(t);
        std::string piece = stream.push(t);
        *out_text += piece;
        if (!a.json && !piece.empty()) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        }
        return true;
    }, &st));
    KILN_TRY(shadow);
    if (plain && st.eog) {
        auto t0 = Clock::now();
        KILN_TRY(plain->finish_at_eog());
        shadow_s += seconds_since(t0);
    }
    st.decode_s -= shadow_s;  // the speculative run's own time
    std::string rest = stream.flush();
    *out_text += rest;
    if (!a.json) std::fwrite(rest.data(), 1, rest.size(), stdout);
    if (s.n_past() >= s.n_ctx() && (a.n_predict < 0 || st.n_generated < a.n_predict) && !a.quiet)
        std::fprintf(stderr, "\nkiln-generate: context full (%d tokens), stopping\n", s.n_ctx());

    run->prefill_s = st.prefill_s;
    run->decode_s = st.decode_s;
    run->n_prompt = st.n_prompt;
    run->n_gen = st.n_generated;
    std::vector<double> by_pos;
    for (int i = 0; i < kiln::kMaxDraft && st.drafted_at[i] > 0; ++i) by_pos.push_back(double(st.accepted_at[i]) / st.drafted_at[i]);
    j["drafter"] = drafter->name();
    j["drafted"] = st.n_drafted;
    j["accepted"] = st.n_accepted;
    j["acceptance_rate"] = st.acceptance_rate();
    j["rounds"] = st.n_rounds;
    j["mean_accepted"] = st.mean_accepted();
    j["verify_token_cost"] = st.verify_token_cost;
    j["tokens_per_round"] = st.n_rounds ? double(st.n_generated - 1) / st.n_rounds : 0;
    j["acceptance_by_position"] = by_pos;
    j["draft_s"] = st.draft_s;
    j["verify_s"] = st.verify_s;
    j["decode_tps"] = st.decode_tps();
    if (plain) {
        j["plain_decode_tps"] = plain->decode_tps();
        j["speedup"] = plain->decode_tps() > 0 ? st.decode_tps() / plain->decode_tps() : 0;
        j["same_as_plain"] = plain->same();
    }
    run->stats = j;
    if (!a.quiet) {
        std::string pos;
        for (double r : by_pos) pos += kiln::strfmt(" %.2f", r);
        std::fprintf(stderr, "\nkiln-generate: speculative (%s): drafted %d, accepted %d (%.1f%%), %d rounds, %.2f accepted per round; by position:%s\n",
                     drafter->name().c_str(), st.n_drafted, st.n_accepted, 100 * st.acceptance_rate(), st.n_rounds, st.mean_accepted(), pos.c_str());
        std::fprintf(stderr, "kiln-generate: draft %.3f s, verify %.3f s", st.draft_s, st.verify_s);
        if (plain)
            std::fprintf(stderr, "; plain decoding (interleaved) %.1f t/s, speculative %.1f t/s: %.2fx%s", plain->decode_tps(), st.decode_tps(),
                         plain->decode_tps() > 0 ? st.decode_tps() / plain->decode_tps() : 0.0,
                         a.sampling.temperature <= 0 ? (plain->same() ? " (same tokens)" : " (TOKENS DIFFER)") : "");
        std::fputc('\n', stderr);
    }
    return kiln::Status::ok();
}
