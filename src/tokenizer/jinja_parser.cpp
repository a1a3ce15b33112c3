// Jinja parser: tokens to the syntax tree, following jinja2's grammar and precedence
// (filters and tests bind tighter than arithmetic, `-x|f` is `(-x)|f`, `**` is left
// associative). Unknown filters and tests are errors at parse time unless they sit inside an
// `if` or an inline if, where jinja2 defers them to run time (the soft-frame rule).
#include <algorithm>

#include "jinja_ast.h"

namespace kiln::jinja {

namespace {

constexpr int kMaxDepth = 200;

NodePtr make(Kind k, int line) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->line = line;
    return n;
}

std::string describe(const Token& t) {
    switch (t.type) {
        case Tok::Data: return "template data";
        case Tok::VarBegin: return "'{{'";
        case Tok::VarEnd: return "'}}'";
        case Tok::BlockBegin: return "'{%'";
        case Tok::BlockEnd: return "'%}'";
        case Tok::Name: return "'" + t.text + "'";
        case Tok::String: return "string";
        case Tok::Int: case Tok::Float: return "number " + t.text;
        case Tok::Op: return "'" + t.text + "'";
        case Tok::Eof: return "end of template";
    }
    return "?";
}

class Parser {
public:
    explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

    Node parse() {
        Node root;
        root.kind = Kind::Body;
        root.line = 1;
        subparse(root.children, {});
        if (cur().type != Tok::Eof) fail(cur().line, "unexpected " + describe(cur()));
        return root;
    }

private:
    std::vector<Token> t_;
    size_t p_ = 0;
    int depth_ = 0;
    int loops_ = 0;  // enclosing for loops (break/continue), reset inside macros

    struct Depth {
        Parser& p;
        explicit Depth(Parser& pp, int line) : p(pp) {
            if (++p.depth_ > kMaxDepth) fail(line, "template nested too deeply");
        }
        ~Depth() { --p.depth_; }
    };

