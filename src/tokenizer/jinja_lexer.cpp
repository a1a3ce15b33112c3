// Jinja lexer: splits a template into data and tag tokens as jinja2's lexer does with
// trim_blocks and lstrip_blocks: newlines normalized and one trailing newline dropped,
// `{%-`/`-%}` strip whitespace, `{%+`/`+%}` keep it, a block or comment tag alone on its
// line takes the line's leading whitespace, and a block or comment end eats one newline.
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "jinja_ast.h"
#include "tokenizer/pretokenizer.h"

namespace kiln::jinja {

[[noreturn]] void fail(int line, std::string message) { throw Error{std::move(message), line, false}; }

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int count_newlines(std::string_view s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

std::string rstrip_ws(std::string_view s) {
    size_t e = s.size();
    while (e > 0 && is_space(s[e - 1])) --e;
    return std::string(s.substr(0, e));
}


int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Python's "unicode-escape" decoding of a string literal's body.
std::string unescape(std::string_view s, int line) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        char e = s[++i];
        switch (e) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'a': out += '\a'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'v': out += '\v'; break;
            case '\\': out += '\\'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case '\n': break;  // line continuation
            case 'x': case 'u': case 'U': {
                size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                for (size_t k = 0; k < n; ++k) {
                    int h = i + 1 + k < s.size() ? hexval(s[i + 1 + k]) : -1;
                    if (h < 0) fail(line, "truncated \\" + std::string(1, e) + " escape in string literal");
                    cp = cp * 16 + uint32_t(h);
                }
                if (cp > 0x10FFFF) fail(line, "illegal Unicode character in string literal");
                kiln::detail::append_utf8(out, cp);
                i += n;
                break;
            }
            default:
                if (e >= '0' && e <= '7') {
                    uint32_t cp = uint32_t(e - '0');
                    for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) cp = cp * 8 + uint32_t(s[++i] - '0');
                    kiln::detail::append_utf8(out, cp);
                } else {
                    out += '\\';
                    out += e;
                }
        }
    }
    return out;
}

class Lexer {
public:
    explicit Lexer(std::string_view source) {
        // Normalize \r\n and \r to \n; drop one trailing newline (keep_trailing_newline=False).
        src_.reserve(source.size());
        for (size_t i = 0; i < source.size(); ++i) {
            if (source[i] == '\r') {
                src_ += '\n';
                if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
            } else {
                src_ += source[i];
            }
        }
        if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    }

    std::vector<Token> run() {
        while (pos_ < src_.size()) root();
        out_.push_back(Token{Tok::Eof, "", line_});
        return std::move(out_);
    }

private:
    std::string src_;
    size_t pos_ = 0;
    int line_ = 1;
    bool line_starting_ = true;
    std::vector<Token> out_;

    bool at(size_t p, const char* s) const { return src_.compare(p, std::strlen(s), s) == 0; }

    void emit(Tok t, std::string text, int line) { out_.push_back(Token{t, std::move(text), line}); }

