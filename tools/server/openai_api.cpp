// openai_api.h: OpenAI request parsing and response building for kiln-server.
#include "openai_api.h"

#include <random>

namespace kiln::server {

namespace {

std::string type_name(const Json& j) { return j.type_name(); }

// Field readers: absent or null gives the default; a value of the wrong type or range
// throws BadRequest naming the field.
const Json* field(const Json& body, const char* key) {
    auto it = body.find(key);
    return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const Json& body, const char* key, double dflt, double lo, double hi) {
    const Json* v = field(body, key);
    if (!v) return dflt;
    if (!v->is_number()) throw BadRequest(std::string("'") + key + "' must be a number, not " + type_name(*v));
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) throw BadRequest(std::string("'") + key + "' is " + v->dump() + ", outside [" + Json(lo).dump() + ", " + Json(hi).dump() + "]");
    return x;
}

long long integer(const Json& body, const char* key, long long dflt, long long lo, long long hi) {
    const Json* v = field(body, key);
    if (!v) return dflt;
    if (!v->is_number_integer()) throw BadRequest(std::string("'") + key + "' must be an integer, not " + type_name(*v));
    const long long x = v->is_number_unsigned() ? (long long)std::min<uint64_t>(v->get<uint64_t>(), uint64_t(INT64_MAX)) : v->get<long long>();
    if (x < lo || x > hi) throw BadRequest(std::string("'") + key + "' is " + std::to_string(x) + ", outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
}

bool boolean(const Json& body, const char* key, bool dflt) {
    const Json* v = field(body, key);
    if (!v) return dflt;
    if (!v->is_boolean()) throw BadRequest(std::string("'") + key + "' must be a boolean, not " + type_name(*v));
    return v->get<bool>();
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts.
std::string message_content(const Json& m, size_t i) {
    const Json* c = field(m, "content");
    if (!c) return "";
    if (c->is_string()) return c->get<std::string>();
    if (!c->is_array()) throw BadRequest("'messages[" + std::to_string(i) + "].content' must be a string or an array of text parts");
    std::string out;
    for (const Json& part : *c) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
            throw BadRequest("'messages[" + std::to_string(i) + "].content': only parts of type \"text\" with a string \"text\" are supported");
        out += part["text"].get<std::string>();
    }
    return out;
}

// The chat's prompt text: the model's template through the Jinja engine (messages
// normalized: developer -> system, text parts joined), or kiln's built-in format when the
// server runs without it. `tools`: the tool definitions to render (empty: none).
std::string chat_prompt(const Json& body, const Json& tools, const ApiDefaults& d) {
    const Json* msgs = field(body, "messages");
    if (!msgs) throw BadRequest("'messages' is required");
    if (!msgs->is_array() || msgs->empty()) throw BadRequest("'messages' must be a non-empty array");
    Json normalized = Json::array();
    std::vector<ChatMessage> messages;
    for (size_t i = 0; i < msgs->size(); ++i) {
        const Json& m = (*msgs)[i];
        const std::string at = "'messages[" + std::to_string(i) + "]";
        if (!m.is_object()) throw BadRequest(at + "' must be an object");
        const Json* role = field(m, "role");
        if (!role || !role->is_string()) throw BadRequest(at + ".role' must be a string");
        std::string r = role->get<std::string>();
        if (r == "developer") r = "system";
        if (r != "system" && r != "user" && r != "assistant" && r != "tool")
            throw BadRequest(at + ".role' \"" + r + "\" is not one of system, developer, user, assistant, tool");
        Json n = m;
        n["role"] = r;
        n["content"] = message_content(m, i);
        normalized.push_back(n);
        messages.push_back({r, n["content"].get<std::string>()});
    }
    if (!d.jinja_source.empty()) {
        ChatRenderInput in;
        in.messages_json = normalized.dump();
        in.tools_json = tools.empty() ? "" : tools.dump();
        auto text = render_jinja_chat(d.jinja_source, in, *d.tokenizer);
        if (!text) throw BadRequest(text.message());
        return text.value();
    }
    if (!tools.empty()) throw BadRequest("'tools' needs the model's own chat template (the server runs with --chat-format)");
    for (const ChatMessage& m : messages)
        if (m.role == "tool") throw BadRequest("role 'tool' needs the model's own chat template (the server runs with --chat-format)");
    return apply_chat_template(d.chat_template, messages);
}

std::vector<int32_t> prompt_tokens(const Json& body, bool chat, const Json& tools, const ApiDefaults& d) {
    const Tokenizer& tok = *d.tokenizer;
    if (chat) return tok.encode(chat_prompt(body, tools, d), /*add_special=*/true, /*parse_special=*/true);
    const Json* p = field(body, "prompt");
    if (!p) throw BadRequest("'prompt' is required");
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
    if (p->is_string()) return tok.encode(p->get<std::string>(), /*add_special=*/true, /*parse_special=*/true);
    if (p->is_array()) {
        std::vector<int32_t> ids;
        for (const Json& t : *p) {
            if (!t.is_number_integer()) throw BadRequest("'prompt' must be a string, an array of one string, or an array of token ids");
            const long long id = t.get<long long>();
            if (id < 0 || id >= tok.n_vocab()) throw BadRequest("'prompt' token " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(tok.n_vocab()) + " tokens)");
            ids.push_back(int32_t(id));
        }
        return ids;
    }
    throw BadRequest("'prompt' must be a string, an array of one string, or an array of token ids, not " + type_name(*p));
}

}  // namespace

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json error_body(const std::string& message, const std::string& type) {
    return {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
}

const char* finish_reason(StopReason r) {
    return r == StopReason::Length || r == StopReason::ContextFull ? "length" : "stop";
}

ParsedRequest parse_completion_request(const std::string& text, bool chat, const ApiDefaults& d) {
    Json body = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) throw BadRequest("the request body is not valid JSON");
    if (!body.is_object()) throw BadRequest("the request body must be a JSON object");
    ParsedRequest out;
    out.chat = chat;
    if (const Json* m = field(body, "model")) {
        if (!m->is_string()) throw BadRequest("'model' must be a string");
        if (m->get<std::string>() != d.model_name) throw BadRequest("model '" + m->get<std::string>() + "' is not served here (this server has '" + d.model_name + "')");
    }
    if (integer(body, "n", 1, 1, 1) != 1) throw BadRequest("'n' must be 1");
    // Structured output: response_format (OpenAI), or llama-server's json_schema / grammar.
    auto schema_grammar = [](const Json& schema) {
        auto g = json_schema_to_gbnf(schema.dump());
        if (!g) throw BadRequest(g.message());
        return g.value();
    };
    if (const Json* rf = field(body, "response_format")) {
        const std::string type = rf->is_object() && rf->contains("type") && (*rf)["type"].is_string() ? (*rf)["type"].get<std::string>() : "";
        if (type == "json_object") out.engine.grammar = json_gbnf(/*object_root=*/true);
        else if (type == "json_schema") {
            const Json* js = field(*rf, "json_schema");
            const Json* schema = js && js->is_object() ? field(*js, "schema") : nullptr;
            if (!schema) throw BadRequest("'response_format.json_schema.schema' is required for type json_schema");
            out.engine.grammar = schema_grammar(*schema);
        } else if (type != "text") throw BadRequest("'response_format.type' must be text, json_object or json_schema");
    }
    if (const Json* js = field(body, "json_schema")) out.engine.grammar = schema_grammar(*js);
    if (const Json* g = field(body, "grammar")) {
        if (!g->is_string()) throw BadRequest("'grammar' must be a GBNF string");
        auto parsed = Grammar::parse(g->get<std::string>());
        if (!parsed) throw BadRequest(parsed.message());
        out.engine.grammar = g->get<std::string>();
    }
    // Tools: rendered into the prompt by the template; tool_choice "required" (or a named
    // function) constrains the reply to one call with a grammar; "none" leaves them out.
    Json tools = Json::array();
    if (const Json* t = field(body, "tools")) {
        if (!chat) throw BadRequest("'tools' belongs to /v1/chat/completions");
        if (!t->is_array()) throw BadRequest("'tools' must be an array");
        tools = *t;
    }
    std::string choice = "auto", forced;
    if (const Json* c = field(body, "tool_choice")) {
        if (c->is_string()) choice = c->get<std::string>();
        else if (c->is_object() && c->contains("function") && (*c)["function"].is_object() && (*c)["function"].value("name", "") != "")
            choice = "required", forced = (*c)["function"]["name"].get<std::string>();
        else throw BadRequest("'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        if (choice != "none" && choice != "auto" && choice != "required") throw BadRequest("'tool_choice' \"" + choice + "\" is not none, auto or required");
    }
    if (choice == "none") tools = Json::array();
    if (!tools.empty()) {
        if (d.tool_style == ToolCallStyle::None) throw BadRequest("this model's chat template has no tool-call syntax kiln knows (Hermes/Qwen or Llama 3)");
        out.tools = true;
        for (const Json& t : tools)
            if (t.is_object() && t.contains("function") && t["function"].is_object() && t["function"].contains("name") && t["function"]["name"].is_string())
                out.tool_names.push_back(t["function"]["name"].get<std::string>());
        if (choice == "required") {
            auto g = tool_call_gbnf(d.tool_style, tools.dump(), forced);
            if (!g) throw BadRequest(g.message());
            out.engine.grammar = g.value();
        }
    }
    EngineRequest& e = out.engine;
    SamplerParams& s = e.sampling;  // (e.grammar is set above)
    s = d.sampling;
    s.temperature = float(number(body, "temperature", s.temperature, 0, 100));
    s.top_p = float(number(body, "top_p", s.top_p, 0, 1));
    s.top_k = int(integer(body, "top_k", s.top_k, 0, 1 << 30));
    s.min_p = float(number(body, "min_p", s.min_p, 0, 1));
    s.repeat_penalty = float(number(body, "repeat_penalty", s.repeat_penalty, 1e-6, 1e6));
    s.repeat_last_n = int(integer(body, "repeat_last_n", s.repeat_last_n, 0, 1 << 20));
    s.frequency_penalty = float(number(body, "frequency_penalty", s.frequency_penalty, -2, 2));
    s.presence_penalty = float(number(body, "presence_penalty", s.presence_penalty, -2, 2));
    const long long seed = integer(body, "seed", -1, INT64_MIN, INT64_MAX);
    s.seed = seed >= 0 ? uint64_t(seed) : std::random_device{}() * 0x9E3779B97F4A7C15ull;
    const long long max_default = d.max_tokens;
    long long max_tokens = integer(body, "max_tokens", max_default, 1, 1 << 24);
    max_tokens = integer(body, "max_completion_tokens", max_tokens, 1, 1 << 24);
    e.max_tokens = int(max_tokens);
    e.ignore_eos = boolean(body, "ignore_eos", false);
    e.cache_prompt = boolean(body, "cache_prompt", true);
    e.speculative = boolean(body, "speculative", true);
    if (const Json* stop = field(body, "stop")) {
        if (stop->is_string()) e.stop.push_back(stop->get<std::string>());
        else if (stop->is_array() && stop->size() <= 16) {
            for (const Json& x : *stop) {
                if (!x.is_string()) throw BadRequest("'stop' must be a string or an array of strings");
                e.stop.push_back(x.get<std::string>());
            }
        } else throw BadRequest("'stop' must be a string or an array of up to 16 strings");
        for (const std::string& x : e.stop)
            if (x.empty()) throw BadRequest("'stop' strings must not be empty");
    }
    out.stream = boolean(body, "stream", false);
    if (const Json* so = field(body, "stream_options")) {
        if (!so->is_object()) throw BadRequest("'stream_options' must be an object");
        out.include_usage = boolean(*so, "include_usage", false);
    }
    if (chat) {
        out.logprobs = boolean(body, "logprobs", false);
        const long long top = integer(body, "top_logprobs", -1, 0, 20);
        if (top >= 0 && !out.logprobs) throw BadRequest("'top_logprobs' needs 'logprobs': true");
        if (out.logprobs) e.n_logprobs = int(std::max(0ll, top));
    } else {
        const long long top = integer(body, "logprobs", -1, 0, 20);  // completions: how many alternatives
        out.logprobs = top >= 0;
        e.n_logprobs = int(top);
    }
    e.prompt = prompt_tokens(body, chat, tools, d);
    if (e.prompt.empty()) throw BadRequest(chat ? "the messages give an empty prompt" : "'prompt' is empty");
    return out;
}

Responder::Responder(const ParsedRequest& req, const ApiDefaults& d, std::string id, long created)
    : req_(req), d_(d), id_(std::move(id)), created_(created) {}

std::string Responder::sse(const Json& j) { return "data: " + dump(j) + "\n\n"; }

Json Responder::logprob_entry(const TokenLogprob& chosen, const std::vector<TokenLogprob>& top) const {
    auto one = [&](const TokenLogprob& t) {
        const std::string piece = d_.tokenizer->token_to_piece(t.token, true);
        Json bytes = Json::array();
        for (unsigned char c : piece) bytes.push_back(int(c));
        return Json{{"token", piece}, {"logprob", t.logprob}, {"bytes", bytes}};
    };
    Json entry = one(chosen);
    entry["top_logprobs"] = Json::array();
    for (const TokenLogprob& t : top) entry["top_logprobs"].push_back(one(t));
    return entry;
}

Json Responder::chunk(const Json& delta_or_text, const Json& logprobs, const Json& finish) const {
    Json choice = {{"index", 0}, {"logprobs", logprobs}, {"finish_reason", finish}};
    choice[req_.chat ? "delta" : "text"] = delta_or_text;
    return {{"id", id_}, {"object", req_.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created_}, {"model", d_.model_name},
            {"choices", Json::array({choice})}};
}

std::string Responder::on_token(const EngineEvent& e) {
    text_ += e.text;
    if (req_.logprobs) {
        chosen_.push_back(e.chosen);
        top_.push_back(e.top);
    }
    // A reply that may hold tool calls is sent whole at the end (the calls are parsed then).
    if (!req_.stream || req_.tools || (e.text.empty() && !req_.logprobs)) return "";
    Json lp = nullptr;
    if (req_.logprobs) {
        if (req_.chat) lp = {{"content", Json::array({logprob_entry(e.chosen, e.top)})}};
        else {
            Json top = Json::object();
            for (const TokenLogprob& t : e.top) top[d_.tokenizer->token_to_piece(t.token, true)] = t.logprob;
            lp = {{"tokens", {d_.tokenizer->token_to_piece(e.chosen.token, true)}}, {"token_logprobs", {e.chosen.logprob}}, {"top_logprobs", {top}},
                  {"text_offset", {text_.size() - e.text.size()}}};
        }
    }
    std::string out;
    if (req_.chat && !sent_role_) {
        out += sse(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
        sent_role_ = true;
    }
    return out + sse(chunk(req_.chat ? Json{{"content", e.text}} : Json(e.text), lp, nullptr));
}

std::string Responder::on_done(const EngineEvent& e) {
    text_ += e.text;
    const Json usage = {{"prompt_tokens", e.n_prompt},
                        {"completion_tokens", e.n_generated},
                        {"total_tokens", e.n_prompt + e.n_generated},
                        {"prompt_tokens_details", {{"cached_tokens", e.n_cached}}}};
    const char* finish = finish_reason(e.stop);
    // Tool calls: parsed from the whole reply; the text around them is the content.
    Json calls = Json::array();
    std::string content = text_;
    if (req_.tools) {
        ParsedReply p = parse_tool_calls(d_.tool_style, text_, req_.tool_names);
        content = p.content;
        for (size_t i = 0; i < p.calls.size(); ++i)
            calls.push_back({{"index", i}, {"id", "call_" + id_.substr(id_.find('-') + 1) + "_" + std::to_string(i)}, {"type", "function"},
                             {"function", {{"name", p.calls[i].name}, {"arguments", p.calls[i].arguments_json}}}});
        if (!calls.empty()) finish = "tool_calls";
    }
    if (req_.stream) {
        std::string out;
        if (req_.chat && !sent_role_) out += sse(chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));
        const std::string rest = req_.tools ? content : e.text;  // tools: nothing was streamed before
        if (!rest.empty()) out += sse(chunk(req_.chat ? Json{{"content", rest}} : Json(rest), nullptr, nullptr));
        if (!calls.empty()) out += sse(chunk({{"tool_calls", calls}}, nullptr, nullptr));
        out += sse(chunk(req_.chat ? Json::object() : Json(""), nullptr, finish));
        if (req_.include_usage)
            out += sse({{"id", id_}, {"object", req_.chat ? "chat.completion.chunk" : "text_completion"}, {"created", created_}, {"model", d_.model_name},
                        {"choices", Json::array()}, {"usage", usage}});
        return out + "data: [DONE]\n\n";
    }
    Json lp = nullptr;
    if (req_.logprobs) {
        if (req_.chat) {
            lp = {{"content", Json::array()}};
            for (size_t i = 0; i < chosen_.size(); ++i) lp["content"].push_back(logprob_entry(chosen_[i], top_[i]));
        } else {
            lp = {{"tokens", Json::array()}, {"token_logprobs", Json::array()}, {"top_logprobs", Json::array()}, {"text_offset", Json::array()}};
            size_t offset = 0;
            for (size_t i = 0; i < chosen_.size(); ++i) {
                const std::string piece = d_.tokenizer->token_to_piece(chosen_[i].token, true);
                Json top = Json::object();
                for (const TokenLogprob& t : top_[i]) top[d_.tokenizer->token_to_piece(t.token, true)] = t.logprob;
                lp["tokens"].push_back(piece);
                lp["token_logprobs"].push_back(chosen_[i].logprob);
                lp["top_logprobs"].push_back(top);
                lp["text_offset"].push_back(offset);
                offset += piece.size();
            }
        }
    }
    Json choice = {{"index", 0}, {"logprobs", lp}, {"finish_reason", finish}};
    if (req_.chat) {
        choice["message"] = {{"role", "assistant"}, {"content", calls.empty() || !content.empty() ? Json(content) : Json(nullptr)}};
        if (!calls.empty()) {
            for (Json& c : calls) c.erase("index");  // (index belongs to stream deltas)
            choice["message"]["tool_calls"] = calls;
        }
    }
    else choice["text"] = text_;
    return dump({{"id", id_}, {"object", req_.chat ? "chat.completion" : "text_completion"}, {"created", created_}, {"model", d_.model_name},
                 {"choices", Json::array({choice})}, {"usage", usage}});
}

}  // namespace kiln::server