    const Token& cur() const { return t_[p_]; }
    const Token& look(size_t k = 1) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
    const Token& next() {
        const Token& t = t_[p_];
        if (p_ + 1 < t_.size()) ++p_;
        return t;
    }
    bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
    bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
    bool skip_op(const char* op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool skip_name(const char* n) {
        if (!is_name(n)) return false;
        next();
        return true;
    }
    void expect_op(const char* op) {
        if (!skip_op(op)) fail(cur().line, std::string("expected '") + op + "', got " + describe(cur()));
    }
    const Token& expect(Tok type, const char* what) {
        if (cur().type != type) fail(cur().line, std::string("expected ") + what + ", got " + describe(cur()));
        return next();
    }
    std::string expect_name() { return expect(Tok::Name, "a name").text; }

    // Statements until a `{%` whose tag name is in `ends` (left as the current token).
    void subparse(std::vector<NodePtr>& body, const std::vector<std::string>& ends) {
        while (cur().type != Tok::Eof) {
            const Token& t = cur();
            if (t.type == Tok::Data) {
                auto n = make(Kind::Text, t.line);
                n->name = t.text;
                body.push_back(std::move(n));
                next();
            } else if (t.type == Tok::VarBegin) {
                next();
                auto n = make(Kind::Print, t.line);
                n->children.push_back(parse_tuple(false, true, {}));
                expect(Tok::VarEnd, "'}}'");
                body.push_back(std::move(n));
            } else if (t.type == Tok::BlockBegin) {
                next();
                if (cur().type == Tok::Name && std::find(ends.begin(), ends.end(), cur().text) != ends.end()) return;
                body.push_back(parse_statement());
                expect(Tok::BlockEnd, "'%}'");
            } else {
                fail(t.line, "unexpected " + describe(t));
            }
        }
        if (!ends.empty()) {
            std::string list;
            for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
            fail(cur().line, "unexpected end of template, expected " + list);
        }
    }

    // `%}`, the body, up to one of `ends`; consumes the end name when drop.
    std::vector<NodePtr> statements(const std::vector<std::string>& ends, bool drop) {
        expect(Tok::BlockEnd, "'%}'");
        std::vector<NodePtr> body;
        subparse(body, ends);
        if (drop) next();
        return body;
    }

    NodePtr body_node(std::vector<NodePtr> stmts, int line) {
        auto b = make(Kind::Body, line);
        b->children = std::move(stmts);
        return b;
    }

    NodePtr parse_statement() {
        const Token& t = cur();
        Depth d(*this, t.line);
        if (t.type != Tok::Name) fail(t.line, "tag name expected");
        const std::string name = t.text;
        const int line = t.line;
        next();
        if (name == "if") return parse_if(line);
        if (name == "for") return parse_for(line);
        if (name == "set") return parse_set(line);
        if (name == "macro") return parse_macro(line);
        if (name == "call") return parse_call_block(line);
        if (name == "filter") {
            auto n = make(Kind::FilterBlock, line);
            n->filter = parse_filter(nullptr, true);
            n->bodies.push_back(body_node(statements({"endfilter"}, true), line));
            return n;
        }
        if (name == "generation") {  // transformers' AssistantTracker: renders its body
            auto n = make(Kind::Scope, line);
            n->bodies.push_back(body_node(statements({"endgeneration"}, true), line));
            return n;
        }
        if (name == "break" || name == "continue") {
            if (loops_ == 0) fail(line, "'" + name + "' outside of a loop");
            return make(name == "break" ? Kind::Break : Kind::Continue, line);
        }
        static const char* unsupported[] = {"extends", "include", "import", "from", "block", "with", "do", "autoescape"};
        for (const char* u : unsupported)
            if (name == u) fail(line, "tag '" + name + "' is not supported");
        fail(line, "encountered unknown tag '" + name + "'");
    }

    NodePtr parse_if(int line) {
        auto n = make(Kind::If, line);
        while (true) {
            n->children.push_back(parse_tuple(false, false, {}));
            n->bodies.push_back(body_node(statements({"elif", "else", "endif"}, false), line));
            std::string tok = next().text;
            if (tok == "elif") continue;
            if (tok == "else") {
                n->has_else = true;
                n->bodies.push_back(body_node(statements({"endif"}, true), line));
            }
            break;
        }
        return n;
    }

    NodePtr parse_for(int line) {
        auto n = make(Kind::For, line);
        n->target = parse_assign_target(true, {"in"});
        if (!skip_name("in")) fail(cur().line, "expected 'in', got " + describe(cur()));
        n->children.push_back(parse_tuple(false, false, {"recursive"}));
        if (skip_name("if")) n->filter = parse_expression(true);
        if (skip_name("recursive")) fail(line, "recursive loops are not supported");
        ++loops_;
        n->bodies.push_back(body_node(statements({"endfor", "else"}, false), line));
        --loops_;
        if (next().text == "else") {
            n->has_else = true;
            n->bodies.push_back(body_node(statements({"endfor"}, true), line));
        }
        return n;
    }

    NodePtr parse_set(int line) {
        NodePtr target;
        if (cur().type == Tok::Name && look().type == Tok::Op && look().text == "." && look(2).type == Tok::Name) {
            target = make(Kind::GetAttr, line);
            auto base = make(Kind::Name, line);
            base->name = next().text;
            next();
            target->name = next().text;
            target->children.push_back(std::move(base));
        } else {
            target = parse_assign_target(true, {});
        }
        if (skip_op("=")) {
            auto n = make(Kind::Set, line);
            n->target = std::move(target);
            n->children.push_back(parse_tuple(false, true, {}));
            return n;
        }
        if (target->kind != Kind::Name) fail(line, "a block set needs a plain name");
        auto n = make(Kind::SetBlock, line);
        n->target = std::move(target);
        if (is_op("|")) n->filter = parse_filter(nullptr, false);
        int loops = loops_;
        loops_ = 0;
        n->bodies.push_back(body_node(statements({"endset"}, true), line));
        loops_ = loops;
        return n;
    }

    void parse_signature(Node& n) {
        expect_op("(");
        while (!is_op(")")) {
            if (!n.params.empty()) expect_op(",");
            if (is_op(")")) break;
            std::string p = expect_name();
            n.params.push_back(p);
            if (skip_op("=")) n.defaults.push_back(parse_expression(true));
            else if (!n.defaults.empty()) fail(cur().line, "non-default argument follows default argument");
        }
        expect_op(")");
    }

    NodePtr parse_macro(int line) {
        auto n = make(Kind::Macro, line);
        n->name = expect_name();
        parse_signature(*n);
        int loops = loops_;
        loops_ = 0;
        n->bodies.push_back(body_node(statements({"endmacro"}, true), line));
        loops_ = loops;
        return n;
    }

    NodePtr parse_call_block(int line) {
        auto n = make(Kind::CallBlock, line);
        if (is_op("(")) parse_signature(*n);
        NodePtr call = parse_expression(true);
        if (call->kind != Kind::Call) fail(line, "expected a call after 'call'");
        n->children.push_back(std::move(call));
        int loops = loops_;
        loops_ = 0;
        n->bodies.push_back(body_node(statements({"endcall"}, true), line));
        loops_ = loops;
        return n;
    }

    NodePtr parse_assign_target(bool with_tuple, const std::vector<std::string>& extra_end) {
        int line = cur().line;
        NodePtr t = with_tuple ? parse_tuple(true, true, extra_end) : parse_primary();
        auto check = [&](const Node& x) {
            if (x.kind != Kind::Name) fail(line, "can't assign to this expression");
            if (x.name == "true" || x.name == "false" || x.name == "none" || x.name == "True" || x.name == "False" || x.name == "None")
                fail(line, "can't assign to '" + x.name + "'");
        };
        if (t->kind == Kind::Tuple) {
            for (auto& c : t->children) check(*c);
        } else {
            check(*t);
        }
        return t;
    }

    bool tuple_end(const std::vector<std::string>& extra_end) const {
        const Token& t = cur();
        if (t.type == Tok::VarEnd || t.type == Tok::BlockEnd || (t.type == Tok::Op && t.text == ")")) return true;
        return t.type == Tok::Name && std::find(extra_end.begin(), extra_end.end(), t.text) != extra_end.end();
    }

    NodePtr parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string>& extra_end, bool explicit_parens = false) {
        int line = cur().line;
        std::vector<NodePtr> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(",");
            if (tuple_end(extra_end)) break;
            items.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
            if (is_op(",")) is_tuple = true;
            else break;
        }
        if (!is_tuple) {
            if (!items.empty()) return std::move(items[0]);
            if (!explicit_parens) fail(cur().line, "expected an expression, got " + describe(cur()));
        }
        auto n = make(Kind::Tuple, line);
        n->children = std::move(items);
        return n;
    }

