// kiln::Tokenizer: the public API, special-token splitting (llama.cpp's
// tokenizer_st_partition), detokenization and the streaming UTF-8 decoder. Loading lives in
// tokenizer_load.cpp, the merge algorithms in tokenizer_spm.cpp / tokenizer_bpe.cpp.
#include "kiln/tokenizer.h"

#include <algorithm>

#include "kiln/format/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace kiln {

namespace {

const std::shared_ptr<const Tokenizer::Impl>& empty_impl() {
    static const std::shared_ptr<const Tokenizer::Impl> e = std::make_shared<Tokenizer::Impl>();
    return e;
}

// C isspace in the "C" locale (what llama.cpp's lstrip/rstrip use).
inline bool is_c_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// A piece of the input: raw text [begin, end) or one special token.
struct Fragment {
    size_t begin, end;
    TokenId token;  // -1 for raw text
};

// tokenizer_st_partition: each special token in turn (longest first) cuts the remaining
// raw text at its occurrences, left to right. Instead of scanning the text once per special
// token (thousands for Gemma), a trie finds which ones occur at all; only those scan.
std::vector<Fragment> partition(const Tokenizer::Impl& t, std::string_view text, bool parse_special) {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    frags.push_back({0, text.size(), -1});
    if (t.special_order.empty()) return frags;

    std::vector<int32_t> ranks;
    std::vector<uint8_t> seen(t.special_order.size(), 0);
    for (size_t i = 0; i < text.size(); ++i) {
        if (!t.special_trie.may_start(uint8_t(text[i]))) continue;
        t.special_trie.for_each_prefix(text, i, [&](int32_t rank) {
            TokenId id = t.special_order[rank];
            // Without parse_special only user-defined tokens split the text.
            if (seen[rank] || (!parse_special && (t.attrs[id] & (ATTR_CONTROL | ATTR_UNKNOWN)))) return;
            seen[rank] = 1;
            ranks.push_back(rank);
        });
    }
    std::sort(ranks.begin(), ranks.end());

    std::vector<Fragment> next;
    for (int32_t rank : ranks) {
        const TokenId id = t.special_order[rank];
        const std::string& st = t.texts[id];
        const uint16_t attr = t.attrs[id];
        next.clear();
        for (const Fragment& f : frags) {
            if (f.token >= 0) {
                next.push_back(f);
                continue;
            }
            size_t cur = f.begin;
            const std::string_view area = text.substr(0, f.end);
            while (cur < f.end) {
                size_t pos = area.find(st, cur);
                if (pos == std::string_view::npos) break;
                size_t left_end = pos;
                if (attr & ATTR_LSTRIP)
                    while (left_end > cur && is_c_space(text[left_end - 1])) --left_end;
                if (left_end > cur) next.push_back({cur, left_end, -1});
                next.push_back({pos, pos + st.size(), id});
                cur = pos + st.size();
                if (attr & ATTR_RSTRIP)
                    while (cur < f.end && is_c_space(text[cur])) ++cur;
            }
            if (cur < f.end) next.push_back({cur, f.end, -1});
        }
        frags.swap(next);
    }
    return frags;
}

// ' ' -> U+2581 (llama_escape_whitespace).
void append_escaped(std::string& out, std::string_view s) {
    for (char c : s) {
        if (c == ' ') out += "\xE2\x96\x81";
        else out += c;
    }
}

// llama_detokenize's clean_up_tokenization_spaces, kept byte for byte (it edits in place
// and later passes look at characters earlier passes rewrote).
void clean_up_spaces(std::string& s) {
    char* text = s.data();
    int64_t total = int64_t(s.size());

    const int64_t total1 = total;  // " ?", " !", " .", " ," lose the space
    total = total ? 1 : 0;
    for (int64_t i = 1; i < total1; ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        text[total++] = x;
    }

    const int64_t total2 = total;  // " ' " -> "'"
    total = total ? 1 : 0;
    for (int64_t i = 1; i < total2; ++i) {
        const char x = text[i];
        if (x == '\'' && i + 1 < total2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
            total--;
            text[++i] = '\0';
        }
        text[total++] = x;
    }

    const int64_t total3 = total;  // " 's", " 'm", " 're", " 've" lose the space
    total = total ? 1 : 0;
    for (int64_t i = 1; i < total3; ++i) {
        const char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < total3) {
            const char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm') {
                total--;
            } else if (x1 != 't' && x1 != 'd' && i + 2 < total3) {
                const char x2 = text[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
            }
        }
        text[total++] = x;
    }
    s.resize(size_t(total));
}

// Moves the longest well-formed UTF-8 prefix of `in` to the result; ill-formed bytes become
// U+FFFD (one per maximal ill-formed subpart). An unfinished character at the end stays in
// `in` unless `final`.
std::string take_utf8(std::string& in, bool final) {
    std::string out;
    out.reserve(in.size());
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    const size_t n = in.size();
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) {
            out += char(c);
            ++i;
            continue;
        }
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        // Allowed range of the second byte excludes overlongs, surrogates and > U+10FFFF.
        uint8_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        uint8_t hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        size_t k = 1;
        for (; k < len && i + k < n; ++k) {
            uint8_t b = p[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
        }
        if (k == len) {
            out.append(in, i, len);
            i += len;
        } else if (i + k == n && !final) {
            break;  // a valid start of a character: wait for the rest
        } else {
            out += "\xEF\xBF\xBD";
            i += k;
        }
    }
    in.erase(0, i);
    return out;
}

}  // namespace

