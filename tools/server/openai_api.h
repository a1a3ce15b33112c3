// The OpenAI API's JSON for kiln-server: requests of /v1/completions and
// /v1/chat/completions turned into an EngineRequest (every field type-checked, errors name
// the field), and the engine's events turned back into responses and stream chunks.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/chat.h"
#include "kiln/engine.h"
#include "kiln/grammar.h"
#include "kiln/tokenizer.h"

namespace kiln::server {

using Json = nlohmann::json;

// A request the client got wrong: HTTP 400 with this message.
struct BadRequest : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// What the server was started with that requests fall back on.
struct ApiDefaults {
    std::string model_name;       // the id /v1/models lists; requests may name it or leave it out
    SamplerParams sampling;       // the server's --temp, --top-k, ...
    int max_tokens = -1;          // -n
    ChatTemplate chat_template;       // the built-in format, when jinja_source is empty
    std::string jinja_source;         // the model's own template, rendered by the Jinja engine
    ToolCallStyle tool_style = ToolCallStyle::None;
    const Tokenizer* tokenizer = nullptr;
};

struct ParsedRequest {
    EngineRequest engine;
    bool chat = false;
    bool stream = false;
    bool include_usage = false;    // stream_options.include_usage
    bool logprobs = false;         // report per-token log probabilities
    bool tools = false;            // the reply may hold tool calls (sent whole at the end when streaming)
    std::vector<std::string> tool_names;
};

// Parses a request body; throws BadRequest naming the field that is wrong.
ParsedRequest parse_completion_request(const std::string& body, bool chat, const ApiDefaults& d);

// The OpenAI error object: {"error": {"message", "type", "param", "code"}}.
Json error_body(const std::string& message, const std::string& type);

// OpenAI's finish_reason of a stop reason: "stop" or "length".
const char* finish_reason(StopReason r);

// Builds the responses of one request from the engine's events.
class Responder {
public:
    Responder(const ParsedRequest& req, const ApiDefaults& d, std::string id, long created);
    // One token event. Streaming: the chunk to send ("" when there is nothing to send yet).
    std::string on_token(const EngineEvent& e);
    // The last event. Streaming: the final chunks, with "data: [DONE]"; else the whole
    // response body.
    std::string on_done(const EngineEvent& e);

private:
    Json logprob_entry(const TokenLogprob& chosen, const std::vector<TokenLogprob>& top) const;
    Json chunk(const Json& delta_or_text, const Json& logprobs, const Json& finish) const;
    static std::string sse(const Json& j);
    const ParsedRequest& req_;
    const ApiDefaults& d_;
    std::string id_;
    long created_;
    bool sent_role_ = false;
    std::string text_;           // the whole reply (non-streaming)
    Json logprobs_ = Json::array();  // chat: content entries; completions: built at the end
    std::vector<TokenLogprob> chosen_;
    std::vector<std::vector<TokenLogprob>> top_;
};

// Dumps JSON with invalid UTF-8 (a token piece that ends inside a character) replaced.
std::string dump(const Json& j);

}  // namespace kiln::server