    NodePtr parse_expression(bool with_condexpr) {
        Depth d(*this, cur().line);
        return with_condexpr ? parse_condexpr() : parse_or();
    }

    NodePtr parse_condexpr() {
        NodePtr e1 = parse_or();
        while (is_name("if")) {
            int line = next().line;
            auto n = make(Kind::CondExpr, line);
            NodePtr cond = parse_or();
            NodePtr e3 = skip_name("else") ? parse_condexpr() : nullptr;
            n->children.push_back(std::move(cond));
            n->children.push_back(std::move(e1));
            n->children.push_back(std::move(e3));
            e1 = std::move(n);
        }
        return e1;
    }

    NodePtr binary(Kind k, NodePtr l, NodePtr r, int line, std::string op = "") {
        auto n = make(k, line);
        n->name = std::move(op);
        n->children.push_back(std::move(l));
        n->children.push_back(std::move(r));
        return n;
    }

    NodePtr parse_or() {
        NodePtr l = parse_and();
        while (is_name("or")) {
            int line = next().line;
            l = binary(Kind::Or, std::move(l), parse_and(), line);
        }
        return l;
    }
    NodePtr parse_and() {
        NodePtr l = parse_not();
        while (is_name("and")) {
            int line = next().line;
            l = binary(Kind::And, std::move(l), parse_not(), line);
        }
        return l;
    }
    NodePtr parse_not() {
        if (is_name("not")) {
            int line = next().line;
            Depth d(*this, line);
            auto n = make(Kind::Not, line);
            n->children.push_back(parse_not());
            return n;
        }
        return parse_compare();
    }
    NodePtr parse_compare() {
        int line = cur().line;
        NodePtr e = parse_math1();
        NodePtr n;
        while (true) {
            std::string op;
            if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
                                          cur().text == ">" || cur().text == ">=")) {
                op = next().text;
            } else if (is_name("in")) {
                next();
                op = "in";
            } else if (is_name("not") && look().type == Tok::Name && look().text == "in") {
                next(), next();
                op = "notin";
            } else {
                break;
            }
            if (!n) {
                n = make(Kind::Compare, line);
                n->children.push_back(std::move(e));
            }
            n->ops.push_back(op);
            n->children.push_back(parse_math1());
        }
        return n ? std::move(n) : std::move(e);
    }
    NodePtr parse_math1() {
        NodePtr l = parse_concat();
        while (is_op("+") || is_op("-")) {
            const Token& t = next();
            l = binary(Kind::Binary, std::move(l), parse_concat(), t.line, t.text);
        }
        return l;
    }
    NodePtr parse_concat() {
        int line = cur().line;
        NodePtr first = parse_math2();
        if (!is_op("~")) return first;
        auto n = make(Kind::Concat, line);
        n->children.push_back(std::move(first));
        while (skip_op("~")) n->children.push_back(parse_math2());
        return n;
    }
    NodePtr parse_math2() {
        NodePtr l = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            const Token& t = next();
            l = binary(Kind::Binary, std::move(l), parse_pow(), t.line, t.text);
        }
        return l;
    }
    NodePtr parse_pow() {
        NodePtr l = parse_unary(true);
        while (is_op("**")) {
            int line = next().line;
            l = binary(Kind::Binary, std::move(l), parse_unary(true), line, "**");
        }
        return l;
    }
    NodePtr parse_unary(bool with_filter) {
        Depth d(*this, cur().line);
        NodePtr n;
        if (is_op("-") || is_op("+")) {
            const Token& t = next();
            n = make(t.text == "-" ? Kind::Neg : Kind::Pos, t.line);
            n->children.push_back(parse_unary(false));
        } else {
            n = parse_primary();
        }
        n = parse_postfix(std::move(n));
        if (with_filter) n = parse_filter_expr(std::move(n));
        return n;
    }

    NodePtr literal(Value v, int line) {
        auto n = make(Kind::Literal, line);
        n->value = std::move(v);
        return n;
    }

    NodePtr parse_primary() {
        const Token& t = cur();
        int line = t.line;
        Depth d(*this, line);
        switch (t.type) {
            case Tok::Name: {
                std::string s = next().text;
                if (s == "true" || s == "True") return literal(Value(true), line);
                if (s == "false" || s == "False") return literal(Value(false), line);
                if (s == "none" || s == "None") return literal(Value(nullptr), line);
                auto n = make(Kind::Name, line);
                n->name = s;
                return n;
            }
            case Tok::String: {
                std::string s = next().text;
                while (cur().type == Tok::String) s += next().text;
                return literal(Value(std::move(s)), line);
            }
            case Tok::Int: return literal(Value(next().ival), line);
            case Tok::Float: return literal(Value(next().fval), line);
            case Tok::Op:
                if (t.text == "(") {
                    next();
                    NodePtr n = parse_tuple(false, true, {}, true);
                    expect_op(")");
                    return n;
                }
                if (t.text == "[") {
                    next();
                    auto n = make(Kind::List, line);
                    while (!is_op("]")) {
                        if (!n->children.empty()) expect_op(",");
                        if (is_op("]")) break;
                        n->children.push_back(parse_expression(true));
                    }
                    expect_op("]");
                    return n;
                }
                if (t.text == "{") {
                    next();
                    auto n = make(Kind::Dict, line);
                    while (!is_op("}")) {
                        if (!n->children.empty()) expect_op(",");
                        if (is_op("}")) break;
                        n->children.push_back(parse_expression(true));
                        expect_op(":");
                        n->children.push_back(parse_expression(true));
                    }
                    expect_op("}");
                    return n;
                }
                break;
            default: break;
        }
        fail(line, "unexpected " + describe(t));
    }

    NodePtr parse_postfix(NodePtr n) {
        while (true) {
            if (is_op(".") || is_op("[")) n = parse_subscript(std::move(n));
            else if (is_op("(")) n = parse_call(std::move(n));
            else return n;
        }
    }

    NodePtr parse_filter_expr(NodePtr n) {
        while (true) {
            if (is_op("|")) n = parse_filter(std::move(n), false);
            else if (is_name("is")) n = parse_test(std::move(n));
            else if (is_op("(")) n = parse_call(std::move(n));
            else return n;
        }
    }

    NodePtr parse_subscript(NodePtr n) {
        const Token& t = next();
        int line = t.line;
        if (t.text == ".") {
            const Token& a = next();
            if (a.type == Tok::Name) {
                auto g = make(Kind::GetAttr, line);
                g->name = a.text;
                g->children.push_back(std::move(n));
                return g;
            }
            if (a.type == Tok::Int) {
                auto g = make(Kind::GetItem, line);
                g->children.push_back(std::move(n));
                g->children.push_back(literal(Value(a.ival), line));
                return g;
            }
            fail(line, "expected name or number after '.'");
        }
        std::vector<NodePtr> args;
        while (!is_op("]")) {
            if (!args.empty()) expect_op(",");
            if (is_op("]")) break;
            args.push_back(parse_subscribed());
        }
        expect_op("]");
        if (args.empty()) fail(line, "expected a subscript");
        auto g = make(Kind::GetItem, line);
        g->children.push_back(std::move(n));
        if (args.size() == 1) {
            g->children.push_back(std::move(args[0]));
        } else {
            auto tup = make(Kind::Tuple, line);
            tup->children = std::move(args);
            g->children.push_back(std::move(tup));
        }
        return g;
    }

    NodePtr parse_subscribed() {
        int line = cur().line;
        NodePtr start;
        if (!is_op(":")) {
            start = parse_expression(true);
            if (!is_op(":")) return start;
        }
        next();  // ':'
        auto s = make(Kind::Slice, line);
        NodePtr stop, step;
        if (!is_op(":") && !is_op("]") && !is_op(",")) stop = parse_expression(true);
        if (skip_op(":")) {
            if (!is_op("]") && !is_op(",")) step = parse_expression(true);
        }
        s->children.push_back(std::move(start));
        s->children.push_back(std::move(stop));
        s->children.push_back(std::move(step));
        return s;
    }

    void parse_call_args(Node& n) {
        expect_op("(");
        bool first = true;
        while (!is_op(")")) {
            if (!first) expect_op(",");
            first = false;
            if (is_op(")")) break;
            if (skip_op("*")) {
                n.dyn_args = parse_expression(true);
            } else if (skip_op("**")) {
                n.dyn_kwargs = parse_expression(true);
            } else if (cur().type == Tok::Name && look().type == Tok::Op && look().text == "=") {
                std::string key = next().text;
                next();
                n.kwargs.emplace_back(key, parse_expression(true));
            } else {
                if (!n.kwargs.empty() || n.dyn_args || n.dyn_kwargs) fail(cur().line, "positional argument follows keyword argument");
                n.args.push_back(parse_expression(true));
            }
        }
        expect_op(")");
    }

    NodePtr parse_call(NodePtr callee) {
        auto n = make(Kind::Call, cur().line);
        parse_call_args(*n);
        n->children.push_back(std::move(callee));
        return n;
    }

    // `|name(args)` chains; with start_inline the first filter has no leading `|`.
    NodePtr parse_filter(NodePtr n, bool start_inline) {
        while (is_op("|") || start_inline) {
            if (!start_inline) next();
            start_inline = false;
            int line = cur().line;
            std::string name = expect_name();
            while (is_op(".") && look().type == Tok::Name) {
                next();
                name += "." + next().text;
            }
            auto f = make(Kind::Filter, line);
            f->name = name;
            if (is_op("(")) parse_call_args(*f);
            f->children.push_back(std::move(n));  // null for filter blocks and set blocks
            n = std::move(f);
        }
        return n;
    }

    NodePtr parse_test(NodePtr n) {
        int line = next().line;  // 'is'
        bool negated = skip_name("not");
        auto t = make(Kind::Test, line);
        t->negated = negated;
        t->name = expect_name();
        if (is_op("(")) {
            parse_call_args(*t);
        } else if ((cur().type == Tok::Name || cur().type == Tok::String || cur().type == Tok::Int || cur().type == Tok::Float ||
                    is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            if (is_name("is")) fail(cur().line, "you cannot chain multiple tests with 'is'");
            t->args.push_back(parse_postfix(parse_primary()));
        }
        t->children.push_back(std::move(n));
        return t;
    }
};

