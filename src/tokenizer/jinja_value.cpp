// jinja::Value: Python-like values for the Jinja engine: construction (from JSON too),
// truthiness, str()/repr() as Python prints them, json.dumps as transformers' tojson, and
// the comparisons and UTF-8 helpers the evaluator shares.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "jinja_ast.h"

namespace kiln::jinja {

struct Value::Object {
    std::vector<std::pair<std::string, Value>> entries;
    std::vector<Value> keys;  // aligned with entries: the key values (strings mostly)
    bool is_namespace = false;
};
struct Value::Func {
    std::string name;
    Function fn;
};

Value::Value(std::string s) : type_(Type::String), s_(std::make_shared<const std::string>(std::move(s))) {}

Value Value::array(std::vector<Value> items) {
    Value v;
    v.type_ = Type::Array;
    v.a_ = std::make_shared<std::vector<Value>>(std::move(items));
    return v;
}
Value Value::tuple(std::vector<Value> items) {
    Value v = array(std::move(items));
    v.flavor_ = 1;
    return v;
}
Value Value::markup(std::string s) {
    Value v(std::move(s));
    v.flavor_ = 1;
    return v;
}
Value Value::generator(std::vector<Value> items) {
    Value v = array(std::move(items));
    v.flavor_ = 2;
    return v;
}
Value Value::object() {
    Value v;
    v.type_ = Type::Object;
    v.o_ = std::make_shared<Object>();
    return v;
}
Value Value::object(std::vector<std::pair<std::string, Value>> entries) {
    Value v = object();
    for (auto& [k, x] : entries) v.set(k, std::move(x));
    return v;
}
Value Value::function(std::string name, Function fn) {
    Value v;
    v.type_ = Type::Function;
    v.f_ = std::make_shared<const Func>(Func{std::move(name), std::move(fn)});
    return v;
}

namespace {
template <class Json>
Value value_from_json(const Json& j) {
    switch (j.type()) {
        case nlohmann::json::value_t::null: return Value(nullptr);
        case nlohmann::json::value_t::boolean: return Value(j.template get<bool>());
        case nlohmann::json::value_t::number_integer: return Value(j.template get<int64_t>());
        case nlohmann::json::value_t::number_unsigned: {
            uint64_t u = j.template get<uint64_t>();
            return u > uint64_t(INT64_MAX) ? Value(double(u)) : Value(int64_t(u));
        }
        case nlohmann::json::value_t::number_float: return Value(j.template get<double>());
        case nlohmann::json::value_t::string: return Value(j.template get<std::string>());
        case nlohmann::json::value_t::array: {
            std::vector<Value> items;
            items.reserve(j.size());
            for (const auto& x : j) items.push_back(value_from_json(x));
            return Value::array(std::move(items));
        }
        case nlohmann::json::value_t::object: {
            Value o = Value::object();
            for (auto it = j.begin(); it != j.end(); ++it) o.set(it.key(), value_from_json(it.value()));
            return o;
        }
        default: return Value();
    }
}
}  // namespace

Value Value::from_json(const nlohmann::json& j) { return value_from_json(j); }
Value Value::from_json(const nlohmann::ordered_json& j) { return value_from_json(j); }

const std::string& Value::as_string() const {
    static const std::string empty;
    return type_ == Type::String ? *s_ : empty;
}
const std::vector<Value>& Value::items() const {
    static const std::vector<Value> empty;
    return type_ == Type::Array ? *a_ : empty;
}
std::vector<Value>& Value::mutable_items() {
    KILN_ASSERT(type_ == Type::Array, "mutable_items on a non-array");
    return *a_;
}
const std::vector<std::pair<std::string, Value>>& Value::entries() const {
    static const std::vector<std::pair<std::string, Value>> empty;
    return type_ == Type::Object ? o_->entries : empty;
}
const Function* Value::function() const { return type_ == Type::Function ? &f_->fn : nullptr; }
const std::string& Value::function_name() const {
    static const std::string empty;
    return type_ == Type::Function ? f_->name : empty;
}

const Value* Value::find(std::string_view key) const {
    if (type_ != Type::Object) return nullptr;
    for (size_t i = 0; i < o_->entries.size(); ++i)
        if (o_->entries[i].first == key && o_->keys[i].is_string()) return &o_->entries[i].second;
    return nullptr;
}
const Value* Value::find_key(const Value& key) const {
    if (type_ != Type::Object) return nullptr;
    if (key.is_string()) return find(std::string_view(key.as_string()));
    for (size_t i = 0; i < o_->entries.size(); ++i)
        if (values_equal(o_->keys[i], key)) return &o_->entries[i].second;
    return nullptr;
}
void Value::set(const std::string& key, Value v) { set_key(Value(key), std::move(v)); }
void Value::set_key(const Value& key, Value v) {
    KILN_ASSERT(type_ == Type::Object, "set on a non-object");
    if (const Value* old = find_key(key)) {
        *const_cast<Value*>(old) = std::move(v);
        return;
    }
    o_->entries.emplace_back(key.is_string() ? key.as_string() : key.str(), std::move(v));
    o_->keys.push_back(key);
}
Value Value::key_at(size_t i) const {
    if (type_ != Type::Object || i >= o_->keys.size()) return Value();
    return o_->keys[i];
}
void Value::push_back(Value v) {
    KILN_ASSERT(type_ == Type::Array, "push_back on a non-array");
    a_->push_back(std::move(v));
}
size_t Value::size() const {
    switch (type_) {
        case Type::String: return utf8_length(*s_);
        case Type::Array: return a_->size();
        case Type::Object: return o_->entries.size();
        default: return 0;
    }
}
bool Value::is_namespace() const { return type_ == Type::Object && o_->is_namespace; }
void Value::mark_namespace() {
    if (type_ == Type::Object) o_->is_namespace = true;
}

bool Value::truthy() const {
    switch (type_) {
        case Type::Undefined:
        case Type::None: return false;
        case Type::Bool:
        case Type::Int: return i_ != 0;
        case Type::Float: return d_ != 0;
        case Type::String: return !s_->empty();
        case Type::Array: return flavor_ == 2 || !a_->empty();
        case Type::Object: return !o_->entries.empty();
        case Type::Function: return true;
    }
    return false;
}

// ---- UTF-8 -------------------------------------------------------------------------------

namespace {
size_t utf8_len_at(const std::string& s, size_t i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) return 1;
    for (size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
    return n;
}
uint32_t decode_at(const std::string& s, size_t i, size_t n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (n == 1) return c;
    uint32_t cp = c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    return cp;
}
bool py_space(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}
// Python's str.isprintable() for the code points chat data plausibly holds.
bool py_printable(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) return false;
    if ((cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) || (cp >= 0x205F && cp <= 0x206F)) return false;
    if (cp == 0x3000 || cp == 0xFEFF || (cp >= 0xE000 && cp <= 0xF8FF) || (cp >= 0xFFF0 && cp <= 0xFFFB)) return false;
    return cp != 0x1680 && cp <= 0x10FFFF;
}
}  // namespace

