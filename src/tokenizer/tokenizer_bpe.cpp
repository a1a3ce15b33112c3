// Byte-level BPE ("gpt2" and "gemma4" vocabs): llama.cpp's llm_tokenizer_bpe_session.
// The pre-tokenizer cuts the text into words; each word is spelled in GPT-2's byte-level
// alphabet (unless the vocab uses raw UTF-8) and merged pairwise by merge rank, lowest
// rank first. Also the token -> text direction (token_to_piece) for every vocab kind.
#include <algorithm>
#include <cstring>
#include <queue>

#include "tokenizer/tokenizer_impl.h"

namespace kiln {

// ---- MergeTable / SpecialTrie -------------------------------------------------------------

void MergeTable::add(std::string_view left, std::string_view right, int32_t rank) {
    const size_t before = arena_.size();
    KILN_ASSERT(before + left.size() + right.size() <= arena_.capacity(), "MergeTable arena not reserved");
    arena_.append(left).append(right);
    std::string_view joined(arena_.data() + before, left.size() + right.size());
    auto [it, inserted] = head_.try_emplace(joined, int32_t(entries_.size()));
    if (!inserted) {
        arena_.resize(before);  // reuse the stored copy of the joined text
        int32_t* link = &it->second;
        while (*link >= 0) {
            if (entries_[*link].left_len == left.size()) return;  // duplicate pair: first rank wins
            link = &entries_[*link].next;
        }
        *link = int32_t(entries_.size());
    }
    entries_.push_back({uint32_t(left.size()), rank, -1});
}

int32_t MergeTable::rank(std::string_view joined, size_t left_len) const {
    auto it = head_.find(joined);
    if (it == head_.end()) return -1;
    for (int32_t e = it->second; e >= 0; e = entries_[e].next)
        if (entries_[e].left_len == left_len) return entries_[e].rank;
    return -1;
}

void SpecialTrie::insert(std::string_view text, int32_t value) {
    if (text.empty()) return;
    first_[uint8_t(text[0])] = true;
    int32_t node = 0;
    for (char ch : text) {
        uint8_t c = uint8_t(ch);
        int32_t next = child(node, c);
        if (next < 0) {
            next = int32_t(nodes_.size());
            nodes_.emplace_back();
            auto& kids = nodes_[node].kids;
            kids.insert(std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t(-1))), {c, next});
        }
        node = next;
    }
    nodes_[node].value = value;
}

int32_t SpecialTrie::child(int32_t node, uint8_t c) const {
    const auto& kids = nodes_[node].kids;
    auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t(-1)));
    return it != kids.end() && it->first == c ? it->second : -1;
}

// ---- GPT-2 byte-level alphabet --------------------------------------------------------------

namespace {


// Lenient decoder of llama.cpp's unicode_cpt_from_utf8; 0xFFFD (consuming 1 byte) on error.
uint32_t next_cpt(std::string_view s, size_t& i) {
    uint8_t c = uint8_t(s[i]);
    if (c < 0x80) {
        ++i;
        return c;
    }
    int n = !(c & 0x40) ? 0 : !(c & 0x20) ? 2 : !(c & 0x10) ? 3 : !(c & 0x08) ? 4 : 0;
    bool ok = n != 0 && i + n <= s.size();
    uint32_t cp = c & (0x7F >> n);
    for (int k = 1; ok && k < n; ++k) {
        ok = (uint8_t(s[i + k]) & 0xC0) == 0x80;
        cp = cp << 6 | (uint8_t(s[i + k]) & 0x3F);
    }
    if (!ok) {
        ++i;
        return 0xFFFD;
    }
    i += size_t(n);
    return cp;
}

struct Symbol {
    int32_t prev, next;
    uint32_t begin, n;  // byte range in the word; n == 0 once merged away
};

struct Bigram {
    int32_t left, right, rank;
    uint32_t size;
};

// Lowest rank first; among equal ranks the leftmost pair (llm_bigram_bpe::comparator).
struct BigramGreater {
    bool operator()(const Bigram& l, const Bigram& r) const {
        return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
    }
};

inline uint32_t utf8_seq_len(uint8_t c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

}  // namespace

void init_byte_level_tables(Tokenizer::Impl& t) {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? uint32_t(b) : uint32_t(256 + n++);
        t.byte_to_unicode[b].clear();
        detail::append_utf8(t.byte_to_unicode[b], cp);
        t.unicode_to_byte[cp] = uint8_t(b);
    }
}

// ---- encode -------------------------------------------------------------------------------

