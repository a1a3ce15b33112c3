// JSON Schema -> GBNF (include/kiln/grammar.h): one rule per schema node, on top of the JSON
// value rules of json_gbnf().
#include <map>
#include <nlohmann/json.hpp>

#include "kiln/grammar.h"

namespace kiln {

namespace {

using Json = nlohmann::ordered_json;  // properties keep the order the schema gives them

// Whitespace is bounded (one space, or a newline and up to 20 indent characters) so that a
// model cannot fill max_tokens with it; numbers have at most 16 digits per part.
constexpr const char* kJsonRules = R"(value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws
array ::= "[" ws ( value ( "," ws value )* )? "]" ws
string ::= "\"" char* "\"" ws
char ::= [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
integer ::= "-"? ( [0-9] | [1-9] [0-9]{1,15} ) ws
number ::= "-"? ( [0-9] | [1-9] [0-9]{1,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,16} )? ws
boolean ::= ( "true" | "false" ) ws
null ::= "null" ws
ws ::= | " " | "\n" [ \t]{0,20}
)";

// A GBNF literal matching exactly `text`.
std::string literal(const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        if (c == '"' || c == '\\') out += '\\', out += char(c);
        else if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c == '\r') out += "\\r";
        else if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        } else out += char(c);
    }
    return out + "\"";
}

class Converter {
public:
    explicit Converter(const Json& root) : root_(root) {}

    Expected<std::string> run(const std::string& root_rule) {
        KILN_TRY(visit(root_, root_rule));
        std::string out;
        for (const auto& [name, body] : order_) out += name + " ::= " + body + "\n";
        return out + kJsonRules;
    }

private:
    // Adds rule `hint` (made unique) for schema s; *name gets its name.
    Status visit(const Json& s, const std::string& hint, std::string* name = nullptr) {
        std::string n = unique(hint);
        if (name) *name = n;
        std::string body;
        KILN_TRY(body_of(s, n, &body));
        order_.push_back({n, body});
        return Status::ok();
    }
    std::string unique(const std::string& hint) {
        std::string n;
        for (char c : hint) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
        if (n.empty()) n = "x";
        if (used_.insert({n, 0}).second) return n;
        return n + "-" + std::to_string(++used_[n]);
    }
    Status sub(const Json& s, const std::string& hint, std::string* name) { return visit(s, hint, name); }

    Status body_of(const Json& s, const std::string& self, std::string* out) {
        if (s.is_boolean()) {
            if (!s.get<bool>()) return Status::error("json_schema: a 'false' schema allows nothing");
            *out = "value";
            return Status::ok();
        }
        if (!s.is_object()) return Status::error("json_schema: a schema must be an object or a boolean");
        for (const char* k : {"pattern", "allOf", "not", "if", "patternProperties", "prefixItems", "dependentSchemas"})
            if (s.contains(k)) return Status::error("json_schema: '%s' is not supported", k);
        if (s.contains("$ref")) {
            const std::string ref = s["$ref"].is_string() ? s["$ref"].get<std::string>() : "";
            auto it = refs_.find(ref);
            if (it != refs_.end()) return *out = it->second, Status::ok();
            const Json* target = nullptr;
            for (const char* prefix : {"#/$defs/", "#/definitions/"})
                if (ref.rfind(prefix, 0) == 0) {
                    const std::string key = ref.substr(std::string(prefix).size());
                    const Json& defs = root_[std::string(prefix).substr(2, std::string(prefix).size() - 3)];
                    if (defs.is_object() && defs.contains(key)) target = &defs[key];
                }
            if (!target) return Status::error("json_schema: '$ref' '%s' is not a local #/$defs/ or #/definitions/ entry", ref.c_str());
            const std::string n = unique("ref-" + ref.substr(ref.find_last_of('/') + 1));
            refs_[ref] = n;  // before visiting: recursive schemas refer to the rule by name
            std::string body;
            KILN_TRY(body_of(*target, n, &body));
            order_.push_back({n, body});
            *out = n;
            return Status::ok();
        }
        if (s.contains("const")) return *out = literal(s["const"].dump()) + " ws", Status::ok();
        if (s.contains("enum")) {
            if (!s["enum"].is_array() || s["enum"].empty()) return Status::error("json_schema: 'enum' must be a non-empty array");
            std::string alts;
            for (const Json& v : s["enum"]) alts += (alts.empty() ? "" : " | ") + literal(v.dump());
            return *out = "( " + alts + " ) ws", Status::ok();
        }
        for (const char* k : {"anyOf", "oneOf"})
            if (s.contains(k)) {
                if (!s[k].is_array() || s[k].empty()) return Status::error("json_schema: '%s' must be a non-empty array", k);
                std::string alts;
                for (size_t i = 0; i < s[k].size(); ++i) {
                    std::string n;
                    KILN_TRY(sub(s[k][i], self + "-" + std::to_string(i), &n));
                    alts += (alts.empty() ? "" : " | ") + n;
                }
                return *out = alts, Status::ok();
            }
        const Json type = s.contains("type") ? s["type"] : Json(s.contains("properties") ? "object" : s.contains("items") ? "array" : "");
        if (type.is_array()) {
            std::string alts;
            for (const Json& t : type) {
                Json one = s;
                one["type"] = t;
                std::string n;
                KILN_TRY(sub(one, self + "-" + (t.is_string() ? t.get<std::string>() : "t"), &n));
                alts += (alts.empty() ? "" : " | ") + n;
            }
            if (alts.empty()) return Status::error("json_schema: an empty 'type' list");
            return *out = alts, Status::ok();
        }
        const std::string t = type.is_string() ? type.get<std::string>() : "";
        if (t.empty()) return *out = "value", Status::ok();
        if (t == "integer" || t == "number" || t == "boolean" || t == "null") return *out = t, Status::ok();
        if (t == "string") return string_body(s, out);
        if (t == "array") return array_body(s, self, out);
        if (t == "object") return object_body(s, self, out);
        return Status::error("json_schema: unknown type '%s'", t.c_str());
    }

