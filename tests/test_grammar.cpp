// GBNF grammars, JSON Schema -> GBNF, and constrained sampling (kiln/grammar.h): texts the
// grammar allows are accepted whole and in any split (UTF-8 characters split between tokens
// included), texts it does not are rejected at the first wrong character, and generation
// under a grammar gives text that parses and follows the schema.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/engine.h"
#include "kiln/grammar.h"
#include "test_util.h"

namespace {

kiln::Grammar parse(const std::string& gbnf) {
    auto g = kiln::Grammar::parse(gbnf);
    REQUIRE_MESSAGE(g.is_ok(), g.message());
    return g.value();
}

// Feeds text one byte at a time (the hardest split): "complete", "prefix" or "rejected".
std::string run(const kiln::Grammar& g, const std::string& text) {
    kiln::GrammarMatcher m(g);
    for (char c : text)
        if (!m.accept(std::string(1, c))) return "rejected";
    return m.complete() ? "complete" : "prefix";
}

}  // namespace

TEST_CASE("grammar: GBNF rules, classes, repetition, UTF-8") {
    const auto yn = parse("root ::= \"yes\" | \"no\" # a comment\n");
    CHECK(run(yn, "yes") == "complete");
    CHECK(run(yn, "n") == "prefix");
    CHECK(run(yn, "yess") == "rejected");
    CHECK(run(yn, "maybe") == "rejected");
    const auto rep = parse("root ::= [a-c]{2,3} \"!\" tail\ntail ::= ( \",\" [0-9]+ )*\n");
    CHECK(run(rep, "ab!") == "complete");
    CHECK(run(rep, "abc!,1,22") == "complete");
    CHECK(run(rep, "abc!,") == "prefix");
    CHECK(run(rep, "a!") == "rejected");
    CHECK(run(rep, "abcd") == "rejected");
    CHECK(run(rep, "ab!,x") == "rejected");
    const auto neg = parse("root ::= [^\"\\\\]* \".\" . \"\\x41\\u00e9\"");
    CHECK(run(neg, "no quotes here.zAé") == "complete");
    CHECK(run(neg, "a\"b") == "rejected");
    // A character split between tokens: its first bytes pass when some allowed character
    // starts with them, and the whole is checked when it is complete.
    const auto e_acute = parse("root ::= \"é\" | \"x\"");
    kiln::GrammarMatcher m(e_acute);
    CHECK_FALSE(m.accepts("\xE2\x82"));  // the start of "€": no allowed character starts so
    CHECK_FALSE(m.accepts("\xF0"));      // a 4-byte character cannot be "é" or "x"
    CHECK_FALSE(m.accepts("\xC1\xB8"));  // "x" as an overlong 2-byte form is not UTF-8
    REQUIRE(m.accept("\xC3"));
    CHECK_FALSE(m.complete());
    CHECK_FALSE(m.accepts("\xA8"));  // "è"
    REQUIRE(m.accept("\xA9"));
    CHECK(m.complete());
    CHECK_FALSE(m.can_continue());
    // Long repetitions stay one stack (right recursion is a tail call).
    const auto many = parse("root ::= \"a\"*");
    CHECK(run(many, std::string(5000, 'a')) == "complete");
}

TEST_CASE("grammar: bad grammars are clear errors") {
    auto msg = [](const std::string& g) { return kiln::Grammar::parse(g).message(); };
    CHECK(msg("root ::= foo").find("'foo' is used but not defined") != std::string::npos);
    CHECK(msg("start ::= \"a\"").find("no 'root' rule") != std::string::npos);
    CHECK(msg("root ::= \"abc").find("unterminated literal") != std::string::npos);
    CHECK(msg("root ::= [a-").find("unterminated") != std::string::npos);
    CHECK(msg("root ::= ( \"a\"").find("missing ')'") != std::string::npos);
    CHECK(msg("root ::= \"a\"{3,1}").find("n < m") != std::string::npos);
    CHECK(msg("root ::= root \"a\"").find("left-recursive") != std::string::npos);
    CHECK(msg("root ::= \"\\q\"").find("unknown escape") != std::string::npos);
    CHECK(msg("root ::= \"a\"\nroot ::= \"b\"").find("defined twice") != std::string::npos);
    CHECK(msg("root ::= * \"a\"").find("line 1") != std::string::npos);
}

