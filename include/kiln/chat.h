// Chat templates: turns a conversation into the prompt text the model was trained on.
// kiln recognises the common template families from tokenizer.chat_template (ChatML,
// Llama 3, Gemma, Llama 2 / Mistral [INST], DeepSeek-R1), and renders the template itself
// with its Jinja engine where tools and arbitrary messages need it (render_jinja_chat).
#pragma once

#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

class Tokenizer;

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

enum class ChatFormat { ChatML, Llama3, Gemma, Llama2, DeepSeekR1 };
const char* chat_format_name(ChatFormat f);

struct ChatTemplate {
    ChatFormat format = ChatFormat::ChatML;
    std::string default_system;  // system prompt the template inserts when none is given
};

// Recognises a template from its Jinja source (tokenizer.chat_template). An empty or
// unknown template is an error that says so and suggests --chat-format or a raw prompt.
Expected<ChatTemplate> detect_chat_template(const std::string& jinja_source);
// As detect_chat_template, but a file without a template whose architecture has one
// known turn format (gemma3: Gemma's) gets that format, as llama.cpp does for Gemma.
Expected<ChatTemplate> chat_template_for(const std::string& jinja_source, const std::string& architecture);
// Parses a --chat-format name: chatml, llama3, gemma, llama2, deepseek-r1.
Expected<ChatFormat> parse_chat_format(const std::string& name);

// The prompt text for `messages`, ending with the assistant's turn opening when
// add_generation_prompt. BOS is not included (the tokenizer adds it per the model).
std::string apply_chat_template(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt = true);

// The model's own template (tokenizer.chat_template) rendered by kiln's Jinja engine as
// transformers renders it (byte for byte on the templates llama.cpp ships). Messages and
// tools are OpenAI-style JSON arrays: roles system, user, assistant (with tool_calls), tool
// (with tool_call_id). bos_token / eos_token come from the tokenizer; a BOS the template
// writes is left out when the tokenizer adds one itself. Template errors (including its
// raise_exception) come back as the Status.
struct ChatRenderInput {
    std::string messages_json;        // [{"role": "user", "content": "..."}, ...]
    std::string tools_json;           // "" or [{"type": "function", "function": {...}}, ...]
    bool add_generation_prompt = true;
};
Expected<std::string> render_jinja_chat(const std::string& jinja_source, const ChatRenderInput& in, const Tokenizer& tok);

// How a template family's models write tool calls: Hermes / Qwen (<tool_call>{"name": ...,
// "arguments": {...}}</tool_call>, any number) or Llama 3 (the reply is {"name": ...,
// "parameters": {...}}). None: the template shows no tool-call syntax kiln knows.
enum class ToolCallStyle { None, Hermes, Llama3 };
ToolCallStyle tool_call_style(const std::string& jinja_source);

struct ToolCall {
    std::string name;
    std::string arguments_json;  // a JSON object, as OpenAI's function.arguments
};
struct ParsedReply {
    std::string content;          // the text outside the calls
    std::vector<ToolCall> calls;
};
// The calls in a reply (none when it holds no well-formed call: then content is the reply).
// With tool_names, a reply that is only one JSON call to one of them, bare or in a ```
// fence, counts too (Qwen2.5-Coder often answers so).
ParsedReply parse_tool_calls(ToolCallStyle style, const std::string& reply, const std::vector<std::string>& tool_names = {});
// GBNF for a reply that is exactly one call to one of `tools` (or to the function named
// only_name), its arguments following the function's JSON Schema: tool_choice "required".
Expected<std::string> tool_call_gbnf(ToolCallStyle style, const std::string& tools_json, const std::string& only_name = "");

}  // namespace kiln
