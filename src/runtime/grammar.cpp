// GBNF grammars: the parser, the matcher (a set of parse stacks advanced one code point at a
// time) and constrained sampling. include/kiln/grammar.h.
#include "kiln/grammar.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "kiln/tokenizer.h"

namespace kiln {

struct Grammar::Rules {
    struct Element {
        bool is_ref = false;
        bool negate = false;                               // chars: any code point outside the ranges
        uint32_t rule = 0;                                 // ref: the rule's id
        std::vector<std::pair<uint32_t, uint32_t>> ranges;  // chars: inclusive code point ranges
        bool matches(uint32_t c) const {
            bool in = false;
            for (auto [lo, hi] : ranges) in |= c >= lo && c <= hi;
            return in != negate;
        }
    };
    using Sequence = std::vector<Element>;
    std::vector<std::vector<Sequence>> rules;  // (rule id) alternatives; an empty sequence matches ""
    std::vector<std::string> names;            // (rule id)
    uint32_t root = 0;
};

namespace {

using Rules = Grammar::Rules;
using Element = Rules::Element;
using Sequence = Rules::Sequence;

// Decodes one UTF-8 character at s[i]: its code point and length; length 0 when the bytes
// end inside the character, -1 when they are not UTF-8.
int decode_utf8(std::string_view s, size_t i, uint32_t* cp) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    const int n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : -1;
    if (n < 0) return -1;
    uint32_t c = n == 1 ? b : n == 2 ? b & 0x1F : n == 3 ? b & 0x0F : b & 0x07;
    for (int k = 1; k < n; ++k) {
        if (i + size_t(k) >= s.size()) return 0;
        const unsigned char cb = static_cast<unsigned char>(s[i + size_t(k)]);
        if ((cb >> 6) != 2) return -1;
        c = (c << 6) | (cb & 0x3F);
    }
    // Overlong forms (a space as 4 bytes), surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    *cp = c;
    return n;
}

class Parser {
public:
    Parser(std::string_view src, Rules& r) : s_(src), r_(r) {}

