// The model's own chat template through the Jinja engine, and tool calls: the call syntax of
// each template family, read back from replies and written as a grammar (kiln/chat.h).
#include <algorithm>
#include <nlohmann/json.hpp>

#include "kiln/chat.h"
#include "kiln/grammar.h"
#include "kiln/tokenizer.h"
#include "tokenizer/jinja.h"

namespace kiln {

namespace {

using Json = nlohmann::ordered_json;  // keeps the order of keys as the client wrote them

Expected<Json> parse_array(const std::string& text, const char* what) {
    if (text.empty()) return Json::array();
    Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_array()) return Status::error("%s must be a JSON array", what);
    return j;
}

// The JSON objects in text, with where each starts and ends: a brace-matching scan that
// respects strings.
bool next_json_object(const std::string& s, size_t from, size_t* begin, size_t* end) {
    size_t b = s.find('{', from);
    while (b != std::string::npos) {
        int depth = 0;
        bool in_string = false;
        for (size_t i = b; i < s.size(); ++i) {
            const char c = s[i];
            if (in_string) {
                if (c == '\\') ++i;
                else if (c == '"') in_string = false;
            } else if (c == '"') {
                in_string = true;
            } else if (c == '{') {
                ++depth;
            } else if (c == '}' && --depth == 0) {
                *begin = b, *end = i + 1;
                return true;
            }
        }
        b = s.find('{', b + 1);
    }
    return false;
}

// {"name": ..., "arguments"/"parameters": {...}} -> a call.
bool as_call(const std::string& text, ToolCall* call) {
    const Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
    const Json args = j.contains("arguments") ? j["arguments"] : j.contains("parameters") ? j["parameters"] : Json::object();
    call->name = j["name"].get<std::string>();
    call->arguments_json = args.is_string() ? args.get<std::string>() : args.dump();
    return true;
}

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

Expected<std::string> render_jinja_chat(const std::string& source, const ChatRenderInput& in, const Tokenizer& tok) {
    auto tmpl = jinja::Template::parse(source);
    if (!tmpl) return tmpl.status().with_context("chat template");
    auto messages = parse_array(in.messages_json, "messages");
    if (!messages) return messages.status();
    auto tools = parse_array(in.tools_json, "tools");
    if (!tools) return tools.status();
    const std::string bos = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "", eos = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
    jinja::Value ctx = jinja::Value::object();
    ctx.set("messages", jinja::Value::from_json(messages.value()));
    if (!tools.value().empty()) ctx.set("tools", jinja::Value::from_json(tools.value()));
    ctx.set("add_generation_prompt", in.add_generation_prompt);
    ctx.set("bos_token", bos);
    ctx.set("eos_token", eos);
    auto text = tmpl->render(ctx);
    if (!text) return text.status().with_context("chat template");
    // The tokenizer adds BOS itself where the model asks for it: a BOS the template wrote
    // would be a second one.
    std::string out = std::move(text.value());
    if (tok.add_bos() && !bos.empty() && out.rfind(bos, 0) == 0) out.erase(0, bos.size());
    return out;
}

ToolCallStyle tool_call_style(const std::string& source) {
    if (source.find("<tool_call>") != std::string::npos) return ToolCallStyle::Hermes;
    if (source.find("<|python_tag|>") != std::string::npos || source.find("ipython") != std::string::npos) return ToolCallStyle::Llama3;
    return ToolCallStyle::None;
}

ParsedReply parse_tool_calls(ToolCallStyle style, const std::string& reply, const std::vector<std::string>& tool_names) {
    ParsedReply out;
    // A reply that is nothing but one call to a known tool, in a ``` fence or bare (as
    // Qwen2.5-Coder answers instead of <tool_call>).
    if (!tool_names.empty() && style != ToolCallStyle::None) {
        std::string body = trim(reply);
        if (body.rfind("```", 0) == 0 && body.size() >= 6 && body.compare(body.size() - 3, 3, "```") == 0) {
            body = body.substr(3, body.size() - 6);
            body = trim(body.substr(std::min(body.find('\n'), body.find('{'))));  // drop a language tag ("json")
        }
        ToolCall call;
        size_t b = 0, e = 0;
        if (!body.empty() && body[0] == '{' && next_json_object(body, 0, &b, &e) && e == body.size() && as_call(body, &call) &&
            std::find(tool_names.begin(), tool_names.end(), call.name) != tool_names.end()) {
            out.calls.push_back(std::move(call));
            return out;
        }
    }
    if (style == ToolCallStyle::Hermes) {
        // <tool_call>{...}</tool_call> blocks (any number); the text around them is the content.
        std::string content;
        size_t at = 0;
        for (;;) {
            const size_t open = reply.find("<tool_call>", at);
            if (open == std::string::npos) break;
            const size_t close = reply.find("</tool_call>", open);
            const std::string inner = reply.substr(open + 11, close == std::string::npos ? std::string::npos : close - open - 11);
            size_t b = 0, e = 0;
            ToolCall call;
            if (!next_json_object(inner, 0, &b, &e) || !as_call(inner.substr(b, e - b), &call)) break;  // not a call: leave it as text
            content += reply.substr(at, open - at);
            out.calls.push_back(std::move(call));
            at = close == std::string::npos ? reply.size() : close + 12;
        }
        out.content = trim(content + reply.substr(std::min(at, reply.size())));
        return out;
    }
    if (style == ToolCallStyle::Llama3) {
        // The whole reply is one call: {"name": ..., "parameters": {...}}, maybe after <|python_tag|>.
        std::string body = trim(reply);
        if (body.rfind("<|python_tag|>", 0) == 0) body = trim(body.substr(14));
        ToolCall call;
        size_t b = 0, e = 0;
        if (!body.empty() && body[0] == '{' && next_json_object(body, 0, &b, &e) && trim(body.substr(e)).empty() && as_call(body, &call)) {
            out.calls.push_back(std::move(call));
            return out;
        }
    }
    out.content = reply;
    return out;
}

Expected<std::string> tool_call_gbnf(ToolCallStyle style, const std::string& tools_json, const std::string& only_name) {
    if (style == ToolCallStyle::None) return Status::error("the chat template has no tool-call syntax kiln knows (Hermes/Qwen <tool_call> or Llama 3)");
    auto tools = parse_array(tools_json, "tools");
    if (!tools) return tools.status();
    // One JSON Schema for "a call of any of the tools": anyOf {name: const, arguments: its parameters}.
    Json any = Json::array();
    for (const Json& t : tools.value()) {
        const Json& f = t.contains("function") ? t["function"] : t;
        if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) return Status::error("tools: each needs function.name");
        if (!only_name.empty() && f["name"] != only_name) continue;
        const char* args_key = style == ToolCallStyle::Llama3 ? "parameters" : "arguments";
        Json params = f.contains("parameters") ? f["parameters"] : Json{{"type", "object"}};
        any.push_back({{"type", "object"}, {"properties", {{"name", {{"const", f["name"]}}}, {args_key, params}}}, {"required", {"name", args_key}}});
    }
    if (any.empty()) return Status::error("tool_choice names a function that is not in tools: '%s'", only_name.c_str());
    // Hermes: the call inside its tags (the schema's rules under `call`).
    auto gbnf = json_schema_to_gbnf(Json{{"anyOf", any}}.dump(), style == ToolCallStyle::Llama3 ? "root" : "call");
    if (!gbnf || style == ToolCallStyle::Llama3) return gbnf;
    return "root ::= \"<tool_call>\\n\" call \"</tool_call>\"\n" + gbnf.value();
}

}  // namespace kiln
