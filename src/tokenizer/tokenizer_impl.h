// Internals of kiln::Tokenizer, shared by tokenizer*.cpp. Names follow llama.cpp's
// llama-vocab.cpp where the behaviour is copied from it, so the two can be compared.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kiln/tokenizer.h"
#include "tokenizer/pretokenizer.h"

namespace kiln {

// llama_token_attr bits: llama.cpp adjusts these after loading (e.g. forces CONTROL on
// end-of-turn tokens), and they decide special-token splitting and rendering.
enum TokenAttr : uint16_t {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
    ATTR_LSTRIP = 1 << 7,
    ATTR_RSTRIP = 1 << 8,
};

// BPE merge ranks keyed by the merged text: "a b" is stored under "ab" with the length of
// "a", so a lookup of two adjacent symbols needs no string building.
class MergeTable {
public:
    void reserve(size_t merges, size_t text_bytes) {
        arena_.reserve(text_bytes);
        head_.reserve(merges);
        entries_.reserve(merges);
    }
    // First occurrence of a pair wins, as with llama.cpp's bpe_ranks.emplace.
    void add(std::string_view left, std::string_view right, int32_t rank);
    // Rank of merging `left` with the text right after it (`joined` = left + right), or -1.
    int32_t rank(std::string_view joined, size_t left_len) const;
    size_t size() const { return entries_.size(); }

private:
    struct Entry {
        uint32_t left_len;
        int32_t rank;
        int32_t next;  // next split of the same joined text, -1 at the end
    };
    std::string arena_;  // joined texts; reserved up front so views stay valid
    std::unordered_map<std::string_view, int32_t> head_;
    std::vector<Entry> entries_;
};

// Byte trie over the special tokens' texts: finds which of them occur in a text.
class SpecialTrie {
public:
    void insert(std::string_view text, int32_t value);
    // Calls f(value) for every special token text that starts at s[i].
    template <class F>
    void for_each_prefix(std::string_view s, size_t i, F&& f) const {
        int32_t node = 0;
        for (; i < s.size(); ++i) {
            node = child(node, uint8_t(s[i]));
            if (node < 0) return;
            if (nodes_[node].value >= 0) f(nodes_[node].value);
        }
    }
    bool may_start(uint8_t c) const { return first_[c]; }

private:
    struct Node {
        int32_t value = -1;
        std::vector<std::pair<uint8_t, int32_t>> kids;  // sorted by byte
    };
    int32_t child(int32_t node, uint8_t c) const;
    std::vector<Node> nodes_ = std::vector<Node>(1);
    std::array<bool, 256> first_{};
};

struct Tokenizer::Impl {
    enum class Kind { None, Spm, Bpe };
    Kind kind = Kind::None;
    std::string model, pre, warning;

    std::vector<std::string> texts;
    std::vector<float> scores;
    std::vector<uint16_t> attrs;  // TokenAttr bits; token_type() is derived from them
    // Views into `texts`. Built without reserve() in id order, like llama.cpp's
    // token_to_id, so that iterating it visits tokens in the same order (llama.cpp picks
    // the first matching text when it guesses eot/eom/fim ids).
    std::unordered_map<std::string_view, TokenId> to_id;

    MergeTable merges;
    detail::PreTokenizerSpec pre_spec;
    detail::RegexSplitter splitter;
    std::array<std::string, 256> byte_to_unicode;  // GPT-2 byte-level alphabet
    std::unordered_map<uint32_t, uint8_t> unicode_to_byte;

    TokenId bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1, mask = -1;
    TokenId fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    bool add_bos = false, add_eos = false, add_space_prefix = false;
    bool clean_spaces = false, escape_whitespaces = true, ignore_merges = false, byte_encode = true;
    bool gemma4_newlines = false;  // a word of only '\n' that is a token skips merging

    std::vector<uint8_t> eog;  // per id
    // Control / user-defined / unknown tokens, longest text first (tokenizer_st_partition).
    std::vector<TokenId> special_order;
    std::vector<int32_t> special_rank;  // per id: index in special_order, or -1
    SpecialTrie special_trie;           // values are indexes into special_order

    std::string piece_blob;           // token_to_piece(id, special = true), concatenated
    std::vector<uint32_t> piece_off;  // n + 1 offsets into piece_blob

    int32_t n_vocab() const { return int32_t(texts.size()); }
    bool valid(TokenId id) const { return id >= 0 && id < n_vocab(); }
    TokenId lookup(std::string_view text) const {
        auto it = to_id.find(text);
        return it == to_id.end() ? -1 : it->second;
    }
    // Token for one raw byte, as llama_vocab::byte_to_token (SPM: "<0xNN>", BPE: the
    // byte-level character), or -1.
    TokenId byte_token(uint8_t b) const;

    void encode_spm(std::string_view text, std::vector<TokenId>& out) const;  // tokenizer_spm.cpp
    void encode_bpe(std::string_view text, std::vector<TokenId>& out) const;  // tokenizer_bpe.cpp
    std::string piece_for_cache(TokenId id) const;                             // tokenizer_bpe.cpp
};

// Builds the GPT-2 byte <-> unicode tables (unicode_byte_to_utf8_map).
void init_byte_level_tables(Tokenizer::Impl& t);

// Loads everything from GGUF metadata (tokenizer_load.cpp).
Status load_tokenizer(const GgufFile& f, Tokenizer::Impl& t);

}  // namespace kiln