    Status parse() {
        for (;;) {
            skip(true);
            if (i_ >= s_.size()) break;
            const std::string name = identifier();
            if (name.empty()) return error("expected a rule name");
            skip(false);
            if (s_.substr(i_, 3) != "::=") return error("expected '::=' after '" + name + "'");
            i_ += 3;
            const uint32_t id = rule_id(name);
            if (defined_[id]) return error("rule '" + name + "' is defined twice");
            defined_[id] = true;
            KILN_TRY(alternatives(id, /*nested=*/false));
        }
        for (size_t id = 0; id < r_.names.size(); ++id)
            if (!defined_[id]) return Status::error("grammar: rule '%s' is used but not defined", r_.names[id].c_str());
        return Status::ok();
    }
    uint32_t rule_id(const std::string& name) {
        auto [it, fresh] = ids_.emplace(name, uint32_t(r_.names.size()));
        if (fresh) {
            r_.names.push_back(name);
            r_.rules.emplace_back();
            defined_.push_back(false);
        }
        return it->second;
    }
    bool defined(const std::string& name) const { return ids_.count(name) != 0; }

private:
    Status error(const std::string& what) const {
        const int line = 1 + int(std::count(s_.begin(), s_.begin() + long(std::min(i_, s_.size())), '\n'));
        return Status::error("grammar line %d: %s", line, what.c_str());
    }
    // Spaces, tabs, comments; newlines too when `newlines`.
    void skip(bool newlines) {
        while (i_ < s_.size()) {
            const char c = s_[i_];
            if (c == '#') {
                while (i_ < s_.size() && s_[i_] != '\n') ++i_;
            } else if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
                ++i_;
            } else {
                break;
            }
        }
    }
    static bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; }
    std::string identifier() {
        const size_t b = i_;
        while (i_ < s_.size() && name_char(s_[i_])) ++i_;
        return std::string(s_.substr(b, i_ - b));
    }
    // At "name ::=" (the next rule's start)?
    bool at_rule_start() const {
        size_t j = i_;
        while (j < s_.size() && name_char(s_[j])) ++j;
        if (j == i_) return false;
        while (j < s_.size() && (s_[j] == ' ' || s_[j] == '\t')) ++j;
        return s_.substr(j, 3) == "::=";
    }
    Status alternatives(uint32_t id, bool nested) {
        for (;;) {
            Sequence seq;
            KILN_TRY(sequence(seq, nested));
            r_.rules[id].push_back(std::move(seq));
            skip(true);
            if (i_ < s_.size() && s_[i_] == '|') {
                ++i_;
                continue;
            }
            return Status::ok();
        }
    }
    // One escaped or plain character of a literal or class.
    Status character(uint32_t* cp) {
        if (i_ >= s_.size()) return error("unexpected end inside a literal or class");
        if (s_[i_] != '\\') {
            const int n = decode_utf8(s_, i_, cp);
            if (n <= 0) return error("invalid UTF-8");
            i_ += size_t(n);
            return Status::ok();
        }
        if (++i_ >= s_.size()) return error("a '\\' at the end");
        const char e = s_[i_++];
        auto hex = [&](int digits) -> Status {
            uint32_t v = 0;
            for (int k = 0; k < digits; ++k, ++i_) {
                if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_]))) return error("bad hex escape");
                const char h = s_[i_];
                v = v * 16 + uint32_t(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            *cp = v;
            return Status::ok();
        };
        switch (e) {
            case 'n': *cp = '\n'; return Status::ok();
            case 't': *cp = '\t'; return Status::ok();
            case 'r': *cp = '\r'; return Status::ok();
            case 'x': return hex(2);
            case 'u': return hex(4);
            case 'U': return hex(8);
            case '\\': case '"': case '[': case ']': case '-': case '^': case '/': *cp = uint32_t(e); return Status::ok();
            default: return error(std::string("unknown escape '\\") + e + "'");
        }
    }
    Status sequence(Sequence& seq, bool nested) {
        size_t last = seq.size();  // where the last element (a literal counts as one) starts
        for (;;) {
            skip(true);
            if (i_ >= s_.size()) return Status::ok();
            const char c = s_[i_];
            if (c == '|' || (c == ')' && nested)) return Status::ok();
            if (c == ')') return error("')' without '('");
            if (!nested && at_rule_start()) return Status::ok();
            if (c == '"') {
                ++i_;
                last = seq.size();
                while (i_ < s_.size() && s_[i_] != '"') {
                    uint32_t cp = 0;
                    KILN_TRY(character(&cp));
                    seq.push_back({false, false, 0, {{cp, cp}}});
                }
                if (i_ >= s_.size()) return error("unterminated literal");
                ++i_;
            } else if (c == '[') {
                ++i_;
                Element e;
                if (i_ < s_.size() && s_[i_] == '^') e.negate = true, ++i_;
                while (i_ < s_.size() && s_[i_] != ']') {
                    uint32_t lo = 0, hi = 0;
                    KILN_TRY(character(&lo));
                    hi = lo;
                    if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
                        ++i_;
                        KILN_TRY(character(&hi));
                    }
                    e.ranges.push_back({lo, hi});
                }
                if (i_ >= s_.size()) return error("unterminated character class");
                ++i_;
                last = seq.size();
                seq.push_back(std::move(e));
            } else if (c == '.') {
                ++i_;
                last = seq.size();
                seq.push_back({false, true, 0, {}});
            } else if (c == '(') {
                ++i_;
                const uint32_t id = rule_id("(group " + std::to_string(r_.names.size()) + ")");
                defined_[id] = true;
                KILN_TRY(alternatives(id, /*nested=*/true));
                if (i_ >= s_.size() || s_[i_] != ')') return error("missing ')'");
                ++i_;
                last = seq.size();
                seq.push_back({true, false, id, {}});
            } else if (name_char(c)) {
                const std::string name = identifier();
                last = seq.size();
                seq.push_back({true, false, rule_id(name), {}});
            } else if (c == '*' || c == '+' || c == '?' || c == '{') {
                if (last >= seq.size()) return error(std::string("'") + c + "' with nothing before it");
                KILN_TRY(repeat(seq, last));
            } else {
                return error(std::string("unexpected '") + c + "'");
            }
        }
    }
    // Rewrites seq[last..] (the last element) as a repetition: x* -> R ::= x R | "", x+ ->
    // x R*, x? -> R ::= x | "", x{m,n} -> x m times then n-m nested optionals.
    Status repeat(Sequence& seq, size_t last) {
        const Sequence item(seq.begin() + long(last), seq.end());
        seq.resize(last);
        long lo = 0, hi = -1;  // hi -1: unbounded
        const char c = s_[i_++];
        if (c == '+') lo = 1;
        else if (c == '?') hi = 1;
        else if (c == '{') {
            auto number = [&](long* out) {
                skip(false);
                const size_t b = i_;
                while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
                if (i_ == b || i_ - b > 6) return false;
                *out = std::stol(std::string(s_.substr(b, i_ - b)));
                skip(false);
                return true;
            };
            if (!number(&lo)) return error("expected a count after '{'");
            hi = lo;
            if (i_ < s_.size() && s_[i_] == ',') {
                ++i_;
                skip(false);
                hi = -1;
                if (i_ < s_.size() && s_[i_] != '}' && !number(&hi)) return error("expected a count after ','");
            }
            if (i_ >= s_.size() || s_[i_] != '}') return error("missing '}'");
            ++i_;
            if (hi >= 0 && hi < lo) return error("a repetition {m,n} with n < m");
            if (lo > 4096 || hi > 4096) return error("a repetition count over 4096");
        }
        for (long k = 0; k < lo; ++k) seq.insert(seq.end(), item.begin(), item.end());
        auto new_rule = [&] {
            const uint32_t id = rule_id("(repeat " + std::to_string(r_.names.size()) + ")");
            defined_[id] = true;
            return id;
        };
        if (hi < 0) {  // R ::= item R | ""
            const uint32_t id = new_rule();
            Sequence again = item;
            again.push_back({true, false, id, {}});
            r_.rules[id] = {again, {}};
            seq.push_back({true, false, id, {}});
        } else if (hi > lo) {  // R_1 ::= item | "", R_j ::= item R_(j-1) | ""
            uint32_t inner = 0;
            for (long k = 0; k < hi - lo; ++k) {
                const uint32_t id = new_rule();
                Sequence body = item;
                if (k > 0) body.push_back({true, false, inner, {}});
                r_.rules[id] = {body, {}};
                inner = id;
            }
            seq.push_back({true, false, inner, {}});
        }
        return Status::ok();
    }
    std::string_view s_;
    size_t i_ = 0;
    Rules& r_;
    std::map<std::string, uint32_t> ids_;
    std::vector<bool> defined_;
};

