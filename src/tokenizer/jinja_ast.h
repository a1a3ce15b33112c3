// Internals of the Jinja engine (jinja.h): tokens, the syntax tree, and the helpers the
// lexer, parser, evaluator and builtins share. Errors inside the engine are thrown as
// jinja::Error and turned into a Status at the API (Template::parse / render).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "jinja.h"

namespace kiln::jinja {

// An engine error; line 0 when unknown. `raw` errors (raise_exception) keep their message.
struct Error {
    std::string message;
    int line = 0;
    bool raw = false;
};
[[noreturn]] void fail(int line, std::string message);

// ---- lexer ------------------------------------------------------------------------------
enum class Tok { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
struct Token {
    Tok type;
    std::string text;  // data, name, operator, or the unescaped string
    int line = 1;
    int64_t ival = 0;
    double fval = 0;
};
std::vector<Token> tokenize(std::string_view source);

// ---- syntax tree ------------------------------------------------------------------------
enum class Kind {
    // expressions
    Literal, Name, List, Tuple, Dict, GetAttr, GetItem, Slice, Call, Filter, Test, Neg, Pos,
    Not, And, Or, Binary, Compare, Concat, CondExpr,
    // statements
    Body, Text, Print, If, For, Set, SetBlock, Macro, CallBlock, FilterBlock, Break, Continue,
    Scope,
};

using NodePtr = std::unique_ptr<Node>;

struct Node {
    Kind kind;
    int line = 0;
    std::string name;              // Name, GetAttr attribute, Filter/Test name, operator, macro name
    Value value;                   // Literal
    std::vector<NodePtr> children; // operands, list items, body statements
    // Calls, filters and tests: positional args, keyword args, *args, **kwargs.
    std::vector<NodePtr> args;
    std::vector<std::pair<std::string, NodePtr>> kwargs;
    NodePtr dyn_args, dyn_kwargs;
    std::vector<std::string> ops;  // Compare: one operator per operand after the first
    bool negated = false;          // Test: `is not`
    // If: children = conditions, bodies = one per condition (+ else last when has_else)
    // For: target in `targets`, children[0] = iterable, filter = `if`, bodies[0] body, [1] else
    // Macro/CallBlock: params with defaults
    std::vector<NodePtr> bodies;
    NodePtr filter;
    NodePtr target;                        // Set / SetBlock / For target (Name, Tuple, GetAttr)
    std::vector<std::string> params;       // Macro parameters
    std::vector<NodePtr> defaults;         // aligned to the last params
    bool has_else = false;
    bool recursive = false;
};

Node parse_template(std::string_view source);  // throws Error

// ---- shared value helpers (jinja_value.cpp) -----------------------------------------------
std::string type_name(const Value& v);                 // Python's type name: 'str', 'dict', ...
bool values_equal(const Value& a, const Value& b);     // Python ==
int compare_values(const Value& a, const Value& b, int line);  // <0, 0, >0; fails on mixed types
std::string float_repr(double d);                      // Python repr(float)
std::vector<std::string> utf8_chars(const std::string& s);
size_t utf8_length(const std::string& s);
// Python str methods and the string filters share these.
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right);
std::string ascii_lower(std::string s);
std::string ascii_upper(std::string s);
std::string html_escape(const std::string& s);  // markupsafe.escape

// ---- builtins (jinja_builtins.cpp) ------------------------------------------------------
bool has_filter(const std::string& name);
bool has_test(const std::string& name);
Value apply_filter(const std::string& name, const Value& input, const CallArgs& a, int line);
bool apply_test(const std::string& name, const Value& input, const CallArgs& a, int line);
// Python getattr / getitem as jinja2's sandbox does them: a missing attribute, key or index
// gives undefined; an undefined object fails.
Value get_attr(const Value& obj, const std::string& name, int line);
Value get_item(const Value& obj, const Value& key, int line);
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step, int line);
// `obj.name` for str/dict/list methods; undefined when there is no such method.
Value get_method(const Value& obj, const std::string& name, int line);
// Binary operators + - * / // % ** as Python does them.
Value binary_op(const std::string& op, const Value& a, const Value& b, int line);
bool contains(const Value& container, const Value& item, int line);  // Python `in`
// Global functions: range, namespace, dict, raise_exception, strftime_now, cycler, joiner.
void add_globals(Value& globals);
// Python iteration: list items, dict keys, string characters; fails on other types.
std::vector<Value> iterate(const Value& v, int line);
Value call_value(const Value& fn, const CallArgs& args, int line);

}  // namespace kiln::jinja