    Status string_body(const Json& s, std::string* out) {
        const long lo = s.value("minLength", 0L), hi = s.value("maxLength", -1L);
        if (lo < 0 || lo > 4096 || hi > 4096 || (hi >= 0 && hi < lo)) return Status::error("json_schema: minLength/maxLength out of range");
        if (lo == 0 && hi < 0) return *out = "string", Status::ok();
        *out = "\"\\\"\" char{" + std::to_string(lo) + "," + (hi >= 0 ? std::to_string(hi) : "") + "} \"\\\"\" ws";
        return Status::ok();
    }

    Status array_body(const Json& s, const std::string& self, std::string* out) {
        std::string item = "value";
        if (s.contains("items")) KILN_TRY(sub(s["items"], self + "-item", &item));
        const long lo = s.value("minItems", 0L), hi = s.value("maxItems", -1L);
        if (lo < 0 || lo > 1024 || hi > 1024 || (hi >= 0 && hi < lo)) return Status::error("json_schema: minItems/maxItems out of range");
        if (hi == 0) return *out = "\"[\" ws \"]\" ws", Status::ok();
        const std::string more = "( \",\" ws " + item + " ){" + std::to_string(std::max(0L, lo - 1)) + "," + (hi >= 0 ? std::to_string(hi - 1) : "") + "}";
        const std::string items = item + " " + more;
        *out = "\"[\" ws " + (lo == 0 ? "( " + items + " )?" : items) + " \"]\" ws";
        return Status::ok();
    }

    Status object_body(const Json& s, const std::string& self, std::string* out) {
        const Json props = s.value("properties", Json::object());
        if (!props.is_object()) return Status::error("json_schema: 'properties' must be an object");
        if (props.empty()) {
            const Json extra = s.value("additionalProperties", Json(true));
            if (extra.is_boolean() && !extra.get<bool>()) return *out = "\"{\" ws \"}\" ws", Status::ok();
            if (extra.is_boolean()) return *out = "object", Status::ok();
            std::string v;
            KILN_TRY(sub(extra, self + "-value", &v));
            const std::string kv = "string \":\" ws " + v;
            return *out = "\"{\" ws ( " + kv + " ( \",\" ws " + kv + " )* )? \"}\" ws", Status::ok();
        }
        std::vector<std::string> required;
        if (s.contains("required")) {
            if (!s["required"].is_array()) return Status::error("json_schema: 'required' must be an array");
            for (const Json& r : s["required"]) {
                if (!r.is_string() || !props.contains(r.get<std::string>())) return Status::error("json_schema: 'required' names a property not in 'properties'");
                required.push_back(r.get<std::string>());
            }
        }
        // (key, rule) of each property: required ones first (in the schema's order), then optional ones.
        std::vector<std::pair<std::string, std::string>> req, opt;
        for (auto it = props.begin(); it != props.end(); ++it) {
            std::string n;
            KILN_TRY(sub(it.value(), self + "-" + it.key(), &n));
            const std::string kv = literal(Json(it.key()).dump()) + " ws \":\" ws " + n;
            (std::find(required.begin(), required.end(), it.key()) != required.end() ? req : opt).push_back({it.key(), kv});
        }
        std::sort(req.begin(), req.end(), [&](const auto& a, const auto& b) {
            return std::find(required.begin(), required.end(), a.first) < std::find(required.begin(), required.end(), b.first);
        });
        std::string body = "\"{\" ws ";
        if (!req.empty()) {
            for (size_t i = 0; i < req.size(); ++i) body += (i ? " \",\" ws " : "") + req[i].second;
            for (const auto& o : opt) body += " ( \",\" ws " + o.second + " )?";
        } else {
            // Optional only: S_i ::= kv_i ( "," ws S_(i+1) )? | S_(i+1) — any subset, in order, commas between.
            std::string next;
            for (size_t i = opt.size(); i-- > 0;) {
                const std::string n = unique(self + "-rest");
                order_.push_back({n, next.empty() ? opt[i].second : opt[i].second + " ( \",\" ws " + next + " )? | " + next});
                next = n;
            }
            body += "( " + next + " )?";
        }
        *out = body + " \"}\" ws";
        return Status::ok();
    }

    const Json& root_;
    std::vector<std::pair<std::string, std::string>> order_;  // (name, body) of each rule, in definition order
    std::map<std::string, int> used_ = {{"value", 0}, {"object", 0}, {"array", 0}, {"string", 0}, {"char", 0}, {"integer", 0},
                                        {"number", 0}, {"boolean", 0}, {"null", 0}, {"ws", 0}};
    std::map<std::string, std::string> refs_;  // $ref -> rule name
};

}  // namespace

std::string json_gbnf(bool object_root) { return std::string("root ::= ") + (object_root ? "object" : "value") + "\n" + kJsonRules; }

Expected<std::string> json_schema_to_gbnf(const std::string& schema_json, const std::string& root_rule) {
    const Json schema = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
    if (schema.is_discarded()) return Status::error("json_schema: the schema is not valid JSON");
    try {
        return Converter(schema).run(root_rule);
    } catch (const Json::exception& e) {  // a keyword of an unexpected JSON type (minLength: "3", ...)
        return Status::error("json_schema: %s", e.what());
    }
}

}  // namespace kiln