struct Frame {
    uint32_t rule, alt, pos;
    bool operator==(const Frame& o) const { return rule == o.rule && alt == o.alt && pos == o.pos; }
};
using Stack = std::vector<Frame>;  // innermost rule last
constexpr size_t kMaxDepth = 512, kMaxStacks = 4096;

void add_unique(std::vector<Stack>& out, const Stack& s) {
    if (out.size() < kMaxStacks && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
}

// Expands a stack until its innermost frame waits for a character (or the stack is empty:
// the text is complete), adding each resulting stack to out.
void expand(const Rules& r, Stack st, std::vector<Stack>& out) {
    while (!st.empty()) {
        Frame& f = st.back();
        const Sequence& seq = r.rules[f.rule][f.alt];
        if (f.pos == seq.size()) {
            st.pop_back();
            continue;
        }
        const Element& e = seq[f.pos];
        if (!e.is_ref) return add_unique(out, st);
        // Enter the rule; a frame with nothing after the call is dropped first (tail call),
        // so right recursion (x*) does not grow the stack.
        ++f.pos;
        if (f.pos == seq.size()) st.pop_back();
        if (st.size() >= kMaxDepth) return;  // left recursion
        for (uint32_t a = 0; a < r.rules[e.rule].size(); ++a) {
            Stack next = st;
            next.push_back({e.rule, a, 0});
            expand(r, std::move(next), out);
        }
        return;
    }
    add_unique(out, st);
}

std::vector<Stack> advance(const Rules& r, const std::vector<Stack>& stacks, uint32_t cp) {
    std::vector<Stack> out;
    for (const Stack& s : stacks) {
        if (s.empty()) continue;
        const Frame& f = s.back();
        if (!r.rules[f.rule][f.alt][f.pos].matches(cp)) continue;
        Stack next = s;
        ++next.back().pos;
        expand(r, std::move(next), out);
    }
    return out;
}

}  // namespace

