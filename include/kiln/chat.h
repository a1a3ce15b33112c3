// Chat templates: turns a conversation into the prompt text the model was trained on.
// kiln recognises the common template families from tokenizer.chat_template (ChatML,
// Llama 3, Gemma, Llama 2 / Mistral [INST], DeepSeek-R1) rather than running Jinja.
#pragma once

#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

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

}  // namespace kiln
