// Tokenizer read from GGUF metadata (tokenizer.ggml.*), matching llama.cpp token for token:
// SentencePiece-style BPE with scores ("llama": Llama 2, Gemma 3), byte-level BPE with merges
// and a regex pre-tokenizer ("gpt2": Llama 3, Qwen2, SmolLM, ...) and Gemma 4's BPE ("gemma4").
//
//   auto f = kiln::GgufFile::open("model.gguf");
//   auto tok = kiln::Tokenizer::from_gguf(*f);          // Status names the bad key
//   std::vector<kiln::TokenId> ids = tok->encode(prompt, /*add_special=*/true, /*parse_special=*/true);
//   kiln::TokenStreamDecoder out(*tok);
//   for (TokenId t : generated) fputs(out.push(t).c_str(), stdout);
//   fputs(out.flush().c_str(), stdout);
//
// A Tokenizer is an immutable handle (copies share one vocabulary) and is safe to use from
// several threads at once. Bad ids passed to the accessors never crash: they render as
// empty text / TokenType::Undefined.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/status.h"

namespace kiln {

class GgufFile;

using TokenId = int32_t;

// Values of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
    Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

class Tokenizer {
public:
    // An empty tokenizer (n_vocab() == 0); use from_gguf to get a real one.
    Tokenizer();

    // Reads the tokenizer.ggml.* keys. Errors (missing or mistyped keys, arrays whose length
    // differs from the token list, ids >= n_vocab, malformed merges, unsupported models)
    // come back as a Status naming the key. An unknown tokenizer.ggml.pre falls back to the
    // default pre-tokenizer and sets warning(), as llama.cpp does.
    static Expected<Tokenizer> from_gguf(const GgufFile& f);

    // add_special: add BOS/EOS as the model's add_bos/add_eos flags ask.
    // parse_special: text of control tokens (e.g. "<|im_start|>") becomes that token;
    // user-defined tokens are always recognised, as in llama.cpp.
    std::vector<TokenId> encode(std::string_view text, bool add_special, bool parse_special) const;

    // The bytes one token contributes (may be a partial UTF-8 sequence). Control and
    // unknown tokens render empty unless render_special.
    std::string token_to_piece(TokenId id, bool render_special = false) const;

    // llama_detokenize(remove_special = false, unparse_special = render_special): joins the
    // pieces, drops the leading space an SPM space prefix added, and applies the model's
    // clean_up_tokenization_spaces rules (" ?" -> "?" for most BPE models).
    std::string decode(const std::vector<TokenId>& ids, bool render_special = false) const;

    int32_t n_vocab() const;
    TokenId bos() const;  // -1 if absent
    TokenId eos() const;
    TokenId eot() const;
    TokenId eom() const;
    TokenId unk() const;
    TokenId pad() const;
    // End of generation: eos, eot, eom and the tokens llama.cpp recognises by text
    // (<|im_end|>, <end_of_turn>, <|eot_id|>, <|endoftext|>, ...).
    bool is_eog(TokenId id) const;
    bool add_bos() const;
    bool add_eos() const;

    std::optional<TokenId> find_token(std::string_view text) const;
    const std::string& token_text(TokenId id) const;  // empty string for a bad id
    TokenType token_type(TokenId id) const;
    float token_score(TokenId id) const;

    std::string_view model_name() const;  // tokenizer.ggml.model: "llama", "gpt2", "gemma4"
    std::string_view pre_name() const;    // tokenizer.ggml.pre as read ("" if absent)
    // Non-fatal problems found while loading (unknown pre-tokenizer, ...); empty if none.
    const std::string& warning() const;

    struct Impl;  // src/tokenizer/tokenizer_impl.h

private:
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

// Streaming detokenizer for generated tokens: push() returns only complete UTF-8, holding
// back the start of a multi-byte character until its last byte arrives (an emoji split
// across byte tokens comes out whole). Bytes that can never form valid UTF-8 come out as
// U+FFFD, so the output is always valid UTF-8. Pieces are joined as llama.cpp's
// common_token_to_piece streams them (no leading-space removal, no space clean-up).
class TokenStreamDecoder {
public:
    explicit TokenStreamDecoder(const Tokenizer& tok, bool render_special = false)
        : tok_(tok), render_special_(render_special) {}
    std::string push(TokenId id);
    // Emits whatever is held back (an unfinished character becomes U+FFFD) and resets.
    std::string flush();

private:
    Tokenizer tok_;  // a shared handle: the decoder may outlive the caller's copy
    bool render_special_;
    std::string pending_;
};

}  // namespace kiln