struct GrammarMatcher::State {
    std::vector<Stack> stacks;
    std::string partial;  // the start of a character split between tokens
};

Expected<Grammar> Grammar::parse(std::string_view gbnf, const std::string& root) {
    auto rules = std::make_shared<Rules>();
    Parser p(gbnf, *rules);
    KILN_TRY(p.parse());
    if (!p.defined(root)) return Status::error("grammar: no '%s' rule", root.c_str());
    rules->root = p.rule_id(root);
    // Left recursion (a rule reaching itself before any character) would expand forever.
    for (uint32_t id = 0; id < rules->rules.size(); ++id) {
        std::vector<uint32_t> todo = {id};
        std::vector<bool> seen(rules->rules.size(), false);
        while (!todo.empty()) {
            const uint32_t r = todo.back();
            todo.pop_back();
            for (const Sequence& s : rules->rules[r]) {
                // The rules s can enter before its first character (refs up to the first char element).
                for (const Element& e : s) {
                    if (!e.is_ref) break;
                    if (e.rule == id) return Status::error("grammar: rule '%s' is left-recursive", rules->names[id].c_str());
                    if (!seen[e.rule]) seen[e.rule] = true, todo.push_back(e.rule);
                    break;  // later refs are entered only after this one (may match "", a rare case left to the depth limit)
                }
            }
        }
    }
    Grammar g;
    g.rules_ = std::move(rules);
    return g;
}

GrammarMatcher::GrammarMatcher(const Grammar& g) : grammar_(g), state_(std::make_shared<State>()) {
    const Rules& r = g.rules();
    for (uint32_t a = 0; a < r.rules[r.root].size(); ++a) expand(r, {{r.root, a, 0}}, state_->stacks);
}

