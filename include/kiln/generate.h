// generate(): the decode loop every caller needs, written once. Prefill the prompt,
// then sample, stream and feed back one token at a time until a stop condition.
//
//   kiln::GenerateOptions g;
//   g.n_predict = 64;
//   g.on_text = [](std::string_view piece) { std::fwrite(piece.data(), 1, piece.size(), stdout); return true; };
//   auto r = kiln::generate(session, sampler, prompt_ids, g);   // r->text, r->tokens, r->stop
#pragma once

#include <atomic>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/sampler.h"
#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

enum class StopReason {
    Length,           // n_predict tokens generated
    EndOfGeneration,  // the model produced an end-of-generation token (not kept)
    StopString,       // the text reached one of GenerateOptions::stop (not kept)
    ContextFull,      // sequence 0 filled the session's context
    Callback,         // on_text or on_token returned false
    Cancelled,        // *cancel became true (also between prefill chunks)
};
const char* stop_reason_name(StopReason r);  // "length", "eog", "stop", "context", "callback", "cancelled"

struct GenerateOptions {
    int n_predict = -1;       // tokens to generate; < 0: until another stop condition
    bool ignore_eos = false;  // keep going past end-of-generation tokens
    // Generation ends when the text ends with one of these; the stop string is not kept,
    // and on_text never sees text that might turn out to be the start of one.
    std::vector<std::string> stop = {};
    // Streaming: each generated token, and the text it completes (UTF-8, whole
    // characters). Returning false stops generation.
    std::function<bool(int32_t token)> on_token = {};
    std::function<bool(std::string_view text)> on_text = {};
    // Set from another thread to stop: checked between tokens and between the prompt's
    // chunks of n_batch tokens, so a long prefill stops too.
    const std::atomic<bool>* cancel = nullptr;
};

struct GenerateResult {
    std::vector<int32_t> tokens;  // generated (an end-of-generation token left out)
    std::string text;
    StopReason stop = StopReason::Length;
    int n_prompt = 0;
    double prefill_s = 0, decode_s = 0;  // wall-clock seconds
};

// Appends `prompt` to sequence 0 of the session (which may already hold a conversation)
// and generates from it; the sampler sees the prompt and every generated token.
Expected<GenerateResult> generate(Session& session, Sampler& sampler, std::span<const int32_t> prompt, const GenerateOptions& options = {});

}  // namespace kiln
