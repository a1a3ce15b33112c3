// Jinja builtins: jinja2's filters and tests, and the Python str/dict/list methods templates
// call. List and dict methods that mutate are refused, as jinja2's
// ImmutableSandboxedEnvironment does. (The globals are in jinja_eval.cpp.)
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

#include "jinja_ast.h"

namespace kiln::jinja {

namespace {

// Argument binding: positional index `pos` or keyword `name`, else the default.
struct Args {
    const CallArgs& a;
    int line;
    Value get(size_t pos, const char* name, Value dflt = Value()) const {
        for (const auto& [k, v] : a.kwargs)
            if (k == name) return v;
        if (pos < a.args.size()) return a.args[pos];
        return dflt;
    }
    bool flag(size_t pos, const char* name, bool dflt) const {
        Value v = get(pos, name);
        return v.is_undefined() ? dflt : v.truthy();
    }
    int64_t integer(size_t pos, const char* name, int64_t dflt) const {
        Value v = get(pos, name);
        if (v.is_undefined() || v.is_none()) return dflt;
        if (!v.is_number()) fail(line, std::string("argument '") + name + "' must be an integer");
        return v.as_int();
    }
};

std::string needs_string(const Value& v, const char* what, int line) {
    if (!v.is_string()) fail(line, std::string(what) + " must be a string, not " + type_name(v));
    return v.as_string();
}

// jinja2's attribute getter: "a.b.0" looks up a, then b, then index 0 (getitem rules).
Value attr_path(const Value& item, const std::string& path, int line) {
    Value v = item;
    size_t start = 0;
    while (true) {
        size_t dot = path.find('.', start);
        std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
        v = digits ? get_item(v, Value(int64_t(std::atoll(part.c_str()))), line) : get_item(v, Value(part), line);
        if (dot == std::string::npos) return v;
        start = dot + 1;
    }
}

// The sort key jinja2 uses when case_sensitive is false: strings lowercased.
Value fold(const Value& v, bool case_sensitive) {
    return !case_sensitive && v.is_string() ? Value(ascii_lower(v.as_string())) : v;
}

std::vector<Value> sorted(std::vector<Value> items, const std::function<Value(const Value&)>& key, bool reverse, int line) {
    std::vector<std::pair<Value, size_t>> keyed;
    for (size_t i = 0; i < items.size(); ++i) keyed.emplace_back(key(items[i]), i);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        int c = compare_values(x.first, y.first, line);
        return reverse ? c > 0 : c < 0;
    });
    std::vector<Value> out;
    for (auto& [k, i] : keyed) out.push_back(items[i]);
    return out;
}

}  // namespace

std::string html_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&#34;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

namespace {

// Python str.splitlines() for \n, \r\n and \r.
std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> lines;
    size_t i = 0;
    while (i < s.size()) {
        size_t j = s.find_first_of("\r\n", i);
        if (j == std::string::npos) {
            lines.push_back(s.substr(i));
            break;
        }
        lines.push_back(s.substr(i, j - i));
        i = j + (s[j] == '\r' && j + 1 < s.size() && s[j + 1] == '\n' ? 2 : 1);
    }
    return lines;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || static_cast<unsigned char>(c) >= 0x80; }

// Python's str.title(): a letter after a non-letter is upper-cased, other letters lowered.
std::string py_title(const std::string& s) {
    std::string out;
    bool prev_letter = false;
    for (char c : s) {
        bool letter = is_alpha(c);
        if (c >= 'a' && c <= 'z' && !prev_letter) c = char(c - 32);
        else if (c >= 'A' && c <= 'Z' && prev_letter) c = char(c + 32);
        out += c;
        prev_letter = letter;
    }
    return out;
}

// jinja2's title filter: words start after runs of [-\s({[<].
std::string jinja_title(const std::string& s) {
    std::string out;
    bool start = true;
    for (char c : s) {
        bool sep = c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '(' || c == '{' ||
                   c == '[' || c == '<';
        if (sep) {
            out += c;
            start = true;
        } else {
            out += start ? ascii_upper(std::string(1, c)) : ascii_lower(std::string(1, c));
            start = false;
        }
    }
    return out;
}