TEST_CASE("grammar: JSON and JSON Schema") {
    const auto json = parse(kiln::json_gbnf(true));
    for (const char* ok : {"{}", "{\"a\": 1}", "{\"a\": [1, -2.5e3, true, null, \"x\\n\\u00e9\"], \"b\": {\"c\": {}}}", "{\n  \"k\": \"v\"\n}"})
        CHECK_MESSAGE(run(json, ok) == "complete", ok);
    for (const char* bad : {"{\"a\": 1,}", "{a: 1}", "[1]", "{\"a\": 01}", "{\"a\": tru}", "{\"a\" 1}"})
        CHECK_MESSAGE(run(json, bad) == "rejected", bad);
    const std::string schema = R"({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 5}, "age": {"type": "integer"},
        "pet": {"$ref": "#/$defs/pet"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
      "required": ["age", "name"], "$defs": {"pet": {"type": ["string", "null"]}}})";
    auto gbnf = kiln::json_schema_to_gbnf(schema);
    REQUIRE_MESSAGE(gbnf.is_ok(), gbnf.message());
    const auto g = parse(gbnf.value());
    CHECK(run(g, R"({"age": 3, "name": "Tom"})") == "complete");  // required properties in 'required' order
    CHECK(run(g, R"({"age": 3, "name": "Tom", "pet": null, "tags": ["a", "b"]})") == "complete");
    CHECK(run(g, R"({"age": 3, "name": "Tom", "tags": []})") == "complete");
    CHECK(run(g, R"({"name": "Tom", "age": 3})") == "rejected");
    CHECK(run(g, R"({"age": 3})") == "rejected");
    CHECK(run(g, R"({"age": 3.5, "name": "T"})") == "rejected");
    CHECK(run(g, R"({"age": 3, "name": "Thomas"})") == "rejected");
    CHECK(run(g, R"({"age": 3, "name": "T", "tags": ["c"]})") == "rejected");
    CHECK(run(g, R"({"age": 3, "name": "T", "tags": ["a", "a", "a"]})") == "rejected");
    CHECK(run(g, R"({"age": 3, "name": "T", "color": 1})") == "rejected");
    // Optional properties only: any subset, in order.
    auto opt = kiln::json_schema_to_gbnf(R"({"properties": {"a": {"type": "boolean"}, "b": {"const": 7}}})");
    REQUIRE(opt.is_ok());
    const auto o = parse(opt.value());
    for (const char* ok : {"{}", R"({"a": true})", R"({"b": 7})", R"({"a": false, "b": 7})"}) CHECK_MESSAGE(run(o, ok) == "complete", ok);
    CHECK(run(o, R"({"b": 7, "a": true})") == "rejected");
    CHECK(run(o, R"({"b": 8})") == "rejected");
    CHECK(kiln::json_schema_to_gbnf(R"({"type": "string", "pattern": "a+"})").message().find("'pattern' is not supported") != std::string::npos);
    CHECK(kiln::json_schema_to_gbnf(R"({"$ref": "#/nowhere"})").message().find("$ref") != std::string::npos);
    CHECK(kiln::json_schema_to_gbnf("{").message().find("not valid JSON") != std::string::npos);
    CHECK(kiln::json_schema_to_gbnf(R"({"type": "string", "minLength": "3"})").message().find("json_schema") != std::string::npos);
}

TEST_CASE("grammar: generation under a schema parses and follows it (SmolLM2, greedy and sampled)") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    kiln::EngineOptions o;
    o.n_parallel = 2;
    o.n_ctx_per_seq = 512;
    o.session.n_threads = 2;
    auto engine = kiln::Engine::create(model.value(), o);
    REQUIRE(engine.is_ok());
    const std::string schema =
        R"({"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "legs": {"type": "integer"},
            "colour": {"enum": ["black", "white", "ginger"]}}, "required": ["name", "legs", "colour"]})";
    for (float temperature : {0.0f, 0.9f}) {
        kiln::EngineRequest r;
        r.prompt = model.value()->tokenizer().encode("<|im_start|>user\nDescribe a cat as JSON.<|im_end|>\n<|im_start|>assistant\n", true, true);
        r.sampling.temperature = temperature;
        r.sampling.seed = 11;
        r.max_tokens = 80;
        r.grammar = kiln::json_schema_to_gbnf(schema).value();
        auto h = engine.value()->submit(r);
        REQUIRE(h.is_ok());
        std::string text;
        kiln::EngineEvent e;
        while (h.value()->next(&e) && !e.done) text += e.text;
        text += e.text;
        CAPTURE(text);
        CHECK(e.error.empty());
        CHECK(e.stop == kiln::StopReason::EndOfGeneration);
        const auto j = nlohmann::json::parse(text, nullptr, false);
        REQUIRE_FALSE(j.is_discarded());
        CHECK(j["name"].is_string());
        CHECK(j["name"].get<std::string>().size() <= 12);
        CHECK(j["legs"].is_number_integer());
        CHECK((j["colour"] == "black" || j["colour"] == "white" || j["colour"] == "ginger"));
        CHECK(j.size() == 3);
    }
    kiln::EngineRequest bad;
    bad.prompt = {1, 2};
    bad.grammar = "root ::= nothing";
    CHECK(engine.value()->submit(bad).message().find("'nothing' is used but not defined") != std::string::npos);
}
