// Jinja evaluator: runs the syntax tree against a context, with jinja2's scoping (a for
// loop's body gets a fresh scope each iteration, so `set` inside a loop does not leak; use a
// namespace), Python's operators and getattr/getitem rules, the globals (range, namespace,
// dict, raise_exception, strftime_now), and the Template API.
#include <cmath>
#include <ctime>
#include <new>
#include <optional>

#include "jinja_ast.h"

namespace kiln::jinja {

// ---- operators ------------------------------------------------------------------------------

namespace {
[[noreturn]] void bad_operands(const std::string& op, const Value& a, const Value& b, int line) {
    if (a.is_undefined() || b.is_undefined()) fail(line, "undefined value in '" + op + "' expression");
    fail(line, "unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}
int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}
Value repeat(const Value& seq, int64_t n, int line) {
    if (n < 0) n = 0;
    if (seq.is_string()) {
        if (double(seq.as_string().size()) * double(n) > 1e8) fail(line, "string repetition too large");
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq.as_string();
        return Value(std::move(out));
    }
    if (double(seq.items().size()) * double(n) > 1e7) fail(line, "list repetition too large");
    std::vector<Value> out;
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
    return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::array(std::move(out));
}
}  // namespace

Value binary_op(const std::string& op, const Value& a, const Value& b, int line) {
    const bool nums = a.is_number() && b.is_number();
    const bool ints = nums && !a.is_float() && !b.is_float();
    if (op == "+") {
        if (ints) return Value(int64_t(uint64_t(a.as_int()) + uint64_t(b.as_int())));
        if (nums) return Value(a.as_double() + b.as_double());
        if (a.is_string() && b.is_string()) {
            if (a.is_markup() || b.is_markup())
                return Value::markup((a.is_markup() ? a.as_string() : html_escape(a.as_string())) +
                                     (b.is_markup() ? b.as_string() : html_escape(b.as_string())));
            return Value(a.as_string() + b.as_string());
        }
        if (a.is_array() && b.is_array() && a.is_tuple() == b.is_tuple() && !a.is_generator() && !b.is_generator()) {
            std::vector<Value> out = a.items();
            out.insert(out.end(), b.items().begin(), b.items().end());
            return a.is_tuple() ? Value::tuple(std::move(out)) : Value::array(std::move(out));
        }
    } else if (op == "-") {
        if (ints) return Value(int64_t(uint64_t(a.as_int()) - uint64_t(b.as_int())));
        if (nums) return Value(a.as_double() - b.as_double());
    } else if (op == "*") {
        if (ints) return Value(int64_t(uint64_t(a.as_int()) * uint64_t(b.as_int())));
        if (nums) return Value(a.as_double() * b.as_double());
        if ((a.is_string() || a.is_array()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int(), line);
        if ((b.is_string() || b.is_array()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int(), line);
    } else if (op == "/") {
        if (nums) {
            if (b.as_double() == 0) fail(line, "division by zero");
            return Value(a.as_double() / b.as_double());
        }
    } else if (op == "//" || op == "%") {
        if (nums) {
            if (b.as_double() == 0) fail(line, op == "//" ? "integer division or modulo by zero" : "modulo by zero");
            if (ints) {
                int64_t q = floordiv(a.as_int(), b.as_int());
                return op == "//" ? Value(q) : Value(a.as_int() - q * b.as_int());
            }
            double x = a.as_double(), y = b.as_double();
            double m = std::fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return op == "//" ? Value(std::floor(x / y)) : Value(m);
        }
    } else if (op == "**") {
        if (ints && b.as_int() >= 0) {
            int64_t r = 1, base = a.as_int();
            for (int64_t e = b.as_int(); e > 0; --e) {
                r = int64_t(uint64_t(r) * uint64_t(base));
                if (e > 64 && (base == 0 || base == 1)) break;
            }
            return Value(r);
        }
        if (nums) return Value(std::pow(a.as_double(), b.as_double()));
    }
    bad_operands(op, a, b, line);
}

bool contains(const Value& container, const Value& item, int line) {
    switch (container.type()) {
        case Value::Type::String:
            if (!item.is_string()) fail(line, "'in <string>' requires string as left operand, not " + type_name(item));
            return container.as_string().find(item.as_string()) != std::string::npos;
        case Value::Type::Array:
            for (const auto& x : container.items())
                if (values_equal(x, item)) return true;
            return false;
        case Value::Type::Object: return container.find_key(item) != nullptr;
        case Value::Type::Undefined: return false;
        default: fail(line, "argument of type '" + type_name(container) + "' is not iterable");
    }
}

// ---- attribute and item access ----------------------------------------------------------

Value get_attr(const Value& obj, const std::string& name, int line) {
    if (obj.is_undefined()) fail(line, "undefined value has no attribute '" + name + "'");
    if (obj.is_namespace()) {
        const Value* v = obj.find(name);
        return v ? *v : Value();
    }
    Value m = get_method(obj, name, line);
    if (!m.is_undefined()) return m;
    if (obj.is_object()) {
        const Value* v = obj.find(name);
        return v ? *v : Value();
    }
    return Value();
}

Value get_item(const Value& obj, const Value& key, int line) {
    if (obj.is_undefined()) fail(line, "undefined value is not subscriptable");
    if (obj.is_object() && !obj.is_namespace()) {
        if (const Value* v = obj.find_key(key)) return *v;
        return key.is_string() ? get_method(obj, key.as_string(), line) : Value();
    }
    if (obj.is_generator()) return Value();
    if ((obj.is_array() || obj.is_string()) && (key.is_int() || key.is_bool())) {
        int64_t i = key.as_int();
        if (obj.is_array()) {
            const int64_t n = int64_t(obj.items().size());
            if (i < 0) i += n;
            return i >= 0 && i < n ? obj.items()[size_t(i)] : Value();
        }
        auto chars = utf8_chars(obj.as_string());
        const int64_t n = int64_t(chars.size());
        if (i < 0) i += n;
        return i >= 0 && i < n ? Value(chars[size_t(i)]) : Value();
    }
    if (key.is_string()) return get_attr(obj, key.as_string(), line);
    return Value();
}

Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step, int line) {
    if (obj.is_undefined()) fail(line, "undefined value is not subscriptable");
    std::vector<Value> seq;
    std::vector<std::string> chars;
    int64_t n;
    if (obj.is_string()) {
        chars = utf8_chars(obj.as_string());
        n = int64_t(chars.size());
    } else if (obj.is_array() && !obj.is_generator()) {
        n = int64_t(obj.items().size());
    } else {
        return Value();
    }
    auto get = [&](const Value& v, const char* what) -> std::optional<int64_t> {
        if (v.is_none() || v.is_undefined()) return std::nullopt;
        if (!v.is_int() && !v.is_bool()) fail(line, std::string("slice ") + what + " must be an integer or None");
        return v.as_int();
    };
    int64_t st = get(step, "step").value_or(1);
    if (st == 0) fail(line, "slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> x, int64_t dflt) {
        if (!x) return dflt;
        int64_t v = *x;
        if (v < 0) v += n;
        if (st > 0) return std::clamp<int64_t>(v, 0, n);
        return std::clamp<int64_t>(v, -1, n - 1);
    };
    int64_t b = clamp(get(start, "start"), st > 0 ? 0 : n - 1);
    int64_t e = clamp(get(stop, "stop"), st > 0 ? n : -1);
    std::vector<int64_t> idx;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
    if (obj.is_string()) {
        std::string out;
        for (int64_t i : idx) out += chars[size_t(i)];
        return Value(std::move(out));
    }
    for (int64_t i : idx) seq.push_back(obj.items()[size_t(i)]);
    return obj.is_tuple() ? Value::tuple(std::move(seq)) : Value::array(std::move(seq));
}

Value call_value(const Value& fn, const CallArgs& args, int line) {
    if (fn.is_undefined()) fail(line, "undefined value is not callable");
    const Function* f = fn.function();
    if (!f) fail(line, "'" + type_name(fn) + "' object is not callable");
    Expected<Value> r = Value();
    try {
        r = (*f)(args);
    } catch (Error& e) {  // a builtin's error without a line gets the call's
        if (!e.raw && e.line <= 0) e.line = line;
        throw;
    }
    if (!r) throw Error{r.message(), line, false};
    return std::move(r).value();
}

// ---- globals --------------------------------------------------------------------------------

namespace {
Value native(const char* name, std::function<Value(const CallArgs&)> f) {
    return Value::function(name, [f = std::move(f)](const CallArgs& a) -> Expected<Value> { return f(a); });
}
}  // namespace

void add_globals(Value& g) {
    g.set("range", native("range", [](const CallArgs& a) {
              int line = 0;
              for (const auto& x : a.args)
                  if (!x.is_int() && !x.is_bool()) fail(line, "range() arguments must be integers, not " + type_name(x));
              if (a.args.empty() || a.args.size() > 3) fail(line, "range expected 1 to 3 arguments");
              int64_t start = 0, stop, step = 1;
              if (a.args.size() == 1) stop = a.args[0].as_int();
              else start = a.args[0].as_int(), stop = a.args[1].as_int();
              if (a.args.size() == 3) step = a.args[2].as_int();
              if (step == 0) fail(line, "range() arg 3 must not be zero");
              std::vector<Value> out;
              for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
                  if (out.size() >= 100000) fail(line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
                  out.push_back(Value(i));
              }
              return Value::array(std::move(out));
          }));
    auto make_dict = [](const CallArgs& a, bool ns) {
        Value d = Value::object();
        for (const auto& x : a.args) {
            if (x.is_object()) {
                for (size_t i = 0; i < x.entries().size(); ++i) d.set_key(x.key_at(i), x.entries()[i].second);
            } else {
                for (const auto& pair : iterate(x, 0)) {
                    if (!pair.is_array() || pair.items().size() != 2) fail(0, "dictionary update sequence element has wrong length");
                    d.set_key(pair.items()[0], pair.items()[1]);
                }
            }
        }
        for (const auto& [k, v] : a.kwargs) d.set(k, v);
        if (ns) d.mark_namespace();
        return d;
    };
    g.set("namespace", native("namespace", [make_dict](const CallArgs& a) { return make_dict(a, true); }));
    g.set("dict", native("dict", [make_dict](const CallArgs& a) { return make_dict(a, false); }));
    g.set("raise_exception", Value::function("raise_exception", [](const CallArgs& a) -> Expected<Value> {
              throw Error{a.args.empty() ? std::string("raise_exception called") : a.args[0].str(), 0, true};
          }));
    g.set("strftime_now", native("strftime_now", [](const CallArgs& a) {
              std::string format = a.args.empty() ? std::string() : a.args[0].str();
              std::time_t now = std::time(nullptr);
              std::tm tm{};
              localtime_r(&now, &tm);
              char buf[512];
              size_t n = format.empty() ? 0 : std::strftime(buf, sizeof buf, format.c_str(), &tm);
              return Value(std::string(buf, n));
          }));
}

// ---- interpreter ------------------------------------------------------------------------

namespace {

constexpr int kMaxCallDepth = 100;
constexpr size_t kMaxOutput = size_t(256) << 20;

struct Scope {
    std::vector<std::pair<std::string, Value>> vars;
    std::shared_ptr<Scope> parent;
    const Value* find(const std::string& name) const {
        for (const Scope* s = this; s; s = s->parent.get())
            for (const auto& [k, v] : s->vars)
                if (k == name) return &v;
        return nullptr;
    }
    void set(const std::string& name, Value v) {
        for (auto& [k, x] : vars)
            if (k == name) {
                x = std::move(v);
                return;
            }
        vars.emplace_back(name, std::move(v));
    }
};
using ScopePtr = std::shared_ptr<Scope>;

ScopePtr child(const ScopePtr& parent) {
    auto s = std::make_shared<Scope>();
    s->parent = parent;
    return s;
}

enum class Flow { Normal, Break, Continue };

class Interp {
public:
    Interp(const Value& context, const Value& globals) : context_(context), globals_(globals) {}

    Flow exec(const Node& n, const ScopePtr& sc, std::string& out);
    Value eval(const Node& n, const ScopePtr& sc);

private:
    const Value& context_;
    const Value& globals_;
    int depth_ = 0;
    std::vector<ScopePtr> keep_;

    Value lookup(const std::string& name, const ScopePtr& sc) const {
        if (const Value* v = sc->find(name)) return *v;
        if (const Value* v = context_.find(name)) return *v;
        if (const Value* v = globals_.find(name)) return *v;
        return Value();
    }

    CallArgs eval_args(const Node& n, const ScopePtr& sc) {
        CallArgs a;
        for (const auto& x : n.args) a.args.push_back(eval(*x, sc));
        if (n.dyn_args)
            for (auto& x : iterate(eval(*n.dyn_args, sc), n.line)) a.args.push_back(std::move(x));
        for (const auto& [k, x] : n.kwargs) a.kwargs.emplace_back(k, eval(*x, sc));
        if (n.dyn_kwargs) {
            Value d = eval(*n.dyn_kwargs, sc);
            if (!d.is_object()) fail(n.line, "argument after ** must be a mapping");
            for (const auto& [k, x] : d.entries()) a.kwargs.emplace_back(k, x);
        }
        return a;
    }

    // A filter chain whose innermost input is `input` (filter and set blocks).
    Value apply_chain(const Node& f, const Value& input, const ScopePtr& sc) {
        Value in = f.children[0] ? apply_chain(*f.children[0], input, sc) : input;
        return apply_filter(f.name, in, eval_args(f, sc), f.line);
    }

    void assign(const Node& target, const Value& v, const ScopePtr& sc) {
        if (target.kind == Kind::Name) {
            sc->set(target.name, v);
        } else if (target.kind == Kind::Tuple) {
            std::vector<Value> items = iterate(v, target.line);
            if (items.size() != target.children.size())
                fail(target.line, items.size() > target.children.size() ? "too many values to unpack" : "not enough values to unpack");
            for (size_t i = 0; i < items.size(); ++i) sc->set(target.children[i]->name, items[i]);
        } else {  // ns.attr
            Value ns = lookup(target.children[0]->name, sc);
            if (!ns.is_namespace()) fail(target.line, "cannot assign attribute on non-namespace object");
            ns.set(target.name, v);
        }
    }

    Value make_macro(const Node& m, const ScopePtr& sc, const std::string& name) {
        // The closure is weak (the scope may hold the macro itself); keep_ holds the scope
        // for the render's lifetime, so the lock always succeeds while rendering.
        const Node* node = &m;
        keep_.push_back(sc);
        std::weak_ptr<Scope> closure = sc;
        Interp* self = this;
        return Value::function(name, [self, node, closure](const CallArgs& a) -> Expected<Value> {
            ScopePtr s = closure.lock();
            if (!s) return Status::error("macro called after its template finished rendering");
            return self->call_macro(*node, s, a);
        });
    }

    Value call_macro(const Node& m, const ScopePtr& closure, const CallArgs& a) {
        if (++depth_ > kMaxCallDepth) fail(m.line, "maximum macro recursion depth exceeded");
        auto sc = child(closure);
        std::vector<Value> extra;
        const size_t np = m.params.size(), nd = m.defaults.size();
        std::vector<bool> given(np, false);
        for (size_t i = 0; i < a.args.size(); ++i) {
            if (i < np) {
                sc->set(m.params[i], a.args[i]);
                given[i] = true;
            } else {
                extra.push_back(a.args[i]);
            }
        }
        Value kwargs = Value::object();
        Value caller;
        for (const auto& [k, v] : a.kwargs) {
            bool matched = false;
            for (size_t i = 0; i < np; ++i)
                if (m.params[i] == k) {
                    if (given[i]) fail(m.line, "macro '" + m.name + "' got multiple values for argument '" + k + "'");
                    sc->set(k, v);
                    given[i] = matched = true;
                }
            if (matched) continue;
            if (k == "caller") caller = v;
            else kwargs.set(k, v);
        }
        for (size_t i = 0; i < np; ++i) {
            if (given[i]) continue;
            if (i >= np - nd) sc->set(m.params[i], eval(*m.defaults[i - (np - nd)], sc));
            else sc->set(m.params[i], Value());
        }
        sc->set("varargs", Value::tuple(std::move(extra)));
        sc->set("kwargs", kwargs);
        if (!caller.is_undefined()) sc->set("caller", caller);
        std::string out;
        exec(*m.bodies[0], sc, out);
        --depth_;
        return Value(std::move(out));
    }

    Flow exec_for(const Node& n, const ScopePtr& sc, std::string& out);
};

Flow Interp::exec(const Node& n, const ScopePtr& sc, std::string& out) {
    switch (n.kind) {
        case Kind::Body:
            for (const auto& c : n.children) {
                Flow f = exec(*c, sc, out);
                if (f != Flow::Normal) return f;
                if (out.size() > kMaxOutput) fail(c->line, "output too large");
            }
            return Flow::Normal;
        case Kind::Text: out += n.name; return Flow::Normal;
        case Kind::Print: out += eval(*n.children[0], sc).str(); return Flow::Normal;
        case Kind::If:
            for (size_t i = 0; i < n.children.size(); ++i)
                if (eval(*n.children[i], sc).truthy()) return exec(*n.bodies[i], sc, out);
            if (n.has_else) return exec(*n.bodies.back(), sc, out);
            return Flow::Normal;
        case Kind::For: return exec_for(n, sc, out);
        case Kind::Set: assign(*n.target, eval(*n.children[0], sc), sc); return Flow::Normal;
        case Kind::SetBlock: {
            std::string body;
            exec(*n.bodies[0], child(sc), body);
            Value v(std::move(body));
            if (n.filter) v = apply_chain(*n.filter, v, sc);
            assign(*n.target, v, sc);
            return Flow::Normal;
        }
        case Kind::Macro: sc->set(n.name, make_macro(n, sc, n.name)); return Flow::Normal;
        case Kind::CallBlock: {
            const Node& call = *n.children[0];
            Value fn = eval(*call.children[0], sc);
            CallArgs a = eval_args(call, sc);
            a.kwargs.emplace_back("caller", make_macro(n, sc, "caller"));
            out += call_value(fn, a, call.line).str();
            return Flow::Normal;
        }
        case Kind::FilterBlock: {
            std::string body;
            exec(*n.bodies[0], child(sc), body);
            out += apply_chain(*n.filter, Value(std::move(body)), sc).str();
            return Flow::Normal;
        }
        case Kind::Scope: {
            std::string body;
            exec(*n.bodies[0], child(sc), body);
            out += body;
            return Flow::Normal;
        }
        case Kind::Break: return Flow::Break;
        case Kind::Continue: return Flow::Continue;
        default: fail(n.line, "internal: not a statement");
    }
}

Flow Interp::exec_for(const Node& n, const ScopePtr& sc, std::string& out) {
    Value seq = eval(*n.children[0], sc);
    if (seq.is_none()) fail(n.line, "'NoneType' object is not iterable");
    std::vector<Value> items = iterate(seq, n.line);
    if (n.filter) {
        std::vector<Value> kept;
        for (auto& it : items) {
            auto fs = child(sc);
            assign(*n.target, it, fs);
            if (eval(*n.filter, fs).truthy()) kept.push_back(std::move(it));
        }
        items = std::move(kept);
    }
    const int64_t len = int64_t(items.size());
    for (int64_t i = 0; i < len; ++i) {
        auto it_sc = child(sc);
        assign(*n.target, items[size_t(i)], it_sc);
        Value loop = Value::object();
        loop.set("index", Value(i + 1));
        loop.set("index0", Value(i));
        loop.set("revindex", Value(len - i));
        loop.set("revindex0", Value(len - i - 1));
        loop.set("first", Value(i == 0));
        loop.set("last", Value(i == len - 1));
        loop.set("length", Value(len));
        loop.set("depth", Value(1));
        loop.set("depth0", Value(0));
        if (i > 0) loop.set("previtem", items[size_t(i - 1)]);
        if (i + 1 < len) loop.set("nextitem", items[size_t(i + 1)]);
        loop.set("cycle", Value::function("cycle", [i](const CallArgs& a) -> Expected<Value> {
            if (a.args.empty()) return Status::error("no items for cycling given");
            return a.args[size_t(i) % a.args.size()];
        }));
        loop.mark_namespace();  // attribute access only, like jinja2's LoopContext
        it_sc->set("loop", loop);
        if (exec(*n.bodies[0], it_sc, out) == Flow::Break) break;
    }
    if (len == 0 && n.has_else) exec(*n.bodies[1], child(sc), out);
    return Flow::Normal;
}

Value Interp::eval(const Node& n, const ScopePtr& sc) {
    switch (n.kind) {
        case Kind::Literal: return n.value;
        case Kind::Name: return lookup(n.name, sc);
        case Kind::List:
        case Kind::Tuple: {
            std::vector<Value> items;
            for (const auto& c : n.children) items.push_back(eval(*c, sc));
            return n.kind == Kind::List ? Value::array(std::move(items)) : Value::tuple(std::move(items));
        }
        case Kind::Dict: {
            Value d = Value::object();
            for (size_t i = 0; i + 1 < n.children.size(); i += 2) {
                Value k = eval(*n.children[i], sc);
                d.set_key(k, eval(*n.children[i + 1], sc));
            }
            return d;
        }
        case Kind::GetAttr: {
            Value obj = eval(*n.children[0], sc);
            if (obj.is_undefined() && n.children[0]->kind == Kind::Name) fail(n.line, "'" + n.children[0]->name + "' is undefined");
            return get_attr(obj, n.name, n.line);
        }
        case Kind::GetItem: {
            Value obj = eval(*n.children[0], sc);
            if (obj.is_undefined() && n.children[0]->kind == Kind::Name) fail(n.line, "'" + n.children[0]->name + "' is undefined");
            const Node& k = *n.children[1];
            if (k.kind == Kind::Slice) {
                auto part = [&](const NodePtr& p) { return p ? eval(*p, sc) : Value(nullptr); };
                return slice_value(obj, part(k.children[0]), part(k.children[1]), part(k.children[2]), n.line);
            }
            return get_item(obj, eval(k, sc), n.line);
        }
        case Kind::Call: {
            Value fn = eval(*n.children[0], sc);
            if (fn.is_undefined() && n.children[0]->kind == Kind::Name) fail(n.line, "'" + n.children[0]->name + "' is undefined");
            return call_value(fn, eval_args(n, sc), n.line);
        }
        case Kind::Filter: return apply_filter(n.name, eval(*n.children[0], sc), eval_args(n, sc), n.line);
        case Kind::Test: {
            bool r = apply_test(n.name, eval(*n.children[0], sc), eval_args(n, sc), n.line);
            return Value(n.negated ? !r : r);
        }
        case Kind::Neg:
        case Kind::Pos: {
            Value v = eval(*n.children[0], sc);
            if (!v.is_number()) fail(n.line, "bad operand type for unary " + std::string(n.kind == Kind::Neg ? "-" : "+") + ": '" + type_name(v) + "'");
            if (n.kind == Kind::Pos) return v.is_bool() ? Value(v.as_int()) : v;
            return v.is_float() ? Value(-v.as_double()) : Value(int64_t(0 - uint64_t(v.as_int())));
        }
        case Kind::Not: return Value(!eval(*n.children[0], sc).truthy());
        case Kind::And: {
            Value a = eval(*n.children[0], sc);
            return a.truthy() ? eval(*n.children[1], sc) : a;
        }
        case Kind::Or: {
            Value a = eval(*n.children[0], sc);
            return a.truthy() ? a : eval(*n.children[1], sc);
        }
        case Kind::Binary: return binary_op(n.name, eval(*n.children[0], sc), eval(*n.children[1], sc), n.line);
        case Kind::Concat: {
            std::string s;
            for (const auto& c : n.children) s += eval(*c, sc).str();
            return Value(std::move(s));
        }
        case Kind::Compare: {
            Value left = eval(*n.children[0], sc);
            for (size_t i = 0; i < n.ops.size(); ++i) {
                Value right = eval(*n.children[i + 1], sc);
                const std::string& op = n.ops[i];
                bool r;
                if (op == "==") r = values_equal(left, right);
                else if (op == "!=") r = !values_equal(left, right);
                else if (op == "in") r = contains(right, left, n.line);
                else if (op == "notin") r = !contains(right, left, n.line);
                else {
                    int c = compare_values(left, right, n.line);
                    r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
                }
                if (!r) return Value(false);
                left = std::move(right);
            }
            return Value(true);
        }
        case Kind::CondExpr:
            if (eval(*n.children[0], sc).truthy()) return eval(*n.children[1], sc);
            return n.children[2] ? eval(*n.children[2], sc) : Value();
        default: fail(n.line, "internal: not an expression");
    }
}

Status to_status(const Error& e) {
    if (e.raw || e.line <= 0) return Status::error_str(e.message);
    return Status::error_str(strfmt("line %d: ", e.line) + e.message);
}

}  // namespace

Expected<Template> Template::parse(std::string_view source) {
    try {
        Template t;
        t.root_ = std::make_shared<const Node>(parse_template(source));
        return t;
    } catch (const Error& e) {
        return to_status(e);
    } catch (const std::bad_alloc&) {
        return Status::error("out of memory parsing the template");
    }
}

Expected<std::string> Template::render(const Value& context) const {
    if (!root_) return Status::error("render of an empty Template");
    if (!context.is_object() && !context.is_undefined() && !context.is_none()) return Status::error("render context must be an object");
    try {
        Value globals = Value::object();
        add_globals(globals);
        Value ctx = context.is_object() ? context : Value::object();
        Interp in(ctx, globals);
        std::string out;
        auto top = std::make_shared<Scope>();
        in.exec(*root_, top, out);
        return out;
    } catch (const Error& e) {
        return to_status(e);
    } catch (const std::bad_alloc&) {
        return Status::error("out of memory rendering the template");
    } catch (const std::exception& e) {
        return Status::error("template function failed: %s", e.what());
    }
}

}  // namespace kiln::jinja