    // Finds the next tag start at or after p: returns its position and kind ('{', '%', '#').
    size_t next_tag(size_t p, char& kind) const {
        for (size_t i = src_.find('{', p); i != std::string::npos; i = src_.find('{', i + 1)) {
            if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
                kind = src_[i + 1];
                return i;
            }
        }
        return std::string::npos;
    }

    // Text before a tag, with `-` / lstrip_blocks applied; emits it as data.
    void emit_text(std::string_view text, char sign, bool is_var) {
        std::string t;
        int stripped_newlines = 0;
        if (sign == '-') {
            t = rstrip_ws(text);
            stripped_newlines = count_newlines(text.substr(t.size()));
        } else {
            t = std::string(text);
            if (sign != '+' && !is_var) {
                size_t l = t.rfind('\n');
                l = l == std::string::npos ? 0 : l + 1;
                if (l > 0 || line_starting_) {
                    bool ws = l < t.size();
                    for (size_t k = l; k < t.size() && ws; ++k) ws = is_space(t[k]);
                    if (ws) t.resize(l);
                }
            }
        }
        if (!t.empty()) emit(Tok::Data, t, line_);
        line_ += count_newlines(t) + stripped_newlines;
    }

    void root() {
        char kind = 0;
        size_t tag = next_tag(pos_, kind);
        if (tag == std::string::npos) {
            std::string text = src_.substr(pos_);
            emit(Tok::Data, text, line_);
            line_ += count_newlines(text);
            pos_ = src_.size();
            return;
        }
        size_t after = tag + 2;
        char sign = after < src_.size() && (src_[after] == '-' || src_[after] == '+') ? src_[after] : 0;
        if (sign) ++after;
        std::string_view text(src_.data() + pos_, tag - pos_);
        if (kind == '%' && raw_block(text, sign, after)) return;
        emit_text(text, sign, kind == '{');
        line_starting_ = false;
        pos_ = after;
        if (kind == '#') return comment();
        emit(kind == '{' ? Tok::VarBegin : Tok::BlockBegin, "", line_);
        tag_body(kind == '{');
    }

    // Ends a block or comment tag at pos_ ("%}" or "#}" with its modifier); true if found.
    bool block_end(char c) {
        auto end2 = [&](size_t p) { return p + 1 < src_.size() && src_[p] == c && src_[p + 1] == '}'; };
        if (src_[pos_] == '+' && end2(pos_ + 1)) {
            pos_ += 3;
            line_starting_ = false;
        } else if (src_[pos_] == '-' && end2(pos_ + 1)) {
            pos_ += 3;
            size_t s = pos_;
            while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
            line_starting_ = pos_ > s ? src_[pos_ - 1] == '\n' : false;
            line_ += count_newlines(std::string_view(src_).substr(s, pos_ - s));
        } else if (end2(pos_)) {
            pos_ += 2;
            line_starting_ = false;
            if (pos_ < src_.size() && src_[pos_] == '\n') {
                ++pos_;
                ++line_;
                line_starting_ = true;
            }
        } else {
            return false;
        }
        return true;
    }

    void comment() {
        int start_line = line_;
        for (; pos_ < src_.size(); ++pos_) {
            if (block_end('#')) return;
            if (src_[pos_] == '\n') ++line_;
        }
        fail(start_line, "missing end of comment tag");
    }

    // {% raw %}...{% endraw %}: emits the body as data. False if this tag is not `raw`.
    bool raw_block(std::string_view text, char sign, size_t after) {
        size_t p = after;
        while (p < src_.size() && is_space(src_[p])) ++p;
        if (!at(p, "raw")) return false;
        p += 3;
        while (p < src_.size() && is_space(src_[p])) ++p;
        size_t body;
        if (at(p, "-%}")) {
            body = p + 3;
            while (body < src_.size() && is_space(src_[body])) ++body;
        } else if (at(p, "%}")) {
            body = p + 2;
        } else {
            return false;
        }
        emit_text(text, sign, false);
        line_ += count_newlines(std::string_view(src_).substr(pos_ + text.size(), body - pos_ - text.size()));
        for (size_t q = src_.find("{%", body); q != std::string::npos; q = src_.find("{%", q + 1)) {
            size_t r = q + 2;
            char s2 = r < src_.size() && (src_[r] == '-' || src_[r] == '+') ? src_[r] : 0;
            if (s2) ++r;
            while (r < src_.size() && is_space(src_[r])) ++r;
            if (!at(r, "endraw")) continue;
            r += 6;
            while (r < src_.size() && is_space(src_[r])) ++r;
            pos_ = r;
            line_starting_ = false;
            emit_text(std::string_view(src_).substr(body, q - body), s2, false);
            if (!block_end('%')) fail(line_, "missing end of raw directive");
            return true;
        }
        fail(line_, "missing end of raw directive");
    }

    void tag_body(bool is_var) {
        std::vector<char> balance;
        const int start_line = line_;
        while (true) {
            if (pos_ >= src_.size()) fail(start_line, is_var ? "unexpected end of template, expected '}}'" : "unexpected end of template, expected '%}'");
            if (balance.empty()) {
                if (is_var) {
                    if (at(pos_, "-}}")) {
                        pos_ += 3;
                        size_t s = pos_;
                        while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
                        line_ += count_newlines(std::string_view(src_).substr(s, pos_ - s));
                        line_starting_ = pos_ > s && src_[pos_ - 1] == '\n';
                        emit(Tok::VarEnd, "", line_);
                        return;
                    }
                    if (at(pos_, "}}")) {
                        pos_ += 2;
                        line_starting_ = false;
                        emit(Tok::VarEnd, "", line_);
                        return;
                    }
                } else {
                    int l = line_;
                    if (block_end('%')) {
                        emit(Tok::BlockEnd, "", l);
                        return;
                    }
                }
            }
            char c = src_[pos_];
            if (is_space(c)) {
                if (c == '\n') ++line_;
                ++pos_;
                continue;
            }
            if (std::isdigit(static_cast<unsigned char>(c))) {
                number();
                continue;
            }
            if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
                size_t s = pos_;
                while (pos_ < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
                emit(Tok::Name, src_.substr(s, pos_ - s), line_);
                continue;
            }
            if (c == '\'' || c == '"') {
                string_literal(c);
                continue;
            }
            static const char* ops[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")",
                                        "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
            bool matched = false;
            for (const char* op : ops) {
                if (!at(pos_, op)) continue;
                std::string o = op;
                if (o == "{" || o == "(" || o == "[") {
                    balance.push_back(o == "{" ? '}' : o == "(" ? ')' : ']');
                } else if (o == "}" || o == ")" || o == "]") {
                    if (balance.empty()) fail(line_, "unexpected '" + o + "'");
                    if (balance.back() != o[0]) fail(line_, "unexpected '" + o + "', expected '" + std::string(1, balance.back()) + "'");
                    balance.pop_back();
                }
                emit(Tok::Op, o, line_);
                pos_ += o.size();
                matched = true;
                break;
            }
            if (!matched) fail(line_, std::string("unexpected char '") + c + "'");
        }
    }

    void number() {
        size_t s = pos_;
        std::string digits;
        auto take_digits = [&] {
            size_t n = 0;
            while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || (src_[pos_] == '_' && n > 0))) {
                if (src_[pos_] != '_') digits += src_[pos_];
                ++pos_, ++n;
            }
        };
        take_digits();
        bool is_float = false;
        if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1])) && !(s > 0 && src_[s - 1] == '.')) {
            is_float = true;
            digits += '.';
            ++pos_;
            take_digits();
        }
        if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E') && !(s > 0 && src_[s - 1] == '.')) {
            size_t p = pos_ + 1;
            if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
            if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
                digits += 'e';
                digits.append(src_, pos_ + 1, p - pos_ - 1);
                pos_ = p;
                is_float = true;
                take_digits();
            }
        }
        Token t{is_float ? Tok::Float : Tok::Int, src_.substr(s, pos_ - s), line_};
        if (is_float) {
            t.fval = std::strtod(digits.c_str(), nullptr);
        } else {
            errno = 0;
            t.ival = std::strtoll(digits.c_str(), nullptr, 10);
            if (errno == ERANGE) fail(line_, "integer literal too large");
        }
        out_.push_back(std::move(t));
    }

    void string_literal(char q) {
        size_t s = ++pos_;
        int start_line = line_;
        while (pos_ < src_.size() && src_[pos_] != q) {
            if (src_[pos_] == '\\' && pos_ + 1 < src_.size()) ++pos_;
            if (src_[pos_] == '\n') ++line_;
            ++pos_;
        }
        if (pos_ >= src_.size()) fail(start_line, "unterminated string literal");
        Token t{Tok::String, unescape(std::string_view(src_).substr(s, pos_ - s), start_line), start_line};
        ++pos_;
        out_.push_back(std::move(t));
    }
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace kiln::jinja