// ---- Tokenizer ------------------------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(empty_impl()) {}

Expected<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
    auto impl = std::make_shared<Impl>();
    Status s = load_tokenizer(f, *impl);
    if (!s.is_ok()) return s;
    return Tokenizer(std::shared_ptr<const Impl>(std::move(impl)));
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const Impl& t = *impl_;
    std::vector<TokenId> out;
    if (t.kind == Impl::Kind::None) return out;
    out.reserve(text.size() / 3 + 4);
    const std::vector<Fragment> frags = partition(t, text, parse_special);
    if (add_special && t.add_bos && t.bos >= 0) out.push_back(t.bos);

    std::string buf;
    bool prev_special = true;  // SPM: the first raw fragment gets the space prefix
    for (const Fragment& f : frags) {
        if (f.token >= 0) {
            out.push_back(f.token);
            prev_special = true;
            continue;
        }
        std::string_view raw = text.substr(f.begin, f.end - f.begin);
        buf.clear();
        if (t.kind == Impl::Kind::Spm) {
            if (t.add_space_prefix && prev_special) buf = "\xE2\x96\x81";
            append_escaped(buf, raw);
            t.encode_spm(buf, out);
        } else if (t.escape_whitespaces) {
            append_escaped(buf, raw);
            t.encode_bpe(buf, out);
        } else {
            t.encode_bpe(raw, out);
        }
        prev_special = false;
    }
    if (add_special && t.add_eos && t.eos >= 0) out.push_back(t.eos);
    return out;
}

std::string Tokenizer::token_to_piece(TokenId id, bool render_special) const {
    const Impl& t = *impl_;
    if (!t.valid(id)) return {};
    if (!render_special && (t.attrs[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) return {};
    return t.piece_blob.substr(t.piece_off[id], t.piece_off[id + 1] - t.piece_off[id]);
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool render_special) const {
    const Impl& t = *impl_;
    std::string text;
    bool remove_space = t.add_space_prefix;  // the space the SPM prefix added
    for (TokenId id : ids) {
        if (!t.valid(id)) continue;  // llama.cpp would throw; a bad id contributes nothing
        if (render_special || !(t.attrs[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) {
            std::string_view piece(t.piece_blob.data() + t.piece_off[id], t.piece_off[id + 1] - t.piece_off[id]);
            if (remove_space && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
            text += piece;
        }
        remove_space = false;
    }
    if (t.clean_spaces) clean_up_spaces(text);
    return text;
}

int32_t Tokenizer::n_vocab() const { return impl_->n_vocab(); }
TokenId Tokenizer::bos() const { return impl_->bos; }
TokenId Tokenizer::eos() const { return impl_->eos; }
TokenId Tokenizer::eot() const { return impl_->eot; }
TokenId Tokenizer::eom() const { return impl_->eom; }
TokenId Tokenizer::unk() const { return impl_->unk; }
TokenId Tokenizer::pad() const { return impl_->pad; }
bool Tokenizer::is_eog(TokenId id) const { return impl_->valid(id) && impl_->eog[id]; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
std::string_view Tokenizer::model_name() const { return impl_->model; }
std::string_view Tokenizer::pre_name() const { return impl_->pre; }
const std::string& Tokenizer::warning() const { return impl_->warning; }

std::optional<TokenId> Tokenizer::find_token(std::string_view text) const {
    TokenId id = impl_->lookup(text);
    if (id < 0) return std::nullopt;
    return id;
}

const std::string& Tokenizer::token_text(TokenId id) const {
    static const std::string empty;
    return impl_->valid(id) ? impl_->texts[id] : empty;
}

TokenType Tokenizer::token_type(TokenId id) const {
    if (!impl_->valid(id)) return TokenType::Undefined;
    const uint16_t a = impl_->attrs[id];
    if (a & ATTR_BYTE) return TokenType::Byte;
    if (a & ATTR_CONTROL) return TokenType::Control;
    if (a & ATTR_USER_DEFINED) return TokenType::UserDefined;
    if (a & ATTR_UNKNOWN) return TokenType::Unknown;
    if (a & ATTR_UNUSED) return TokenType::Unused;
    if (a & ATTR_NORMAL) return TokenType::Normal;
    return TokenType::Undefined;
}

float Tokenizer::token_score(TokenId id) const { return impl_->valid(id) ? impl_->scores[id] : 0.0f; }

// ---- TokenStreamDecoder -----------------------------------------------------------------------

std::string TokenStreamDecoder::push(TokenId id) {
    pending_ += tok_.token_to_piece(id, render_special_);
    return take_utf8(pending_, false);
}

std::string TokenStreamDecoder::flush() { return take_utf8(pending_, true); }

}  // namespace kiln