void Tokenizer::Impl::encode_bpe(std::string_view text, std::vector<TokenId>& out) const {
    std::vector<std::string> words;
    splitter.split(text, words);

    std::vector<Symbol> symbols;
    std::vector<Bigram> heap;
    std::string encoded;
    for (std::string& raw : words) {
        if (byte_encode) {  // unicode_byte_encoding_process
            encoded.clear();
            for (char c : raw) encoded += byte_to_unicode[uint8_t(c)];
            raw.swap(encoded);
        }
        const std::string_view word = raw;
        symbols.clear();
        heap.clear();
        const bool whole = (ignore_merges || (gemma4_newlines && word.find_first_not_of('\n') == std::string_view::npos)) &&
                           lookup(word) >= 0;
        if (whole) {
            symbols.push_back({-1, -1, 0, uint32_t(word.size())});
        } else {
            for (size_t offs = 0; offs < word.size();) {
                uint32_t n = std::min<uint32_t>(utf8_seq_len(uint8_t(word[offs])), uint32_t(word.size() - offs));
                int32_t index = int32_t(symbols.size());
                symbols.push_back({index - 1, offs + n == word.size() ? -1 : index + 1, uint32_t(offs), n});
                offs += n;
            }
        }

        auto add_bigram = [&](int32_t left, int32_t right) {
            if (left == -1 || right == -1) return;
            const Symbol& l = symbols[left];
            uint32_t size = l.n + symbols[right].n;
            int32_t rank = merges.rank(word.substr(l.begin, size), l.n);
            if (rank < 0) return;
            heap.push_back({left, right, rank, size});
            std::push_heap(heap.begin(), heap.end(), BigramGreater());
        };
        for (int32_t i = 1; i < int32_t(symbols.size()); ++i) add_bigram(i - 1, i);

        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), BigramGreater());
            Bigram b = heap.back();
            heap.pop_back();
            Symbol& l = symbols[b.left];
            Symbol& r = symbols[b.right];
            // Stale: the symbols are adjacent and contiguous, so the pair still spells the
            // queued text exactly when the sizes still add up.
            if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
            l.n += r.n;
            r.n = 0;
            l.next = r.next;
            if (r.next >= 0) symbols[r.next].prev = b.left;
            add_bigram(l.prev, b.left);
            add_bigram(b.left, l.next);
        }

        for (const Symbol& s : symbols) {
            if (s.n == 0) continue;
            std::string_view piece = word.substr(s.begin, s.n);
            TokenId id = lookup(piece);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
            // Not a token: try each byte on its own; llama.cpp silently drops misses.
            for (char c : piece) {
                TokenId bt = byte_encode ? lookup(std::string_view(&c, 1)) : byte_token(uint8_t(c));
                if (bt >= 0) out.push_back(bt);
            }
        }
    }
}

// ---- token -> bytes (llama_vocab::impl::token_to_piece with special = true) ----------------

std::string Tokenizer::Impl::piece_for_cache(TokenId id) const {
    const std::string& text = texts[id];
    const uint16_t attr = attrs[id];
    if (attr & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) return text;
    if (attr & ATTR_NORMAL) {
        if (kind == Kind::Spm || escape_whitespaces) {  // U+2581 -> ' '
            std::string out;
            out.reserve(text.size());
            for (size_t i = 0; i < text.size(); ++i) {
                if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
                    out += ' ';
                    i += 2;
                } else {
                    out += text[i];
                }
            }
            return out;
        }
        std::string out;  // llama_decode_text: byte-level alphabet -> bytes
        for (size_t i = 0; i < text.size();) {
            uint32_t cp = next_cpt(text, i);
            auto it = unicode_to_byte.find(cp);
            if (it != unicode_to_byte.end()) {
                out += char(it->second);
                continue;
            }
            std::string utf8;
            detail::append_utf8(utf8, cp > 0x10FFFF ? 0xFFFD : cp);
            out += "[UNK_BYTE_0x";
            for (char c : utf8) {
                out += "0123456789abcdef"[uint8_t(c) >> 4];
                out += "0123456789abcdef"[uint8_t(c) & 15];
            }
            out += text + "]";
        }
        return out;
    }
    if (attr & ATTR_BYTE) {  // "<0xNN>": strtol of the two characters after "<0x"
        unsigned v = 0;
        for (size_t i = 3; i < 5 && i < text.size(); ++i) {
            char c = text[i];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) break;
            v = v * 16 + unsigned(d);
        }
        return std::string(1, char(v));
    }
    return "";  // undefined / unused tokens render as nothing
}

}  // namespace kiln
