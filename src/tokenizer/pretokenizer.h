// BPE pre-tokenizer: the regex sets llama.cpp uses per tokenizer.ggml.pre, run with PCRE2,
// and the word splitting of llama.cpp's unicode_regex_split (each regex splits the pieces
// the previous one produced; text between matches is kept as its own piece).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln::detail {

// What a tokenizer.ggml.pre name means (llama.cpp's llama_vocab::impl::load).
struct PreTokenizerSpec {
    std::string kind;                 // canonical name of the regex set, e.g. "llama3"
    std::vector<std::string> regexes;
    bool known = true;                // false: unknown/unsupported name, default regexes used
    bool clean_spaces = true;         // clean_up_tokenization_spaces when decoding
    bool ignore_merges = false;       // a word that is a whole token skips the merges
    bool force_add_bos = false;       // default add_bos = true (llama3, tekken, chameleon)
    bool no_default_bos = false;      // default bos id is none (chatglm)
    bool byte_encode = true;          // GPT-2 byte->unicode mapping (false: raw UTF-8)
    bool escape_whitespaces = false;  // ' ' -> U+2581 before merging (gemma4)
};

// Resolves a pre-tokenizer name; "" and "default" give the default set.
PreTokenizerSpec pre_tokenizer_spec(std::string_view pre);

// Compiled regex set. Immutable after compile(); split() is thread-safe.
class RegexSplitter {
public:
    static Expected<RegexSplitter> compile(const std::vector<std::string>& exprs);
    RegexSplitter() = default;

    // Appends the words of `text` (bytes, possibly invalid UTF-8) to `words`. Invalid UTF-8
    // becomes U+FFFD first, as in llama.cpp.
    void split(std::string_view text, std::vector<std::string>& words) const;

    struct Regex;

private:
    std::vector<std::shared_ptr<const Regex>> regexes_;
};

// llama.cpp's lenient UTF-8 decoding (unicode_cpts_from_utf8) re-encoded: invalid bytes
// become U+FFFD. Returns the input unchanged when it is already valid.
std::string sanitize_utf8(std::string_view text);
// Appends code point cp as UTF-8.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace kiln::detail