std::vector<std::string> utf8_chars(const std::string& s) {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        size_t n = utf8_len_at(s, i);
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}
size_t utf8_length(const std::string& s) {
    size_t count = 0;
    for (size_t i = 0; i < s.size(); i += utf8_len_at(s, i)) ++count;
    return count;
}

std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
    std::vector<uint32_t> set;
    const bool ws = !chars.is_string();
    if (!ws)
        for (size_t i = 0; i < chars.as_string().size();) {
            size_t n = utf8_len_at(chars.as_string(), i);
            set.push_back(decode_at(chars.as_string(), i, n));
            i += n;
        }
    auto strip_cp = [&](uint32_t cp) { return ws ? py_space(cp) : std::find(set.begin(), set.end(), cp) != set.end(); };
    std::vector<std::pair<size_t, size_t>> cps;  // (offset, length)
    for (size_t i = 0; i < s.size();) {
        size_t n = utf8_len_at(s, i);
        cps.emplace_back(i, n);
        i += n;
    }
    size_t b = 0, e = cps.size();
    if (left)
        while (b < e && strip_cp(decode_at(s, cps[b].first, cps[b].second))) ++b;
    if (right)
        while (e > b && strip_cp(decode_at(s, cps[e - 1].first, cps[e - 1].second))) --e;
    if (b == e) return "";
    size_t from = cps[b].first, to = cps[e - 1].first + cps[e - 1].second;
    return s.substr(from, to - from);
}

std::string ascii_lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return s;
}
std::string ascii_upper(std::string s) {
    for (char& c : s)
        if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
    return s;
}

// ---- str / repr ----------------------------------------------------------------------------

