// generate(): prefill, then sample / stream / feed back until a stop condition.
#include "kiln/generate.h"

#include <algorithm>
#include <chrono>

#include "kiln/tokenizer.h"
#include "stop_text.h"

namespace kiln {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

const char* stop_reason_name(StopReason r) {
    switch (r) {
        case StopReason::Length: return "length";
        case StopReason::EndOfGeneration: return "eog";
        case StopReason::StopString: return "stop";
        case StopReason::ContextFull: return "context";
        case StopReason::Callback: return "callback";
        case StopReason::Cancelled: return "cancelled";
    }
    return "?";
}

Expected<GenerateResult> generate(Session& session, Sampler& sampler, std::span<const int32_t> prompt, const GenerateOptions& o) {
    for (const std::string& s : o.stop)
        if (s.empty()) return Status::error("generate: an empty stop string");
    const Tokenizer& tok = session.model().tokenizer();
    GenerateResult r;
    r.n_prompt = int(prompt.size());
    auto cancelled = [&] { return o.cancel && o.cancel->load(std::memory_order_relaxed); };
    session.set_cancel(o.cancel);
    struct Reset {  // the session forgets the flag whatever way this returns
        Session& s;
        ~Reset() { s.set_cancel(nullptr); }
    } reset{session};

    for (int32_t t : prompt) sampler.accept(t);
    const auto t0 = Clock::now();
    if (!prompt.empty()) {
        const Status st = session.forward(prompt);
        if (!st.is_ok() && cancelled()) {
            r.stop = StopReason::Cancelled;
            return r;
        }
        KILN_TRY(st);
    }
    r.prefill_s = seconds_since(t0);
    if (session.n_logits() == 0) return Status::error("generate: no prompt and nothing in the session to continue from");

    StopText text(tok, o.stop);
    const auto t1 = Clock::now();
    auto finish = [&](StopReason why) -> GenerateResult {
        const std::string rest = text.take(/*final=*/true);
        r.text += rest;
        if (o.on_text && !rest.empty() && why != StopReason::Callback) o.on_text(rest);
        r.stop = why;
        r.decode_s = seconds_since(t1);
        return std::move(r);
    };
    for (int i = 0;; ++i) {
        if (o.n_predict >= 0 && i >= o.n_predict) return finish(StopReason::Length);
        if (cancelled()) return finish(StopReason::Cancelled);
        const int32_t next = sampler.sample(session.logits());
        sampler.accept(next);
        if (!o.ignore_eos && tok.is_eog(next)) return finish(StopReason::EndOfGeneration);
        r.tokens.push_back(next);
        if (o.on_token && !o.on_token(next)) return finish(StopReason::Callback);
        if (text.push(next)) return finish(StopReason::StopString);
        if (const std::string ready = text.take(/*final=*/false); !ready.empty()) {
            r.text += ready;
            if (o.on_text && !o.on_text(ready)) return finish(StopReason::Callback);
        }
        if (o.n_predict >= 0 && i + 1 >= o.n_predict) return finish(StopReason::Length);
        if (session.n_past() >= session.n_ctx()) return finish(StopReason::ContextFull);
        const Status st = session.forward(std::span<const int32_t>(&next, 1));
        if (!st.is_ok() && cancelled()) return finish(StopReason::Cancelled);
        KILN_TRY(st);
    }
}

}  // namespace kiln