// jinja2 reports an unknown filter or test when compiling, except inside an `if` (its
// test and bodies) or an inline if, where it fails only when evaluated.
void check_names(const Node& n, bool soft) {
    if (!soft && n.kind == Kind::Filter && !has_filter(n.name)) fail(n.line, "unknown filter '" + n.name + "'");
    if (!soft && n.kind == Kind::Test && !has_test(n.name)) fail(n.line, "unknown test '" + n.name + "'");
    bool inner = soft;
    if (n.kind == Kind::If || n.kind == Kind::CondExpr) inner = true;
    auto visit = [&](const NodePtr& c, bool s) {
        if (c) check_names(*c, s);
    };
    if (n.kind == Kind::For) {
        visit(n.children[0], soft);
        visit(n.target, false);
        visit(n.filter, false);
        for (const auto& b : n.bodies) visit(b, false);
        return;
    }
    const bool new_frame = n.kind == Kind::Macro || n.kind == Kind::CallBlock || n.kind == Kind::FilterBlock ||
                           n.kind == Kind::SetBlock || n.kind == Kind::Scope;
    for (const auto& c : n.children) visit(c, inner);
    for (const auto& c : n.args) visit(c, inner);
    for (const auto& kv : n.kwargs) visit(kv.second, inner);
    visit(n.dyn_args, inner);
    visit(n.dyn_kwargs, inner);
    visit(n.target, inner);
    visit(n.filter, new_frame ? false : inner);
    for (const auto& d : n.defaults) visit(d, inner);
    for (const auto& b : n.bodies) visit(b, new_frame ? false : inner);
}

}  // namespace

Node parse_template(std::string_view source) {
    Parser p(tokenize(source));
    Node root = p.parse();
    check_names(root, false);
    return root;
}

}  // namespace kiln::jinja