std::string float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string sci(buf, r.ptr);  // e.g. -1.2345e+02
    size_t epos = sci.find('e');
    int exp = std::atoi(sci.c_str() + epos + 1);
    std::string mant = sci.substr(0, epos);
    bool neg = mant[0] == '-';
    if (neg) mant.erase(0, 1);
    std::string digits;
    for (char c : mant)
        if (c != '.') digits += c;
    std::string out;
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out = "0." + std::string(size_t(-exp - 1), '0') + digits;
        } else if (size_t(exp) + 1 >= digits.size()) {
            out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
        } else {
            out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
        }
    } else {
        out = digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char e[16];
        std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        out += e;
    }
    return neg ? "-" + out : out;
}

namespace {
std::string str_repr(const std::string& s) {
    const bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
    const char q = has_single && !has_double ? '"' : '\'';
    std::string out(1, q);
    for (size_t i = 0; i < s.size();) {
        size_t n = utf8_len_at(s, i);
        uint32_t cp = decode_at(s, i, n);
        if (cp == uint32_t(q) || cp == '\\') {
            out += '\\';
            out += char(cp);
        } else if (cp == '\n') {
            out += "\\n";
        } else if (cp == '\r') {
            out += "\\r";
        } else if (cp == '\t') {
            out += "\\t";
        } else if (n == 1 && cp >= 0x80) {  // invalid UTF-8 byte
            out += strfmt("\\x%02x", cp);
        } else if (!py_printable(cp)) {
            out += cp < 0x100 ? strfmt("\\x%02x", cp) : cp < 0x10000 ? strfmt("\\u%04x", cp) : strfmt("\\U%08x", cp);
        } else {
            out.append(s, i, n);
        }
        i += n;
    }
    out += q;
    return out;
}
}  // namespace

std::string Value::repr() const {
    switch (type_) {
        case Type::String: return str_repr(*s_);
        case Type::Undefined: return "Undefined";
        case Type::Array: {
            if (flavor_ == 2) return "<generator object>";
            const bool tuple = flavor_ == 1;
            std::string out = tuple ? "(" : "[";
            for (size_t i = 0; i < a_->size(); ++i) out += (i ? ", " : "") + (*a_)[i].repr();
            if (tuple && a_->size() == 1) out += ",";
            return out + (tuple ? ")" : "]");
        }
        case Type::Object: {
            if (o_->is_namespace) return "<Namespace>";
            std::string out = "{";
            bool first = true;
            for (size_t i = 0; i < o_->entries.size(); ++i) {
                out += (first ? "" : ", ") + o_->keys[i].repr() + ": " + o_->entries[i].second.repr();
                first = false;
            }
            return out + "}";
        }
        default: return str();
    }
}

std::string Value::str() const {
    switch (type_) {
        case Type::Undefined: return "";
        case Type::None: return "None";
        case Type::Bool: return i_ ? "True" : "False";
        case Type::Int: return std::to_string(i_);
        case Type::Float: return float_repr(d_);
        case Type::String: return *s_;
        case Type::Function: return "<function " + f_->name + ">";
        default: return repr();
    }
}

// ---- JSON -----------------------------------------------------------------------------------

namespace {
void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
    out += '"';
    for (size_t i = 0; i < s.size();) {
        size_t n = utf8_len_at(s, i);
        uint32_t cp = decode_at(s, i, n);
        switch (cp) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (cp < 0x20) {
                    out += strfmt("\\u%04x", cp);
                } else if (ensure_ascii && cp >= 0x80) {
                    if (cp >= 0x10000) {
                        uint32_t v = cp - 0x10000;
                        out += strfmt("\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
                    } else {
                        out += strfmt("\\u%04x", cp);
                    }
                } else {
                    out.append(s, i, n);
                }
        }
        i += n;
    }
    out += '"';
}

struct JsonWriter {
    int indent;
    bool ensure_ascii, sort_keys;
    std::string out;
    std::string error;