namespace {
// Whether some stack's next character may be one that starts with these bytes (an
// unfinished UTF-8 character): its code points span [lo, hi].
bool may_take(const Rules& r, const std::vector<Stack>& stacks, std::string_view bytes) {
    const unsigned char b = static_cast<unsigned char>(bytes[0]);
    const int len = (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : 4;
    uint32_t lo = len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
    for (size_t k = 1; k < bytes.size(); ++k) lo = (lo << 6) | (static_cast<unsigned char>(bytes[k]) & 0x3F);
    const int missing = len - int(bytes.size());
    const uint32_t hi = std::min<uint32_t>((lo << (6 * missing)) | ((1u << (6 * missing)) - 1), len == 2 ? 0x7FF : len == 3 ? 0xFFFF : 0x10FFFF);
    lo = std::max<uint32_t>(lo << (6 * missing), len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000);  // the shortest form's lowest
    if (lo > hi) return false;
    for (const Stack& st : stacks) {
        if (st.empty()) continue;
        const Frame& f = st.back();
        const Element& e = r.rules[f.rule][f.alt][f.pos];
        if (!e.negate) {
            for (auto [a, z] : e.ranges)
                if (a <= hi && z >= lo) return true;
            continue;
        }
        // Negated: some code point of [lo, hi] outside every range?
        std::vector<std::pair<uint32_t, uint32_t>> ranges = e.ranges;
        std::sort(ranges.begin(), ranges.end());
        uint32_t next = lo;  // the lowest code point not yet covered
        for (auto [a, z] : ranges) {
            if (a > next) break;
            if (z >= next) next = z + 1;
            if (next > hi) break;
        }
        if (next <= hi) return true;
    }
    return false;
}

// Runs bytes through the stacks; false when the grammar rejects them.
bool run(const Rules& r, std::vector<Stack>& stacks, std::string& partial, std::string_view bytes) {
    std::string s = partial + std::string(bytes);
    size_t i = 0;
    while (i < s.size()) {
        uint32_t cp = 0;
        const int n = decode_utf8(s, i, &cp);
        if (n < 0) return false;
        if (n == 0) {  // an unfinished character: some stack must take a code point it may become
            if (!may_take(r, stacks, std::string_view(s).substr(i))) return false;
            break;
        }
        stacks = advance(r, stacks, cp);
        if (stacks.empty()) return false;
        i += size_t(n);
    }
    partial = s.substr(i);
    return true;
}
}  // namespace

bool GrammarMatcher::accepts(std::string_view bytes) const {
    std::vector<Stack> stacks = state_->stacks;
    std::string partial = state_->partial;
    return run(grammar_.rules(), stacks, partial, bytes);
}

bool GrammarMatcher::accept(std::string_view bytes) {
    State next = *state_;
    if (!run(grammar_.rules(), next.stacks, next.partial, bytes)) return false;
    state_ = std::make_shared<State>(std::move(next));
    return true;
}

bool GrammarMatcher::complete() const {
    return state_->partial.empty() && std::any_of(state_->stacks.begin(), state_->stacks.end(), [](const Stack& s) { return s.empty(); });
}

bool GrammarMatcher::can_continue() const {
    return std::any_of(state_->stacks.begin(), state_->stacks.end(), [](const Stack& s) { return !s.empty(); });
}

TokenPieces TokenPieces::of(const Tokenizer& tok) {
    TokenPieces p;
    const int n = tok.n_vocab();
    p.piece.resize(size_t(n));
    p.eog.resize(size_t(n));
    for (int i = 0; i < n; ++i) {
        p.piece[size_t(i)] = tok.token_to_piece(i, false);
        p.eog[size_t(i)] = tok.is_eog(i);
    }
    return p;
}

int32_t sample_constrained(Sampler& sampler, const float* logits, const GrammarMatcher& m, const TokenPieces& pieces) {
    const int n = int(pieces.piece.size());
    const SamplerParams& sp = sampler.params();
    // Penalties reorder the logits: then every token is tested.
    const bool penalties = sp.repeat_penalty != 1.0f || sp.frequency_penalty != 0 || sp.presence_penalty != 0;
    const int want = penalties ? n : sp.temperature <= 0 ? 1 : sp.top_k > 0 ? std::min(sp.top_k, n) : n;
    const bool complete = m.complete();
    auto allowed = [&](int32_t t) { return pieces.eog[size_t(t)] ? complete : !pieces.piece[size_t(t)].empty() && m.accepts(pieces.piece[size_t(t)]); };
    std::vector<int32_t> order(static_cast<size_t>(n));  // token ids, highest logit first (sorted as needed)
    std::iota(order.begin(), order.end(), 0);
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::vector<float> masked(static_cast<size_t>(n), -INFINITY);  // (n_vocab) the allowed tokens' logits
    int found = 0;
    size_t sorted = 0;
    for (size_t i = 0; i < order.size() && found < want; ++i) {
        if (i == sorted) {  // sort the next block: most steps need only the first
            const size_t end = std::min(order.size(), std::max<size_t>(2 * sorted, 256));
            std::partial_sort(order.begin() + long(sorted), order.begin() + long(end), order.end(), by_logit);
            sorted = end;
        }
        const int32_t t = order[i];
        if (allowed(t)) masked[size_t(t)] = logits[t], ++found;
    }
    if (found == 0) return -1;
    return sampler.sample(masked.data());
}

}  // namespace kiln