std::string py_capitalize(const std::string& s) {
    if (s.empty()) return s;
    return ascii_upper(s.substr(0, 1)) + ascii_lower(s.substr(1));
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` between every character
        auto chars = utf8_chars(s);
        int64_t done = 0;
        for (size_t i = 0; i <= chars.size(); ++i) {
            if (count < 0 || done < count) out += to, ++done;
            if (i < chars.size()) out += chars[i];
        }
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        size_t f = s.find(from, pos);
        if (f == std::string::npos) break;
        out.append(s, pos, f - pos);
        out += to;
        pos = f + from.size();
        ++done;
    }
    out.append(s, pos, std::string::npos);
    return out;
}

Value py_split(const std::string& s, const Value& sep, int64_t maxsplit, int line) {
    std::vector<Value> parts;
    if (sep.is_none() || sep.is_undefined()) {
        size_t i = 0;
        auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
        while (true) {
            while (i < s.size() && ws(s[i])) ++i;
            if (i >= s.size()) break;
            if (maxsplit >= 0 && int64_t(parts.size()) >= maxsplit) {
                size_t e = s.size();
                while (e > i && ws(s[e - 1])) --e;
                parts.push_back(Value(s.substr(i, e - i)));
                break;
            }
            size_t j = i;
            while (j < s.size() && !ws(s[j])) ++j;
            parts.push_back(Value(s.substr(i, j - i)));
            i = j;
        }
        return Value::array(std::move(parts));
    }
    std::string d = needs_string(sep, "separator", line);
    if (d.empty()) fail(line, "empty separator");
    size_t pos = 0;
    while (maxsplit < 0 || int64_t(parts.size()) < maxsplit) {
        size_t f = s.find(d, pos);
        if (f == std::string::npos) break;
        parts.push_back(Value(s.substr(pos, f - pos)));
        pos = f + d.size();
    }
    parts.push_back(Value(s.substr(pos)));
    return Value::array(std::move(parts));
}

// Python str.format with {}, {0} and {name} fields ({{ and }} escape braces).
std::string py_format(const std::string& f, const CallArgs& a, int line) {
    std::string out;
    size_t auto_idx = 0;
    for (size_t i = 0; i < f.size(); ++i) {
        char c = f[i];
        if ((c == '{' || c == '}') && i + 1 < f.size() && f[i + 1] == c) {
            out += c;
            ++i;
            continue;
        }
        if (c == '}') fail(line, "single '}' encountered in format string");
        if (c != '{') {
            out += c;
            continue;
        }
        size_t e = f.find('}', i);
        if (e == std::string::npos) fail(line, "single '{' encountered in format string");
        std::string field = f.substr(i + 1, e - i - 1);
        if (field.find_first_of(":!") != std::string::npos) fail(line, "format specs are not supported in str.format");
        Value v;
        if (field.empty()) {
            if (auto_idx >= a.args.size()) fail(line, "Replacement index out of range for positional args tuple");
            v = a.args[auto_idx++];
        } else if (std::all_of(field.begin(), field.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
            size_t k = size_t(std::atoll(field.c_str()));
            if (k >= a.args.size()) fail(line, "Replacement index out of range for positional args tuple");
            v = a.args[k];
        } else {
            bool found = false;
            for (const auto& [k, x] : a.kwargs)
                if (k == field) v = x, found = true;
            if (!found) fail(line, "KeyError: '" + field + "'");
        }
        out += v.str();
        i = e;
    }
    return out;
}

Value fn(const char* name, std::function<Value(const CallArgs&)> f) {
    return Value::function(name, [f = std::move(f)](const CallArgs& a) -> Expected<Value> { return f(a); });
}

Value unsafe(const std::string& attr, const Value& obj, int line) {
    std::string msg = "access to attribute '" + attr + "' of '" + type_name(obj) + "' object is unsafe";
    return Value::function(attr, [msg, line](const CallArgs&) -> Expected<Value> { fail(line, msg); });
}

Value str_method(const std::string& s, const std::string& name, int line) {
    auto m = [&](std::function<Value(const CallArgs&, const Args&)> f) {
        return fn(name.c_str(), [f = std::move(f), line](const CallArgs& a) { return f(a, Args{a, line}); });
    };
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
        bool l = name != "rstrip", r = name != "lstrip";
        return m([s, l, r](const CallArgs&, const Args& g) { return Value(py_strip(s, g.get(0, "chars"), l, r)); });
    }
    if (name == "split") return m([s](const CallArgs&, const Args& g) { return py_split(s, g.get(0, "sep"), g.integer(1, "maxsplit", -1), g.line); });
    if (name == "startswith" || name == "endswith") {
        bool starts = name == "startswith";
        return m([s, starts](const CallArgs&, const Args& g) {
            Value p = g.get(0, "prefix");
            std::vector<Value> options = p.is_tuple() ? p.items() : std::vector<Value>{p};
            for (const auto& o : options) {
                std::string x = needs_string(o, starts ? "startswith argument" : "endswith argument", g.line);
                if (x.size() <= s.size() && (starts ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0))
                    return Value(true);
            }
            return Value(false);
        });
    }
    if (name == "upper") return m([s](const CallArgs&, const Args&) { return Value(ascii_upper(s)); });
    if (name == "lower") return m([s](const CallArgs&, const Args&) { return Value(ascii_lower(s)); });
    if (name == "title") return m([s](const CallArgs&, const Args&) { return Value(py_title(s)); });
    if (name == "capitalize") return m([s](const CallArgs&, const Args&) { return Value(py_capitalize(s)); });
    if (name == "replace")
        return m([s](const CallArgs&, const Args& g) {
            return Value(py_replace(s, needs_string(g.get(0, "old"), "replace argument", g.line), needs_string(g.get(1, "new"), "replace argument", g.line),
                                    g.integer(2, "count", -1)));
        });
    if (name == "find" || name == "rfind" || name == "index" || name == "count") {
        return m([s, name](const CallArgs&, const Args& g) {
            std::string sub = needs_string(g.get(0, "sub"), "substring", g.line);
            if (name == "count") {
                if (sub.empty()) return Value(int64_t(utf8_length(s) + 1));
                int64_t c = 0;
                for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
                return Value(c);
            }
            size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
            if (p == std::string::npos) {
                if (name == "index") fail(g.line, "substring not found");
                return Value(int64_t(-1));
            }
            return Value(int64_t(utf8_length(s.substr(0, p))));
        });
    }
    if (name == "join")
        return m([s](const CallArgs&, const Args& g) {
            std::string out;
            bool first = true;
            for (const auto& x : iterate(g.get(0, "iterable"), g.line)) {
                if (!first) out += s;
                out += needs_string(x, "join item", g.line);
                first = false;
            }
            return Value(std::move(out));
        });
    if (name == "format") return m([s](const CallArgs& a, const Args& g) { return Value(py_format(s, a, g.line)); });
    if (name == "splitlines")
        return m([s](const CallArgs&, const Args&) {
            std::vector<Value> out;
            for (auto& l : split_lines(s)) out.push_back(Value(l));
            return Value::array(std::move(out));
        });
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "islower" || name == "isupper") {
        return m([s, name](const CallArgs&, const Args&) {
            if (s.empty()) return Value(false);
            bool any_cased = false;
            for (char c : s) {
                bool d = c >= '0' && c <= '9', al = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
                bool sp = c == ' ' || (c >= '\t' && c <= '\r');
                if (name == "isdigit" && !d) return Value(false);
                if (name == "isalpha" && !al) return Value(false);
                if (name == "isspace" && !sp) return Value(false);
                if (name == "isalnum" && !(al || d)) return Value(false);
                if (name == "islower" && c >= 'A' && c <= 'Z') return Value(false);
                if (name == "isupper" && c >= 'a' && c <= 'z') return Value(false);
                any_cased |= al;
            }
            return Value(name == "islower" || name == "isupper" ? any_cased : true);
        });
    }
    return Value();
}

}  // namespace

std::vector<Value> iterate(const Value& v, int line) {
    switch (v.type()) {
        case Value::Type::Array: return v.items();
        case Value::Type::Undefined: return {};
        case Value::Type::String: {
            std::vector<Value> out;
            for (auto& c : utf8_chars(v.as_string())) out.push_back(Value(c));
            return out;
        }
        case Value::Type::Object: {
            if (v.is_namespace()) break;
            std::vector<Value> out;
            for (size_t i = 0; i < v.entries().size(); ++i) out.push_back(v.key_at(i));
            return out;
        }
        default: break;
    }
    fail(line, "'" + type_name(v) + "' object is not iterable");
}

Value get_method(const Value& obj, const std::string& name, int line) {
    if (obj.is_string()) return str_method(obj.as_string(), name, line);
    if (obj.is_object() && !obj.is_namespace()) {
        if (name == "get")
            return fn("get", [obj, line](const CallArgs& a) {
                Args g{a, line};
                const Value* v = obj.find_key(g.get(0, "key"));
                return v ? *v : g.get(1, "default", Value(nullptr));
            });
        if (name == "items" || name == "keys" || name == "values") {
            return fn(name.c_str(), [obj, name](const CallArgs&) {
                std::vector<Value> out;
                for (size_t i = 0; i < obj.entries().size(); ++i) {
                    const Value& v = obj.entries()[i].second;
                    out.push_back(name == "items" ? Value::tuple({obj.key_at(i), v}) : name == "keys" ? obj.key_at(i) : v);
                }
                return Value::array(std::move(out));
            });
        }
        if (name == "pop" || name == "popitem" || name == "update" || name == "setdefault" || name == "clear") return unsafe(name, obj, line);
        if (name == "copy")
            return fn("copy", [obj](const CallArgs&) {
                Value d = Value::object();
                for (size_t i = 0; i < obj.entries().size(); ++i) d.set_key(obj.key_at(i), obj.entries()[i].second);
                return d;
            });
        return Value();
    }
    if (obj.is_array()) {
        if (name == "index" || name == "count") {
            return fn(name.c_str(), [obj, name, line](const CallArgs& a) {
                Args g{a, line};
                Value x = g.get(0, "value");
                int64_t c = 0;
                for (size_t i = 0; i < obj.items().size(); ++i) {
                    if (!values_equal(obj.items()[i], x)) continue;
                    if (name == "index") return Value(int64_t(i));
                    ++c;
                }
                if (name == "index") fail(line, x.repr() + " is not in list");
                return Value(c);
            });
        }
        if (!obj.is_tuple() && (name == "append" || name == "pop" || name == "insert" || name == "extend" || name == "remove" ||
                                name == "sort" || name == "reverse" || name == "clear"))
            return unsafe(name, obj, line);
    }
    return Value();
}

// ---- tests ----------------------------------------------------------------------------------

namespace {
using TestFn = bool (*)(const Value&, const Args&);
const std::map<std::string, TestFn>& tests() {
    static const std::map<std::string, TestFn> t = {
        {"defined", [](const Value& v, const Args&) { return !v.is_undefined(); }},
        {"undefined", [](const Value& v, const Args&) { return v.is_undefined(); }},
        {"none", [](const Value& v, const Args&) { return v.is_none(); }},
        {"boolean", [](const Value& v, const Args&) { return v.is_bool(); }},
        {"true", [](const Value& v, const Args&) { return v.is_bool() && v.as_bool(); }},
        {"false", [](const Value& v, const Args&) { return v.is_bool() && !v.as_bool(); }},
        {"integer", [](const Value& v, const Args&) { return v.is_int(); }},
        {"float", [](const Value& v, const Args&) { return v.is_float(); }},
        {"number", [](const Value& v, const Args&) { return v.is_number(); }},
        {"string", [](const Value& v, const Args&) { return v.is_string(); }},
        {"mapping", [](const Value& v, const Args&) { return v.is_object() && !v.is_namespace(); }},
        {"iterable", [](const Value& v, const Args&) { return v.is_string() || v.is_array() || (v.is_object() && !v.is_namespace()) || v.is_undefined(); }},
        {"sequence", [](const Value& v, const Args&) { return v.is_string() || (v.is_array() && !v.is_generator()) || (v.is_object() && !v.is_namespace()) || v.is_undefined(); }},
        {"callable", [](const Value& v, const Args&) { return v.is_function(); }},
        {"odd", [](const Value& v, const Args& g) {
             if (!v.is_int() && !v.is_bool()) fail(g.line, "'odd' test needs an integer");
             return v.as_int() % 2 != 0;
         }},
        {"even", [](const Value& v, const Args& g) {
             if (!v.is_int() && !v.is_bool()) fail(g.line, "'even' test needs an integer");
             return v.as_int() % 2 == 0;
         }},
        {"divisibleby", [](const Value& v, const Args& g) {
             Value d = g.get(0, "num");
             if (!v.is_number() || !d.is_number()) fail(g.line, "'divisibleby' test needs numbers");
             if (d.as_double() == 0) fail(g.line, "integer division or modulo by zero");
             return std::fmod(v.as_double(), d.as_double()) == 0;
         }},
        {"in", [](const Value& v, const Args& g) { return contains(g.get(0, "seq"), v, g.line); }},
        {"lower", [](const Value& v, const Args&) { return v.is_string() && ascii_lower(v.as_string()) == v.as_string(); }},
        {"upper", [](const Value& v, const Args&) { return v.is_string() && ascii_upper(v.as_string()) == v.as_string(); }},
        {"sameas", [](const Value& v, const Args& g) {
             Value o = g.get(0, "other");
             return v.type() == o.type() && values_equal(v, o);
         }},
        {"escaped", [](const Value&, const Args&) { return false; }},
    };
    return t;
}
bool compare_test(const std::string& name, const Value& v, const Args& g, bool& result) {
    Value o = g.get(0, "b");
    if (name == "eq" || name == "equalto" || name == "==") result = values_equal(v, o);
    else if (name == "ne" || name == "!=") result = !values_equal(v, o);
    else if (name == "lt" || name == "lessthan" || name == "<") result = compare_values(v, o, g.line) < 0;
    else if (name == "le" || name == "<=") result = compare_values(v, o, g.line) <= 0;
    else if (name == "gt" || name == "greaterthan" || name == ">") result = compare_values(v, o, g.line) > 0;
    else if (name == "ge" || name == ">=") result = compare_values(v, o, g.line) >= 0;
    else return false;
    return true;
}
}  // namespace

bool has_test(const std::string& name) {
    bool r;
    CallArgs none;
    none.args.push_back(Value(0));
    return tests().count(name) || compare_test(name, Value(0), Args{none, 0}, r);
}

bool apply_test(const std::string& name, const Value& input, const CallArgs& a, int line) {
    Args g{a, line};
    auto it = tests().find(name);
    if (it != tests().end()) return it->second(input, g);
    bool r;
    if (compare_test(name, input, g, r)) return r;
    fail(line, "unknown test '" + name + "'");
}

// ---- filters --------------------------------------------------------------------------------

namespace {

Value select_items(const Value& seq, const Args& g, bool want, bool by_attr) {
    std::vector<Value> out;
    size_t first = by_attr ? 1 : 0;
    std::string attr = by_attr ? needs_string(g.a.args.empty() ? Value() : g.a.args[0], "attribute", g.line) : "";
    Value test = first < g.a.args.size() ? g.a.args[first] : Value();
    CallArgs rest;
    for (size_t i = first + 1; i < g.a.args.size(); ++i) rest.args.push_back(g.a.args[i]);
    for (const auto& item : seq.truthy() ? iterate(seq, g.line) : std::vector<Value>{}) {
        Value v = by_attr ? attr_path(item, attr, g.line) : item;
        bool ok = test.is_undefined() ? v.truthy() : apply_test(needs_string(test, "test name", g.line), v, rest, g.line);
        if (ok == want) out.push_back(item);
    }
    return Value::generator(std::move(out));
}

Value map_items(const Value& seq, const Args& g) {
    std::vector<Value> out;
    if (!seq.truthy()) return Value::generator({});
    Value attr = g.get(99, "attribute");
    if (!attr.is_undefined()) {
        Value dflt = g.get(99, "default");
        for (const auto& item : iterate(seq, g.line)) {
            Value v = attr_path(item, attr.str(), g.line);
            out.push_back(v.is_undefined() && !dflt.is_undefined() ? dflt : v);
        }
        return Value::generator(std::move(out));
    }
    if (g.a.args.empty()) fail(g.line, "map requires a filter argument");
    std::string f = needs_string(g.a.args[0], "filter name", g.line);
    CallArgs rest;
    rest.args.assign(g.a.args.begin() + 1, g.a.args.end());
    rest.kwargs = g.a.kwargs;
    for (const auto& item : iterate(seq, g.line)) out.push_back(apply_filter(f, item, rest, g.line));
    return Value::generator(std::move(out));
}

std::function<Value(const Value&)> key_fn(const Args& g, size_t attr_pos, bool case_sensitive) {
    Value attr = g.get(attr_pos, "attribute");
    int line = g.line;
    return [attr, case_sensitive, line](const Value& item) {
        if (attr.is_undefined() || attr.is_none()) return fold(item, case_sensitive);
        std::vector<Value> parts;
        std::string spec = attr.str();
        size_t start = 0;
        while (true) {
            size_t comma = spec.find(',', start);
            parts.push_back(fold(attr_path(item, py_strip(spec.substr(start, comma - start), Value(), true, true), line), case_sensitive));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        return parts.size() == 1 ? parts[0] : Value::array(std::move(parts));
    };
}

Value to_int(const Value& v, const Value& dflt, int64_t base) {
    if (v.is_int() || v.is_bool()) return Value(v.as_int());
    if (v.is_float()) return std::isfinite(v.as_double()) ? Value(int64_t(v.as_double())) : dflt;
    if (v.is_string()) {
        std::string s = py_strip(v.as_string(), Value(), true, true);
        s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
        if (s.empty()) return dflt;
        char* end = nullptr;
        errno = 0;
        long long x = std::strtoll(s.c_str(), &end, int(base));
        if (*end == 0 && errno == 0) return Value(int64_t(x));
        double d = std::strtod(s.c_str(), &end);
        if (*end == 0 && std::isfinite(d)) return Value(int64_t(d));
    }
    return dflt;
}

Value to_float(const Value& v, const Value& dflt) {
    if (v.is_number()) return Value(v.as_double());
    if (v.is_string()) {
        std::string s = py_strip(v.as_string(), Value(), true, true);
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && *end == 0) return Value(d);
    }
    return dflt;
}

std::string indent_text(std::string s, const Value& width, bool first, bool blank) {
    std::string ind = width.is_string() ? width.as_string() : std::string(size_t(std::max<int64_t>(0, width.as_int())), ' ');
    s += "\n";
    std::vector<std::string> lines = split_lines(s);
    std::string rv;
    for (size_t i = 0; i < lines.size(); ++i) {
        if (i > 0) {
            rv += '\n';
            if (blank || !lines[i].empty()) rv += ind;
        }
        rv += lines[i];
    }
    return first ? ind + rv : rv;
}

using FilterFn = Value (*)(const Value&, const Args&);
const std::map<std::string, FilterFn>& filters() {
    static const std::map<std::string, FilterFn> f = {
        {"abs", [](const Value& v, const Args& g) {
             if (!v.is_number()) fail(g.line, "bad operand type for abs(): '" + type_name(v) + "'");
             return v.is_float() ? Value(std::fabs(v.as_double())) : Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
         }},
        {"attr", [](const Value& v, const Args& g) { return get_attr(v, g.get(0, "name").str(), g.line); }},
        {"capitalize", [](const Value& v, const Args&) { return Value(py_capitalize(v.str())); }},
        {"center", [](const Value& v, const Args& g) {
             std::string s = v.str();
             int64_t w = g.integer(0, "width", 80), n = int64_t(utf8_length(s));
             if (w <= n) return Value(s);
             int64_t pad = w - n, left = pad / 2 + (pad & w & 1);
             return Value(std::string(size_t(left), ' ') + s + std::string(size_t(pad - left), ' '));
         }},
        {"default", [](const Value& v, const Args& g) {
             return v.is_undefined() || (g.flag(1, "boolean", false) && !v.truthy()) ? g.get(0, "default_value", Value("")) : v;
         }},
        {"dictsort", [](const Value& v, const Args& g) {
             if (!v.is_object()) fail(g.line, "dictsort expects a mapping");
             bool cs = g.flag(0, "case_sensitive", false), rev = g.flag(2, "reverse", false);
             std::string by = g.get(1, "by", Value("key")).str();
             if (by != "key" && by != "value") fail(g.line, "You can only sort by either 'key' or 'value'");
             std::vector<Value> items;
             for (size_t i = 0; i < v.entries().size(); ++i) items.push_back(Value::tuple({v.key_at(i), v.entries()[i].second}));
             size_t pos = by == "key" ? 0 : 1;
             return Value::array(sorted(items, [&](const Value& t) { return fold(t.items()[pos], cs); }, rev, g.line));
         }},
        {"escape", [](const Value& v, const Args&) { return v.is_markup() ? v : Value::markup(html_escape(v.str())); }},
        {"first", [](const Value& v, const Args& g) {
             auto items = iterate(v, g.line);
             return items.empty() ? Value() : items.front();
         }},
        {"float", [](const Value& v, const Args& g) { return to_float(v, g.get(0, "default", Value(0.0))); }},
        {"indent", [](const Value& v, const Args& g) {
             return Value(indent_text(v.str(), g.get(0, "width", Value(4)), g.flag(1, "first", false), g.flag(2, "blank", false)));
         }},
        {"int", [](const Value& v, const Args& g) { return to_int(v, g.get(0, "default", Value(0)), g.integer(1, "base", 10)); }},
        {"items", [](const Value& v, const Args& g) {
             if (v.is_undefined()) return Value::generator({});
             if (!v.is_object()) fail(g.line, "Can only get item pairs from a mapping.");
             std::vector<Value> out;
             for (size_t i = 0; i < v.entries().size(); ++i) out.push_back(Value::tuple({v.key_at(i), v.entries()[i].second}));
             return Value::generator(std::move(out));
         }},
        {"join", [](const Value& v, const Args& g) {
             std::string sep = g.get(0, "d", Value("")).str(), out;
             Value attr = g.get(1, "attribute");
             bool first = true;
             for (const auto& x : iterate(v, g.line)) {
                 if (!first) out += sep;
                 out += (attr.is_undefined() || attr.is_none() ? x : attr_path(x, attr.str(), g.line)).str();
                 first = false;
             }
             return Value(std::move(out));
         }},
        {"last", [](const Value& v, const Args& g) {
             if (v.is_undefined() || v.is_generator()) fail(g.line, "'" + type_name(v) + "' object is not reversible");
             auto items = iterate(v, g.line);
             return items.empty() ? Value() : items.back();
         }},
        {"length", [](const Value& v, const Args& g) {
             if ((!v.is_string() && !v.is_array() && !v.is_object() && !v.is_undefined()) || v.is_generator())
                 fail(g.line, "object of type '" + type_name(v) + "' has no len()");
             return Value(int64_t(v.size()));
         }},
        {"list", [](const Value& v, const Args& g) { return Value::array(iterate(v, g.line)); }},
        {"lower", [](const Value& v, const Args&) { return Value(ascii_lower(v.str())); }},
        {"map", [](const Value& v, const Args& g) { return map_items(v, g); }},
        {"max", [](const Value& v, const Args& g) {
             auto items = iterate(v, g.line);
             if (items.empty()) return Value();
             auto key = key_fn(g, 1, g.flag(0, "case_sensitive", false));
             return sorted(items, key, true, g.line).front();
         }},
        {"min", [](const Value& v, const Args& g) {
             auto items = iterate(v, g.line);
             if (items.empty()) return Value();
             auto key = key_fn(g, 1, g.flag(0, "case_sensitive", false));
             return sorted(items, key, false, g.line).front();
         }},
        {"reject", [](const Value& v, const Args& g) { return select_items(v, g, false, false); }},
        {"rejectattr", [](const Value& v, const Args& g) { return select_items(v, g, false, true); }},
        {"replace", [](const Value& v, const Args& g) {
             return Value(py_replace(v.str(), g.get(0, "old").str(), g.get(1, "new").str(), g.integer(2, "count", -1)));
         }},
        {"reverse", [](const Value& v, const Args& g) {
             if (v.is_string()) {
                 auto chars = utf8_chars(v.as_string());
                 std::string out;
                 for (size_t i = chars.size(); i-- > 0;) out += chars[i];
                 return Value(std::move(out));
             }
             auto items = iterate(v, g.line);
             std::reverse(items.begin(), items.end());
             return Value::generator(std::move(items));
         }},
        {"round", [](const Value& v, const Args& g) {
             if (!v.is_number()) fail(g.line, "round needs a number");
             int64_t p = g.integer(0, "precision", 0);
             std::string method = g.get(1, "method", Value("common")).str();
             if (method == "common" && !v.is_float()) return Value(v.as_int());
             double scale = std::pow(10.0, double(p)), x = v.as_double() * scale;
             double r = method == "common" ? std::nearbyint(x) : method == "ceil" ? std::ceil(x) : method == "floor" ? std::floor(x) : NAN;
             if (std::isnan(r) && !std::isnan(x)) fail(g.line, "method must be common, ceil or floor");
             return Value(r / scale);
         }},
        {"safe", [](const Value& v, const Args&) { return v.is_markup() ? v : Value::markup(v.str()); }},
        {"select", [](const Value& v, const Args& g) { return select_items(v, g, true, false); }},
        {"selectattr", [](const Value& v, const Args& g) { return select_items(v, g, true, true); }},
        {"sort", [](const Value& v, const Args& g) {
             return Value::array(sorted(iterate(v, g.line), key_fn(g, 2, g.flag(1, "case_sensitive", false)), g.flag(0, "reverse", false), g.line));
         }},
        {"string", [](const Value& v, const Args&) { return Value(v.str()); }},
        {"sum", [](const Value& v, const Args& g) {
             Value total = g.get(1, "start", Value(0)), attr = g.get(0, "attribute");
             for (const auto& x : iterate(v, g.line))
                 total = binary_op("+", total, attr.is_undefined() || attr.is_none() ? x : attr_path(x, attr.str(), g.line), g.line);
             return total;
         }},
        {"title", [](const Value& v, const Args&) { return Value(jinja_title(v.str())); }},
        {"tojson", [](const Value& v, const Args& g) {
             Value ind = g.get(1, "indent");
             if (!ind.is_undefined() && !ind.is_none() && !ind.is_int()) fail(g.line, "tojson indent must be an integer");
             int indent = ind.is_int() ? int(std::clamp<int64_t>(ind.as_int(), 0, 64)) : -1;
             auto r = v.to_json(indent, g.flag(0, "ensure_ascii", false), g.flag(3, "sort_keys", false));
             if (!r) fail(g.line, r.message());
             return Value(std::move(r).value());
         }},
        {"trim", [](const Value& v, const Args& g) { return Value(py_strip(v.str(), g.get(0, "chars"), true, true)); }},
        {"unique", [](const Value& v, const Args& g) {
             auto key = key_fn(g, 1, g.flag(0, "case_sensitive", false));
             std::vector<Value> out, seen;
             for (const auto& x : iterate(v, g.line)) {
                 Value k = key(x);
                 if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return values_equal(s, k); })) continue;
                 seen.push_back(k);
                 out.push_back(x);
             }
             return Value::generator(std::move(out));
         }},
        {"upper", [](const Value& v, const Args&) { return Value(ascii_upper(v.str())); }},
        {"wordcount", [](const Value& v, const Args&) {
             std::string s = v.str();
             int64_t n = 0;
             bool in_word = false;
             for (char c : s) {
                 bool w = is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
                 if (w && !in_word) ++n;
                 in_word = w;
             }
             return Value(n);
         }},
    };
    return f;
}

const std::string& canonical_filter(const std::string& name) {
    static const std::map<std::string, std::string> aliases = {{"d", "default"}, {"count", "length"}, {"e", "escape"}, {"forceescape", "escape"}};
    auto it = aliases.find(name);
    return it == aliases.end() ? name : it->second;
}

}  // namespace

bool has_filter(const std::string& name) { return filters().count(canonical_filter(name)) != 0; }

Value apply_filter(const std::string& name, const Value& input, const CallArgs& a, int line) {
    auto it = filters().find(canonical_filter(name));
    if (it == filters().end()) fail(line, "unknown filter '" + name + "'");
    return it->second(input, Args{a, line});
}

}  // namespace kiln::jinja