    void newline(int level) {
        out += '\n';
        out.append(size_t(indent) * size_t(level), ' ');
    }
    bool write(const Value& v, int level) {
        if (level > 500) return error = "object nested too deeply for tojson", false;
        switch (v.type()) {
            case Value::Type::Undefined: return error = "Object of type Undefined is not JSON serializable", false;
            case Value::Type::Function: return error = "Object of type function is not JSON serializable", false;
            case Value::Type::None: out += "null"; return true;
            case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; return true;
            case Value::Type::Int: out += std::to_string(v.as_int()); return true;
            case Value::Type::Float: {
                double d = v.as_double();
                out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : float_repr(d);
                return true;
            }
            case Value::Type::String: json_string(out, v.as_string(), ensure_ascii); return true;
            case Value::Type::Array: {
                if (v.is_generator()) return error = "Object of type generator is not JSON serializable", false;
                const auto& items = v.items();
                if (items.empty()) return out += "[]", true;
                out += '[';
                for (size_t i = 0; i < items.size(); ++i) {
                    if (i) out += indent >= 0 ? "," : ", ";
                    if (indent >= 0) newline(level + 1);
                    if (!write(items[i], level + 1)) return false;
                }
                if (indent >= 0) newline(level);
                out += ']';
                return true;
            }
            case Value::Type::Object: {
                std::vector<std::pair<std::string, Value>> es;
                for (size_t i = 0; i < v.entries().size(); ++i) {
                    const Value k = v.key_at(i);  // json.dumps writes non-string keys as JSON text
                    std::string key = k.is_string() ? k.as_string() : k.is_bool() ? (k.as_bool() ? "true" : "false") : k.is_none() ? "null" : k.str();
                    es.emplace_back(key, v.entries()[i].second);
                }
                if (es.empty()) return out += "{}", true;
                if (sort_keys) std::stable_sort(es.begin(), es.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
                out += '{';
                for (size_t i = 0; i < es.size(); ++i) {
                    if (i) out += indent >= 0 ? "," : ", ";
                    if (indent >= 0) newline(level + 1);
                    json_string(out, es[i].first, ensure_ascii);
                    out += ": ";
                    if (!write(es[i].second, level + 1)) return false;
                }
                if (indent >= 0) newline(level);
                out += '}';
                return true;
            }
        }
        return false;
    }
};
}  // namespace

Expected<std::string> Value::to_json(int indent, bool ensure_ascii, bool sort_keys) const {
    JsonWriter w{indent, ensure_ascii, sort_keys, {}, {}};
    if (!w.write(*this, 0)) return Status::error_str(w.error);
    return std::move(w.out);
}

// ---- comparisons -------------------------------------------------------------------------

std::string type_name(const Value& v) {
    switch (v.type()) {
        case Value::Type::Undefined: return "Undefined";
        case Value::Type::None: return "NoneType";
        case Value::Type::Bool: return "bool";
        case Value::Type::Int: return "int";
        case Value::Type::Float: return "float";
        case Value::Type::String: return "str";
        case Value::Type::Array: return v.is_tuple() ? "tuple" : v.is_generator() ? "generator" : "list";
        case Value::Type::Object: return v.is_namespace() ? "Namespace" : "dict";
        case Value::Type::Function: return "function";
    }
    return "?";
}

bool values_equal(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
        return a.as_int() == b.as_int();
    }
    if (a.type() != b.type()) return false;
    switch (a.type()) {
        case Value::Type::Undefined:
        case Value::Type::None: return true;
        case Value::Type::String: return a.as_string() == b.as_string();
        case Value::Type::Array: {
            if (a.is_generator() || b.is_generator()) return false;
            if (a.is_tuple() != b.is_tuple() || a.items().size() != b.items().size()) return false;
            for (size_t i = 0; i < a.items().size(); ++i)
                if (!values_equal(a.items()[i], b.items()[i])) return false;
            return true;
        }
        case Value::Type::Object: {
            if (a.entries().size() != b.entries().size()) return false;
            for (size_t i = 0; i < a.entries().size(); ++i) {
                const Value* o = b.find_key(a.key_at(i));
                if (!o || !values_equal(a.entries()[i].second, *o)) return false;
            }
            return true;
        }
        case Value::Type::Function: return a.function() == b.function();
        default: return false;
    }
}

int compare_values(const Value& a, const Value& b, int line) {
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) {
            double x = a.as_double(), y = b.as_double();
            return x < y ? -1 : x > y ? 1 : 0;
        }
        return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) {
        int c = a.as_string().compare(b.as_string());
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.is_array() && b.is_array() && a.is_tuple() == b.is_tuple() && !a.is_generator() && !b.is_generator()) {
        const auto &x = a.items(), &y = b.items();
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (values_equal(x[i], y[i])) continue;
            return compare_values(x[i], y[i], line);
        }
        return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    }
    if (a.is_undefined() || b.is_undefined()) fail(line, "undefined value used in a comparison");
    fail(line, "'<' not supported between instances of '" + type_name(a) + "' and '" + type_name(b) + "'");
}

}  // namespace kiln::jinja
