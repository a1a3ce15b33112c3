// A Jinja template engine for Hugging Face chat templates. It renders templates as Python
// jinja2 does with the settings transformers uses:
//   ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//                                 extensions=[loopcontrols, AssistantTracker])
// with the globals raise_exception(msg) and strftime_now(fmt) and transformers' tojson
// filter (json.dumps with ensure_ascii=False, sort_keys=False and ', ' / ': ' separators,
// or ',' / ': ' with indent). The language covers what real chat templates use: output,
// if/for/set/macro/call/filter blocks, namespaces, loop controls, Python-like expressions,
// jinja2's filters and tests and the common str/dict methods. No autoescape, no
// inheritance or includes.
//
//   auto t = kiln::jinja::Template::parse(source);            // Expected<Template>
//   auto ctx = kiln::jinja::Value::from_json(json_context);    // or build with Value::object()
//   auto text = t->render(ctx);                               // Expected<std::string>
//
// Errors (bad syntax, unknown filters, type errors, raise_exception) come back as a Status
// naming the line ("line 12: unknown filter 'foo'"); raise_exception('x') gives exactly "x".
// Nothing throws across this API.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kiln/status.h"

namespace kiln::jinja {

class Value;

// The arguments of a call: positional ones, then keyword ones in the order written.
struct CallArgs {
    std::vector<Value> args;
    std::vector<std::pair<std::string, Value>> kwargs;
};
// A callable value (global function, bound method, macro). Return an error to fail the render.
using Function = std::function<Expected<Value>(const CallArgs&)>;

// A dynamically typed value, as in Python. Arrays and objects are shared references (a copy
// of a Value refers to the same list or dict); objects keep their keys in insertion order.
class Value {
public:
    enum class Type { Undefined, None, Bool, Int, Float, String, Array, Object, Function };

    Value() = default;  // undefined
    Value(std::nullptr_t) : type_(Type::None) {}
    Value(bool b) : type_(Type::Bool), i_(b) {}
    Value(int i) : type_(Type::Int), i_(i) {}
    Value(int64_t i) : type_(Type::Int), i_(i) {}
    Value(double d) : type_(Type::Float), d_(d) {}
    Value(const char* s) : Value(std::string(s)) {}
    Value(std::string_view s) : Value(std::string(s)) {}
    Value(std::string s);

    static Value undefined() { return Value(); }
    static Value none() { return Value(nullptr); }
    static Value array(std::vector<Value> items = {});
    static Value tuple(std::vector<Value> items);  // an array that prints as (a, b)
    // An array standing for a Python generator (what map/select/... return): truthy even
    // when empty, iterable, but without len(), indexing or a JSON form.
    static Value generator(std::vector<Value> items);
    // A string marked safe (markupsafe.Markup, from the safe and escape filters): `+` with a
    // plain string HTML-escapes the plain side, as Python does.
    static Value markup(std::string s);
    static Value object();
    static Value object(std::vector<std::pair<std::string, Value>> entries);
    static Value function(std::string name, Function fn);
    // JSON null/bool/number/string/array/object as the matching types. nlohmann::json keeps
    // object keys sorted; parse with nlohmann::ordered_json to keep the document's order
    // (which templates printing tojson show).
    static Value from_json(const nlohmann::json& j);
    static Value from_json(const nlohmann::ordered_json& j);

    Type type() const { return type_; }
    bool is_undefined() const { return type_ == Type::Undefined; }
    bool is_none() const { return type_ == Type::None; }
    bool is_bool() const { return type_ == Type::Bool; }
    bool is_int() const { return type_ == Type::Int; }
    bool is_float() const { return type_ == Type::Float; }
    bool is_number() const { return type_ == Type::Int || type_ == Type::Float || type_ == Type::Bool; }
    bool is_string() const { return type_ == Type::String; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_tuple() const { return type_ == Type::Array && flavor_ == 1; }
    bool is_generator() const { return type_ == Type::Array && flavor_ == 2; }
    bool is_markup() const { return type_ == Type::String && flavor_ == 1; }
    bool is_object() const { return type_ == Type::Object; }
    bool is_function() const { return type_ == Type::Function; }

    bool as_bool() const { return i_ != 0; }  // Bool (and Int)
    int64_t as_int() const { return type_ == Type::Float ? int64_t(d_) : i_; }
    double as_double() const { return type_ == Type::Float ? d_ : double(i_); }
    const std::string& as_string() const;  // String; empty for other types
    const std::vector<Value>& items() const;  // Array; empty for other types
    std::vector<Value>& mutable_items();      // Array (aborts on other types)
    const std::vector<std::pair<std::string, Value>>& entries() const;  // Object
    const Function* function() const;         // Function; null for other types
    const std::string& function_name() const;

    // Object access: the value under key, or null when absent (or not an object).
    const Value* find(std::string_view key) const;
    const Value* find_key(const Value& key) const;  // any key type, Python == (1 == 1.0 == True)
    // Object: sets key (in place; shared by every copy). Array: appends.
    void set(const std::string& key, Value v);
    void set_key(const Value& key, Value v);  // non-string keys ({1: 'a'}) keep their type
    Value key_at(size_t i) const;         // Object: the i-th key as written (entries() has str())
    void push_back(Value v);
    size_t size() const;  // elements, entries or code points

    bool truthy() const;           // Python truthiness (undefined is false)
    std::string str() const;       // Python str(): None, True, 1.5, ['a', 'b'], {'k': 1}
    std::string repr() const;      // Python repr(): strings quoted
    // json.dumps(x, ensure_ascii, indent) as transformers' tojson (indent < 0: one line).
    // Fails on undefined and functions.
    Expected<std::string> to_json(int indent = -1, bool ensure_ascii = false, bool sort_keys = false) const;

    // Internal: namespace() objects may have attributes assigned.
    bool is_namespace() const;
    void mark_namespace();

private:
    struct Object;
    struct Func;
    Type type_ = Type::Undefined;
    uint8_t flavor_ = 0;  // arrays: 0 list, 1 tuple, 2 generator; strings: 1 markup
    int64_t i_ = 0;
    double d_ = 0;
    std::shared_ptr<const std::string> s_;
    std::shared_ptr<std::vector<Value>> a_;
    std::shared_ptr<Object> o_;
    std::shared_ptr<const Func> f_;
};

struct Node;

class Template {
public:
    // Parses (and checks) the template source; syntax errors name the line.
    static Expected<Template> parse(std::string_view source);
    // Renders with `context` (an object) as the template's variables; context entries
    // shadow the globals (range, namespace, dict, raise_exception, strftime_now, ...), so a
    // test can pass its own strftime_now.
    Expected<std::string> render(const Value& context) const;

private:
    std::shared_ptr<const Node> root_;
};

}  // namespace kiln::jinja
