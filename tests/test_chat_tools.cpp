// The model's own chat template through the Jinja engine (render_jinja_chat) and tool calls:
// the syntax of each family parsed back from replies, and the grammar that forces one call.
#include <string>

#include "kiln/chat.h"
#include "kiln/format/gguf.h"
#include "kiln/grammar.h"
#include "kiln/model.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

namespace {

std::string read_template(const std::string& name) { return kiln::test::read_all(kiln::test::cache_dir() + "/templates/" + name); }

const char* kTools = R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}])";

}  // namespace

TEST_CASE("chat tools: the model's template renders as the built-in format, and with tools") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const kiln::Tokenizer& tok = model.value()->tokenizer();
    const std::string source = model.value()->gguf().get_string("tokenizer.chat_template").value();
    auto builtin = kiln::detect_chat_template(source);
    REQUIRE(builtin.is_ok());
    const std::vector<kiln::ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    auto jinja = kiln::render_jinja_chat(source, {R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}])", "", true}, tok);
    REQUIRE_MESSAGE(jinja.is_ok(), jinja.message());
    CHECK(jinja.value() == kiln::apply_chat_template(builtin.value(), msgs));
    CHECK_FALSE(kiln::render_jinja_chat(source, {"{\"role\": 1}", "", true}, tok).is_ok());  // messages not an array
    CHECK(kiln::render_jinja_chat("{{ raise_exception('no system role') }}", {"[]", "", true}, tok).message().find("no system role") != std::string::npos);

    // Qwen2.5's template writes the tools into the system turn and the call syntax.
    const std::string qwen = read_template("Qwen-Qwen2.5-7B-Instruct.jinja");
    if (qwen.empty()) {
        MESSAGE("skipped the Qwen template: run tools/fetch_models.py vocab");
        return;
    }
    CHECK(kiln::tool_call_style(qwen) == kiln::ToolCallStyle::Hermes);
    CHECK(kiln::tool_call_style(source) == kiln::ToolCallStyle::None);
    auto with_tools = kiln::render_jinja_chat(qwen, {R"([{"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 3}"}])", kTools, true}, tok);
    REQUIRE_MESSAGE(with_tools.is_ok(), with_tools.message());
    CHECK(with_tools.value().find("<tools>") != std::string::npos);
    CHECK(with_tools.value().find("\"name\": \"get_weather\"") != std::string::npos);
    CHECK(with_tools.value().find("<tool_response>\n{\"temp\": 3}\n</tool_response>") != std::string::npos);
    CHECK(with_tools.value().find("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>") != std::string::npos);
}

TEST_CASE("chat tools: calls parsed from replies; the forcing grammar accepts exactly calls") {
    using kiln::ToolCallStyle;
    auto p = kiln::parse_tool_calls(ToolCallStyle::Hermes,
                                    "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n"
                                    "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\", \"days\": 2}}</tool_call>");
    REQUIRE(p.calls.size() == 2);
    CHECK(p.content == "Let me check.");
    CHECK(p.calls[0].name == "get_weather");
    CHECK(p.calls[0].arguments_json == "{\"city\":\"Oslo\"}");
    CHECK(p.calls[1].arguments_json == "{\"city\":\"Rome\",\"days\":2}");
    auto broken = kiln::parse_tool_calls(ToolCallStyle::Hermes, "<tool_call>{\"name\": oops}</tool_call>");
    CHECK(broken.calls.empty());
    CHECK(broken.content == "<tool_call>{\"name\": oops}</tool_call>");
    auto llama = kiln::parse_tool_calls(ToolCallStyle::Llama3, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}");
    REQUIRE(llama.calls.size() == 1);
    CHECK(llama.calls[0].arguments_json == "{\"city\":\"Oslo\"}");
    CHECK(kiln::parse_tool_calls(ToolCallStyle::Llama3, "It is {sunny} today.").calls.empty());
    const std::string fenced = "```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n```";
    CHECK(kiln::parse_tool_calls(ToolCallStyle::Hermes, fenced, {"get_weather"}).calls.size() == 1);
    CHECK(kiln::parse_tool_calls(ToolCallStyle::Hermes, fenced, {"get_time"}).calls.empty());  // not a tool it has
    CHECK(kiln::parse_tool_calls(ToolCallStyle::Hermes, fenced).calls.empty());

    auto gbnf = kiln::tool_call_gbnf(ToolCallStyle::Hermes, kTools);
    REQUIRE_MESSAGE(gbnf.is_ok(), gbnf.message());
    auto g = kiln::Grammar::parse(gbnf.value());
    REQUIRE_MESSAGE(g.is_ok(), g.message());
    auto run = [&](const std::string& text) {
        kiln::GrammarMatcher m(g.value());
        return m.accept(text) && m.complete();
    };
    CHECK(run("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
    CHECK(run("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"days\": 3}}</tool_call>"));
    CHECK_FALSE(run("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>"));
    CHECK_FALSE(run("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));  // city is required
    CHECK_FALSE(run("Sure! <tool_call>"));
    CHECK(kiln::tool_call_gbnf(ToolCallStyle::Hermes, kTools, "nope").message().find("'nope'") != std::string::npos);
    CHECK_FALSE(kiln::tool_call_gbnf(ToolCallStyle::None, kTools).is_ok());
    auto l3 = kiln::tool_call_gbnf(ToolCallStyle::Llama3, kTools);
    REQUIRE(l3.is_ok());
    kiln::GrammarMatcher m(kiln::Grammar::parse(l3.value()).value());
    CHECK((m.accept("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}") && m.complete()));
}
