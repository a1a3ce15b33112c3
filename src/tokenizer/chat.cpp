#include "kiln/chat.h"

namespace kiln {

const char* chat_format_name(ChatFormat f) {
    switch (f) {
        case ChatFormat::ChatML: return "chatml";
        case ChatFormat::Llama3: return "llama3";
        case ChatFormat::Gemma: return "gemma";
        case ChatFormat::Llama2: return "llama2";
        case ChatFormat::DeepSeekR1: return "deepseek-r1";
    }
    return "?";
}

Expected<ChatFormat> parse_chat_format(const std::string& name) {
    for (ChatFormat f : {ChatFormat::ChatML, ChatFormat::Llama3, ChatFormat::Gemma, ChatFormat::Llama2, ChatFormat::DeepSeekR1})
        if (name == chat_format_name(f)) return f;
    return Status::error("unknown chat format '%s' (expected chatml, llama3, gemma, llama2 or deepseek-r1)", name.c_str());
}

namespace {
// A Jinja string literal's escapes undone (\n, \t, \', \", \\); other text unchanged.
std::string jinja_unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out.push_back(s[i]);
            continue;
        }
        const char e = s[++i];
        out.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
    }
    return out;
}

// The literal system prompt a ChatML template inserts when the conversation has none,
// e.g. SmolLM2's "You are a helpful AI assistant named SmolLM, ..." or Qwen2.5's "You are
// Qwen, created by Alibaba Cloud. ...". Templates write the newline after "system" either
// as a real newline (SmolLM2) or as the escape \n inside a Jinja string (Qwen2.5).
std::string chatml_default_system(const std::string& src) {
    for (const std::string open : {"<|im_start|>system\n", "<|im_start|>system\\n"}) {
        for (size_t at = src.find(open); at != std::string::npos; at = src.find(open, at + 1)) {
            size_t begin = at + open.size(), end = src.find("<|im_end|>", begin);
            if (end == std::string::npos) break;
            std::string text = src.substr(begin, end - begin);
            // A literal prompt, not a Jinja expression such as {{ messages[0]['content'] }}:
            // no braces, and no quote but an escaped one (\').
            bool literal = !text.empty() && text.find('{') == std::string::npos;
            for (size_t i = 0; literal && i < text.size(); ++i) {
                if (text[i] == '\\') ++i;
                else if (text[i] == '\'') literal = false;
            }
            if (literal) return jinja_unescape(text);
        }
    }
    return "";
}
}  // namespace

Expected<ChatTemplate> detect_chat_template(const std::string& src) {
    ChatTemplate t;
    if (src.empty()) return Status::error("the model has no chat template (tokenizer.chat_template); pass --chat-format NAME or use a raw prompt without --chat");
    if (src.find("<|im_start|>") != std::string::npos) {
        t.format = ChatFormat::ChatML;
        t.default_system = chatml_default_system(src);
    } else if (src.find("<|start_header_id|>") != std::string::npos) {
        t.format = ChatFormat::Llama3;
    } else if (src.find("<start_of_turn>") != std::string::npos) {
        t.format = ChatFormat::Gemma;
    } else if (src.find("<\xef\xbd\x9cUser\xef\xbd\x9c>") != std::string::npos) {  // <｜User｜>
        t.format = ChatFormat::DeepSeekR1;
    } else if (src.find("[INST]") != std::string::npos) {
        t.format = ChatFormat::Llama2;
    } else {
        return Status::error("unrecognised chat template (not ChatML, Llama 3, Gemma, DeepSeek-R1 or [INST]); pass --chat-format NAME or use a raw prompt without --chat");
    }
    return t;
}

Expected<ChatTemplate> chat_template_for(const std::string& src, const std::string& arch) {
    if (src.empty() && (arch == "gemma3" || arch == "gemma2" || arch == "gemma")) return ChatTemplate{ChatFormat::Gemma, ""};
    return detect_chat_template(src);
}

std::string apply_chat_template(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    std::string out;
    std::string system;
    bool has_system = !messages.empty() && messages[0].role == "system";
    if (has_system) system = messages[0].content;
    const size_t first = has_system ? 1 : 0;
    switch (t.format) {
        case ChatFormat::ChatML:
            if (has_system || !t.default_system.empty()) out += "<|im_start|>system\n" + (has_system ? system : t.default_system) + "<|im_end|>\n";
            for (size_t i = first; i < messages.size(); ++i) out += "<|im_start|>" + messages[i].role + "\n" + messages[i].content + "<|im_end|>\n";
            if (add_generation_prompt) out += "<|im_start|>assistant\n";
            break;
        case ChatFormat::Llama3:
            for (const ChatMessage& m : messages) out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
            if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            break;
        case ChatFormat::Gemma:
            // Gemma has no system role: the system text opens the first user turn.
            for (size_t i = first; i < messages.size(); ++i) {
                const std::string role = messages[i].role == "assistant" ? "model" : messages[i].role;
                std::string content = messages[i].content;
                if (i == first && has_system) content = system + "\n\n" + content;
                out += "<start_of_turn>" + role + "\n" + content + "<end_of_turn>\n";
            }
            if (add_generation_prompt) out += "<start_of_turn>model\n";
            break;
        case ChatFormat::Llama2:
            for (size_t i = first; i < messages.size(); ++i) {
                if (messages[i].role == "user") {
                    std::string content = messages[i].content;
                    if (i == first && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
                    out += "[INST] " + content + " [/INST]";
                } else {
                    out += " " + messages[i].content + "</s>";
                }
            }
            break;
        case ChatFormat::DeepSeekR1:
            out += system;
            for (size_t i = first; i < messages.size(); ++i) {
                if (messages[i].role == "user") out += "<\xef\xbd\x9cUser\xef\xbd\x9c>" + messages[i].content;
                else out += "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>" + messages[i].content + "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
            }
            if (add_generation_prompt) out += "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c><think>\n";
            break;
    }
    return out;
}

}  // namespace kiln
