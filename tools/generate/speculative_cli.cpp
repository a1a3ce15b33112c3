#include "speculative_cli.h"

#include <chrono>
#include <cstdio>

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Plain {
    std::vector<int32_t> tokens;
    double decode_tps = 0;
};

// Plain decoding on a fresh session, for --spec-compare (same stopping rules).
kiln::Expected<Plain> run_plain(std::shared_ptr<const kiln::Model> model, const kiln::SessionOptions& so, const std::vector<int32_t>& prompt,
                                const GenerateArgs& a) {
    auto s = kiln::Session::create(model, so);
    if (!s) return kiln::Status(s.status());
    kiln::Session& ss = *s.value();
    kiln::Sampler sampler(a.sampling, model->config().n_vocab);
    for (int32_t t : prompt) sampler.accept(t);
    KILN_TRY(ss.forward(prompt));
    Plain p;
    auto t0 = Clock::now();
    for (int i = 0; a.n_predict < 0 || i < a.n_predict; ++i) {
        const int32_t next = sampler.sample(ss.logits());
        sampler.accept(next);
        if (!a.ignore_eos && model->tokenizer().is_eog(next)) break;
        p.tokens.push_back(next);
        if ((a.n_predict >= 0 && i + 1 == a.n_predict) || ss.n_past() >= ss.n_ctx()) break;
        KILN_TRY(ss.forward(std::span<const int32_t>(&next, 1)));
    }
    const double dt = seconds_since(t0);
    p.decode_tps = dt > 0 && p.tokens.size() > 1 ? double(p.tokens.size() - 1) / dt : 0;
    return p;
}

}  // namespace

kiln::Status run_speculative(std::shared_ptr<const kiln::Model> model, kiln::Session& s, const kiln::SessionOptions& so_in, kiln::Sampler& sampler,
                             const std::vector<int32_t>& prompt, const GenerateArgs& a, std::vector<int32_t>* out_tokens, std::string* out_text,
                             SpecRun* run) {
    kiln::SessionOptions so = so_in;  // for the calibration and the --spec-compare run
    so.n_ctx = s.n_ctx();
    so.pool = s.shared_pool();  // every session here runs in turn with the target: one pool, no workers spinning against each other

    kiln::DraftModelOptions dopt;
    dopt.n_ctx = a.ctx_draft;
    dopt.n_threads = a.n_threads;
    dopt.pool = s.shared_pool();
    dopt.p_min = a.draft_p_min;
    dopt.sampling = a.sampling;
    std::unique_ptr<kiln::Drafter> drafter;
    nlohmann::json j;
    double calib_s = 0;
    if (a.lookup_ngram > 0) {
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
        lo.use_mmap = a.use_mmap;
        lo.repack = a.repack;
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
    }

    Plain plain;
    if (a.spec_compare) {
        auto p = run_plain(model, so, prompt, a);
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
    KILN_TRY(kiln::speculative_generate(s, sampler, *drafter, prompt, o, [&](int32_t t) {
        out_tokens->push_back(t);
        std::string piece = stream.push(t);
        *out_text += piece;
        if (!a.json && !piece.empty()) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        }
        return true;
    }, &st));
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
    if (a.spec_compare) {
        j["plain_decode_tps"] = plain.decode_tps;
        j["speedup"] = plain.decode_tps > 0 ? st.decode_tps() / plain.decode_tps : 0;
        j["same_as_plain"] = plain.tokens == *out_tokens;
    }
    run->stats = j;
    if (!a.quiet) {
        std::string pos;
        for (double r : by_pos) pos += kiln::strfmt(" %.2f", r);
        std::fprintf(stderr, "\nkiln-generate: speculative (%s): drafted %d, accepted %d (%.1f%%), %d rounds, %.2f accepted per round; by position:%s\n",
                     drafter->name().c_str(), st.n_drafted, st.n_accepted, 100 * st.acceptance_rate(), st.n_rounds, st.mean_accepted(), pos.c_str());
        std::fprintf(stderr, "kiln-generate: draft %.3f s, verify %.3f s", st.draft_s, st.verify_s);
        if (a.spec_compare)
            std::fprintf(stderr, "; plain decoding %.1f t/s, speculative %.1f t/s: %.2fx%s", plain.decode_tps, st.decode_tps(),
                         plain.decode_tps > 0 ? st.decode_tps() / plain.decode_tps : 0.0,
                         a.sampling.temperature <= 0 ? (plain.tokens == *out_tokens ? " (same tokens)" : " (TOKENS DIFFER)") : "");
        std::fputc('\n', stderr);
    }
    return kiln::Status::ok();
}
