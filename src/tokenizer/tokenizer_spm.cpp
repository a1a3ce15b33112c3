// SentencePiece-style BPE ("llama" vocab): llama.cpp's llm_tokenizer_spm_session.
// Start from single UTF-8 characters and keep merging the adjacent pair whose merged text
// is the vocabulary token with the highest score; what never becomes a token falls back
// to byte tokens <0xNN>.
#include <algorithm>
#include <queue>

#include "tokenizer/tokenizer_impl.h"

namespace kiln {

namespace {

struct Symbol {
    int32_t prev, next;
    uint32_t begin, n;  // byte range in the text; n == 0 once merged away
};

struct Bigram {
    int32_t left, right;
    float score;
    uint32_t size;
};

// Highest score first; among equal scores the leftmost pair (llm_bigram_spm::comparator).
struct BigramLess {
    bool operator()(const Bigram& l, const Bigram& r) const {
        return l.score < r.score || (l.score == r.score && l.left > r.left);
    }
};

// Byte length of the UTF-8 sequence a lead byte announces (unicode_len_utf8).
inline uint32_t utf8_seq_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

}  // namespace

TokenId Tokenizer::Impl::byte_token(uint8_t b) const {
    if (kind == Kind::Bpe && byte_encode) return lookup(byte_to_unicode[b]);
    static const char* hex = "0123456789ABCDEF";
    const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
    TokenId id = lookup(std::string_view(buf, 6));
    if (id >= 0 || kind == Kind::Bpe) return id;
    const char raw = char(b);  // SPM vocabularies without byte tokens may hold the byte itself
    return lookup(std::string_view(&raw, 1));
}

void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<TokenId>& out) const {
    std::vector<Symbol> symbols;
    symbols.reserve(text.size());
    for (size_t offs = 0; offs < text.size();) {
        uint32_t n = std::min<uint32_t>(utf8_seq_len(uint8_t(text[offs])), uint32_t(text.size() - offs));
        int32_t index = int32_t(symbols.size());
        symbols.push_back({index - 1, offs + n == text.size() ? -1 : index + 1, uint32_t(offs), n});
        offs += n;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
    auto try_add_bigram = [&](int32_t left, int32_t right) {
        if (left == -1 || right == -1) return;
        uint32_t size = symbols[left].n + symbols[right].n;
        TokenId id = lookup(text.substr(symbols[left].begin, size));
        if (id < 0) return;
        queue.push({left, right, scores[id], size});
    };
    for (int32_t i = 1; i < int32_t(symbols.size()); ++i) try_add_bigram(i - 1, i);

    while (!queue.empty()) {
        Bigram b = queue.top();
        queue.pop();
        Symbol& l = symbols[b.left];
        Symbol& r = symbols[b.right];
        // Stale: one side was merged into something else since the pair was queued.
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = b.left;
        try_add_bigram(l.prev, b.left);
        try_add_bigram(b.left, l.next);
    }

    if (symbols.empty()) return;
    for (int32_t i = 0; i != -1; i = symbols[i].next) {
        const Symbol& s = symbols[i];
        std::string_view piece = text.substr(s.begin, s.n);
        TokenId id = lookup(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // Only single characters can miss the vocabulary (merges always form tokens).
        size_t mark = out.size();
        bool all_bytes = true;
        for (char c : piece) {
            TokenId bt = byte_token(uint8_t(c));
            all_bytes = all_bytes && bt >= 0;
            out.push_back(bt);
        }
        if (!all_bytes) {  // llama.cpp throws here; one <unk> for the character is saner
            out.resize(mark);
            if (unk >= 0) out.push_back(unk);
        }
    }
}

}  // namespace kiln
