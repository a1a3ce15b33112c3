// Tokenizer tests: llama.cpp's own test vectors (.cache/vocab/ggml-vocab-*.gguf with
// .inp/.out, applied as tests/test-tokenizer-0.cpp does: add_special = false,
// parse_special = false), the real models against ids from llama.cpp's llama-tokenize
// (tests/data/tokenizer_real_models.json, made by tests/data/make_tokenizer_vectors.sh),
// streaming detokenization, and malformed metadata.
#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kiln/format/gguf.h"
#include "kiln/format/gguf_writer.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

using kiln::TokenId;
using kiln::Tokenizer;

// Run with: kiln_tests -ts='tokenizer*'
TEST_SUITE_BEGIN("tokenizer");

namespace {

using kiln::test::read_all;

struct VocabCase {
    std::string input;
    std::vector<TokenId> ids;
};

// test-tokenizer-0's read_tests: inputs separated by "\n__ggml_vocab_test__\n", one line of
// space-separated ids per input.
std::vector<VocabCase> read_vocab_cases(const std::string& gguf) {
    const std::string raw = read_all(gguf + ".inp");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> inputs;
    for (size_t pos = 0; pos < raw.size();) {
        size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            inputs.push_back(raw.substr(pos));
            break;
        }
        inputs.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    std::ifstream out(gguf + ".out");
    std::vector<VocabCase> cases;
    std::string line;
    for (size_t i = 0; i < inputs.size() && std::getline(out, line); ++i) {
        VocabCase c{inputs[i], {}};
        std::istringstream ls(line);
        for (TokenId id; ls >> id;) c.ids.push_back(id);
        cases.push_back(std::move(c));
    }
    REQUIRE_MESSAGE(cases.size() == inputs.size(), gguf << ": .inp and .out disagree on the number of tests");
    return cases;
}

// Both sides of a failed comparison, readable.
std::string show(const std::vector<TokenId>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) s += ' ';
        s += std::to_string(ids[i]);
    }
    return s + "]";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
    return s;
}

struct Loaded {
    kiln::GgufFile file;
    Tokenizer tok;
};

std::optional<Loaded> load(const std::string& path) {
    if (!kiln::test::require_file(path)) return std::nullopt;
    auto f = kiln::GgufFile::open(path);
    REQUIRE_MESSAGE(f.is_ok(), f.message());
    auto t = Tokenizer::from_gguf(*f);
    REQUIRE_MESSAGE(t.is_ok(), t.message());
    return Loaded{std::move(f.value()), std::move(t.value())};
}

// Every .inp/.out case encodes to exactly llama.cpp's ids; decoding gives back the input
// as llama_detokenize does (models with clean_up_tokenization_spaces turn " ?" into "?",
// the only clean-up these inputs trigger).
void check_vocab(const std::string& name, bool clean_spaces) {
    const std::string path = kiln::test::vocab_dir() + "/ggml-vocab-" + name + ".gguf";
    auto l = load(path);
    if (!l) return;
    const Tokenizer& tok = l->tok;
    CHECK_MESSAGE(tok.warning().empty(), tok.warning());
    int failed = 0;
    for (const VocabCase& c : read_vocab_cases(path)) {
        const std::vector<TokenId> got = tok.encode(c.input, false, false);
        if (got != c.ids) ++failed;
        CHECK_MESSAGE(got == c.ids, name << ": input '" << c.input << "'\n  expected " << show(c.ids) << "\n  got      "
                                          << show(got));
        const std::string expect = clean_spaces ? replace_all(c.input, " ?", "?") : c.input;
        CHECK_MESSAGE(tok.decode(got, true) == expect, name << ": decode of '" << c.input << "'");
    }
    CHECK_MESSAGE(failed == 0, name << ": " << failed << " cases differ from llama.cpp");
}

std::set<TokenId> eog_set(const Tokenizer& tok) {
    std::set<TokenId> s;
    for (TokenId id = 0; id < tok.n_vocab(); ++id)
        if (tok.is_eog(id)) s.insert(id);
    return s;
}

}  // namespace

// ---- llama.cpp's vocab test vectors ---------------------------------------------------------

TEST_CASE("tokenizer vocab llama-spm (SPM, Llama 2)") { check_vocab("llama-spm", false); }
TEST_CASE("tokenizer vocab phi-3 (SPM, rstrip specials)") { check_vocab("phi-3", false); }
TEST_CASE("tokenizer vocab gpt-2") { check_vocab("gpt-2", true); }
TEST_CASE("tokenizer vocab llama-bpe (Llama 3)") { check_vocab("llama-bpe", true); }
TEST_CASE("tokenizer vocab qwen2") { check_vocab("qwen2", false); }
TEST_CASE("tokenizer vocab qwen35") { check_vocab("qwen35", false); }
TEST_CASE("tokenizer vocab deepseek-llm") { check_vocab("deepseek-llm", false); }
TEST_CASE("tokenizer vocab deepseek-coder") { check_vocab("deepseek-coder", false); }
TEST_CASE("tokenizer vocab falcon") { check_vocab("falcon", true); }
TEST_CASE("tokenizer vocab mpt") { check_vocab("mpt", true); }
TEST_CASE("tokenizer vocab starcoder") { check_vocab("starcoder", true); }
TEST_CASE("tokenizer vocab refact") { check_vocab("refact", true); }
TEST_CASE("tokenizer vocab command-r") { check_vocab("command-r", false); }
TEST_CASE("tokenizer vocab gemma-4 (BPE on raw UTF-8)") { check_vocab("gemma-4", true); }

TEST_CASE("tokenizer vocab special ids and end-of-generation match llama.cpp") {
    // Values printed by llama.cpp (llama_vocab_bos/eos/eot/is_eog, add_bos) for these files.
    struct Expect {
        const char* name;
        TokenId bos, eos, eot;
        bool add_bos;
        std::set<TokenId> eog;
    };
    const Expect expects[] = {
        {"llama-spm", 1, 2, -1, true, {2}},
        {"phi-3", 1, 32000, 32007, true, {2, 32000, 32007}},
        {"gpt-2", 50256, 50256, 50256, false, {50256}},
        {"llama-bpe", 128000, 128001, 128009, true, {128001, 128009}},
        {"qwen2", 151643, 151643, 151645, false, {128247, 151643, 151645}},
        {"refact", 0, 0, 0, false, {0, 4, 18}},
        {"command-r", 5, 255001, -1, true, {0, 255001}},
        {"gemma-4", 2, 1, -1, true, {1, 50, 106}},
    };
    for (const Expect& e : expects) {
        CAPTURE(e.name);
        auto l = load(kiln::test::vocab_dir() + "/ggml-vocab-" + e.name + ".gguf");
        if (!l) continue;
        CHECK(l->tok.bos() == e.bos);
        CHECK(l->tok.eos() == e.eos);
        CHECK(l->tok.eot() == e.eot);
        CHECK(l->tok.add_bos() == e.add_bos);
        CHECK(eog_set(l->tok) == e.eog);
    }
}

TEST_CASE("tokenizer vocab files without test vectors load and round-trip") {
    for (const char* name : {"gpt-neox", "aquila", "baichuan"}) {
        CAPTURE(name);
        auto l = load(kiln::test::vocab_dir() + "/ggml-vocab-" + name + ".gguf");
        if (!l) continue;
        const std::string text = "Hello world, this is 42 tests.";
        auto ids = l->tok.encode(text, false, false);
        CHECK(!ids.empty());
        CHECK(l->tok.decode(ids) == text);
    }
}

TEST_CASE("tokenizer vocab kinds kiln does not implement are refused with a Status") {
    for (const char* name : {"bert-bge", "nomic-bert-moe"}) {  // WordPiece, Unigram
        CAPTURE(name);
        std::string path = kiln::test::vocab_dir() + "/ggml-vocab-" + name + ".gguf";
        if (!kiln::test::require_file(path)) continue;
        auto f = kiln::GgufFile::open(path);
        REQUIRE(f.is_ok());
        auto t = Tokenizer::from_gguf(*f);
        REQUIRE_FALSE(t.is_ok());
        CHECK(t.message().find("tokenizer.ggml.model") != std::string::npos);
    }
}

// ---- real models vs llama-tokenize ----------------------------------------------------------

namespace {

std::string from_hex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out += char(std::stoi(h.substr(i, 2), nullptr, 16));
    return out;
}

void check_real_model(const std::string& file) {
    const nlohmann::json doc = nlohmann::json::parse(read_all(kiln::test::data_path("tokenizer_real_models.json")));
    auto l = load(kiln::test::model_path(file));
    if (!l) return;
    const Tokenizer& tok = l->tok;
    int n_cases = 0;
    for (const auto& m : doc["models"]) {
        if (m["file"] != file) continue;
        for (const auto& c : m["cases"]) {
            const bool is_hex = c.contains("hex");
            const std::string text = is_hex ? from_hex(c["hex"]) : c["text"].get<std::string>();
            const bool add_special = c["add_special"], parse_special = c["parse_special"];
            const std::vector<TokenId> expect = c["ids"].get<std::vector<TokenId>>();
            const std::vector<TokenId> got = tok.encode(text, add_special, parse_special);
            CHECK_MESSAGE(got == expect, file << ": '" << text << "' add_special=" << add_special
                                              << " parse_special=" << parse_special << "\n  expected " << show(expect)
                                              << "\n  got      " << show(got));
            // Plain text round-trips (neither model cleans up spaces).
            if (!is_hex && !add_special && !parse_special) CHECK(tok.decode(got) == text);
            ++n_cases;
        }
    }
    CHECK(n_cases >= 10);
}

}  // namespace

TEST_CASE("tokenizer SmolLM2 (gpt2 / smollm) matches llama-tokenize") {
    check_real_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    auto l = load(kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf"));
    if (!l) return;
    const Tokenizer& tok = l->tok;
    CHECK(tok.model_name() == "gpt2");
    CHECK(tok.pre_name() == "smollm");
    CHECK(tok.n_vocab() == 49152);
    CHECK(tok.bos() == 1);
    CHECK(tok.eos() == 2);
    CHECK(tok.eot() == 0);  // llama.cpp picks <|endoftext|> (the first match in its hash map)
    CHECK_FALSE(tok.add_bos());
    CHECK(eog_set(tok) == std::set<TokenId>{0, 2, 4});  // <|endoftext|>, <|im_end|>, <reponame> (fim_rep)
    CHECK(tok.find_token("<|im_start|>") == 1);
    CHECK(tok.token_type(1) == kiln::TokenType::Control);
    CHECK(tok.token_to_piece(1).empty());
    CHECK(tok.token_to_piece(1, true) == "<|im_start|>");
    CHECK(tok.decode({1, 19556, 905, 2}, true) == "<|im_start|>Hello world<|im_end|>");
    CHECK(tok.decode({1, 19556, 905, 2}) == "Hello world");
}

TEST_CASE("tokenizer Gemma 3 (SPM, 262k vocab) matches llama-tokenize") {
    check_real_model("gemma-3-270m-q4_k_m.gguf");
    auto l = load(kiln::test::model_path("gemma-3-270m-q4_k_m.gguf"));
    if (!l) return;
    const Tokenizer& tok = l->tok;
    CHECK(tok.model_name() == "llama");
    CHECK(tok.n_vocab() == 262144);
    CHECK(tok.bos() == 2);
    CHECK(tok.eos() == 1);
    CHECK(tok.eot() == 106);
    CHECK(tok.add_bos());
    CHECK_FALSE(tok.add_eos());
    CHECK(eog_set(tok) == std::set<TokenId>{1, 106, 212});
    CHECK(tok.is_eog(*tok.find_token("<end_of_turn>")));
    CHECK(tok.token_type(138) == kiln::TokenType::UserDefined);  // "  ": split out even without parse_special
    CHECK(tok.encode("", true, false) == std::vector<TokenId>{2});
}

TEST_CASE("tokenizer encodes a 100 KB prompt and round-trips it") {
    std::string text;
    for (int i = 0; text.size() < 100000; ++i)
        text += "Line " + std::to_string(i) + ": the quick brown fox — “jumps” over 12,345 lazy dogs; 日本語 🦙\n\t  ";
    for (const char* file : {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"}) {
        CAPTURE(file);
        auto l = load(kiln::test::model_path(file));
        if (!l) continue;
        auto ids = l->tok.encode(text, false, false);
        CHECK(ids.size() > 20000);
        CHECK(l->tok.decode(ids) == text);
    }
}

// ---- streaming detokenizer ------------------------------------------------------------------

TEST_CASE("tokenizer stream decoder never emits partial UTF-8") {
    const std::string text = "Emoji: 🦙🚀 😶‍🌫️ 🫠 and 𝔘𝔫𝔦 done";
    for (const char* file : {"SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"}) {
        CAPTURE(file);
        auto l = load(kiln::test::model_path(file));
        if (!l) continue;
        const Tokenizer& tok = l->tok;
        auto ids = tok.encode(text, false, false);
        // The text must really split characters across tokens for this test to mean anything.
        int partial = 0;
        for (TokenId id : ids) partial += !kiln::is_valid_utf8(tok.token_to_piece(id));
        CHECK(partial >= 2);
        kiln::TokenStreamDecoder dec(tok);
        std::string joined;
        for (TokenId id : ids) {
            std::string out = dec.push(id);
            CHECK(kiln::is_valid_utf8(out));
            joined += out;
        }
        joined += dec.flush();
        CHECK(joined == text);
    }
}

// ---- synthetic vocabularies -----------------------------------------------------------------

namespace {

// GGUF metadata as key -> writer, so a test can replace or drop one key (GgufWriter
// itself only appends).
struct Meta {
    using W = kiln::GgufWriter;
    std::map<std::string, std::function<void(W&, const std::string&)>> kv;
    void str(const std::string& k, std::string v) { kv[k] = [v](W& w, const std::string& key) { w.set_str(key, v); }; }
    void u32(const std::string& k, uint32_t v) { kv[k] = [v](W& w, const std::string& key) { w.set_u32(key, v); }; }
    void i32(const std::string& k, int32_t v) { kv[k] = [v](W& w, const std::string& key) { w.set_i32(key, v); }; }
    void arr_str(const std::string& k, std::vector<std::string> v) {
        kv[k] = [v](W& w, const std::string& key) { w.set_arr_str(key, v); };
    }
    void arr_f32(const std::string& k, std::vector<float> v) {
        kv[k] = [v](W& w, const std::string& key) { w.set_arr_f32(key, v); };
    }
    void arr_i32(const std::string& k, std::vector<int32_t> v) {
        kv[k] = [v](W& w, const std::string& key) { w.set_arr_i32(key, v); };
    }
    W writer() const {
        W w;
        for (const auto& [k, f] : kv) f(w, k);
        return w;
    }
};

// A small SPM vocabulary: byte tokens, a few merges by score, control and user-defined tokens.
Meta spm_meta() {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "<ctl>", "<ud>"};
    std::vector<int32_t> types = {2, 3, 3, 3, 4};
    for (int b = 0; b < 256; ++b) {
        tokens.push_back(kiln::strfmt("<0x%02X>", b));
        types.push_back(6);
    }
    for (const char* t : {"▁", "a", "b", "c", "ab", "bc", "▁a", "▁ab", "abc"}) {
        tokens.push_back(t);
        types.push_back(1);
    }
    std::vector<float> scores(tokens.size(), 0.0f);
    const std::map<std::string, float> merged = {{"ab", -1}, {"bc", -2}, {"▁a", -3}, {"▁ab", -4}, {"abc", -5}};
    for (size_t i = 0; i < tokens.size(); ++i)
        if (merged.count(tokens[i])) scores[i] = merged.at(tokens[i]);
    Meta m;
    m.str("tokenizer.ggml.model", "llama");
    m.arr_str("tokenizer.ggml.tokens", tokens);
    m.arr_f32("tokenizer.ggml.scores", scores);
    m.arr_i32("tokenizer.ggml.token_type", types);
    m.u32("tokenizer.ggml.bos_token_id", 1);
    m.u32("tokenizer.ggml.eos_token_id", 2);
    return m;
}

Meta bpe_meta() {
    Meta m;
    m.str("tokenizer.ggml.model", "gpt2");
    m.str("tokenizer.ggml.pre", "gpt-2");
    m.arr_str("tokenizer.ggml.tokens", {"a", "b", "ab", "Ġ", "Ġab", "<|end|>"});
    m.arr_i32("tokenizer.ggml.token_type", {1, 1, 1, 1, 1, 3});
    m.arr_str("tokenizer.ggml.merges", {"a b", "Ġ ab"});
    m.u32("tokenizer.ggml.bos_token_id", 5);
    m.u32("tokenizer.ggml.eos_token_id", 5);
    return m;
}

struct Parsed {
    std::vector<uint8_t> bytes;
    kiln::Expected<kiln::GgufFile> file = kiln::Status::error("unset");
};

// The GGUF image must outlive the GgufFile, hence the holder.
std::unique_ptr<Parsed> parse(const Meta& m) {
    auto p = std::make_unique<Parsed>();
    p->bytes = m.writer().to_bytes();
    p->file = kiln::GgufFile::parse(p->bytes.data(), p->bytes.size(), "synthetic.gguf");
    REQUIRE_MESSAGE(p->file.is_ok(), p->file.message());
    return p;
}

kiln::Expected<Tokenizer> tokenizer_from(const Meta& m) {
    auto p = parse(m);
    return Tokenizer::from_gguf(*p->file);  // the Tokenizer copies what it needs
}

void check_error(const Meta& w, const std::string& key) {
    auto t = tokenizer_from(w);
    REQUIRE_FALSE(t.is_ok());
    CHECK_MESSAGE(t.message().find(key) != std::string::npos, t.message());
}

}  // namespace

TEST_CASE("tokenizer SPM merges by score, falls back to bytes, splits specials") {
    auto t = tokenizer_from(spm_meta());
    REQUIRE_MESSAGE(t.is_ok(), t.message());
    const Tokenizer& tok = *t;
    auto id = [&](const char* s) { return *tok.find_token(s); };
    // "▁abc": ab (-1) beats bc (-2); then ▁ab (-4) beats abc (-5); 'c' stays.
    CHECK(tok.encode("abc", false, false) == std::vector<TokenId>{id("▁ab"), id("c")});
    CHECK(tok.encode("abc", true, false) == std::vector<TokenId>{1, id("▁ab"), id("c")});
    // 'é' (C3 A9) is no token: byte fallback.
    CHECK(tok.encode("é", false, false) == std::vector<TokenId>{id("▁"), id("<0xC3>"), id("<0xA9>")});
    CHECK(tok.decode(tok.encode("é abc", false, false)) == "é abc");
    // Control tokens need parse_special; user-defined ones always split.
    CHECK(tok.encode("a<ctl>b", false, true) == std::vector<TokenId>{id("▁a"), 3, id("▁"), id("b")});
    CHECK(tok.encode("a<ud>b", false, false) == std::vector<TokenId>{id("▁a"), 4, id("▁"), id("b")});
    CHECK(tok.token_to_piece(id("▁ab")) == " ab");
    CHECK(tok.token_to_piece(id("<0x41>")) == "A");
    CHECK(tok.token_to_piece(3).empty());
    CHECK(tok.token_to_piece(3, true) == "<ctl>");
    CHECK(tok.token_to_piece(-1).empty());
    CHECK(tok.token_to_piece(100000).empty());
    CHECK(tok.token_text(-5).empty());
    CHECK(tok.token_type(100000) == kiln::TokenType::Undefined);
    CHECK(tok.decode({-1, 99999, id("▁ab")}) == "ab");

    // Stream: an ill-formed byte becomes U+FFFD, an unfinished character waits for flush().
    kiln::TokenStreamDecoder dec(tok);
    CHECK(dec.push(id("<0xF0>")).empty());
    CHECK(dec.push(id("<0x9F>")).empty());
    CHECK(dec.push(id("<0xA6>")).empty());
    CHECK(dec.push(id("<0x99>")) == "🦙");
    CHECK(dec.push(id("<0xFF>")) == "\xEF\xBF\xBD");
    CHECK(dec.push(id("<0xE2>")).empty());
    CHECK(dec.push(id("a")) == "\xEF\xBF\xBD" "a");
    CHECK(dec.push(id("<0xC3>")).empty());
    CHECK(dec.flush() == "\xEF\xBF\xBD");
    CHECK(dec.flush().empty());
}

TEST_CASE("tokenizer BPE basics and unknown pre-tokenizer warning") {
    auto t = tokenizer_from(bpe_meta());
    REQUIRE_MESSAGE(t.is_ok(), t.message());
    CHECK(t->warning().empty());
    CHECK(t->encode(" ab ab", false, false) == std::vector<TokenId>{4, 4});
    CHECK(t->encode("ab<|end|>", false, true) == std::vector<TokenId>{2, 5});
    CHECK(t->is_eog(5));
    CHECK(t->eot() == 5);

    auto w = bpe_meta();
    w.str("tokenizer.ggml.pre", "no-such-pre");
    auto u = tokenizer_from(w);
    REQUIRE_MESSAGE(u.is_ok(), u.message());
    CHECK(u->warning().find("no-such-pre") != std::string::npos);
    CHECK(u->encode(" ab", false, false) == std::vector<TokenId>{4});
}

TEST_CASE("tokenizer malformed metadata gives a Status naming the key") {
    {
        Meta w;
        w.arr_str("tokenizer.ggml.tokens", {"a"});
        check_error(w, "tokenizer.ggml.model");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "llama");
        check_error(w, "tokenizer.ggml.tokens");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "llama");
        w.arr_i32("tokenizer.ggml.tokens", {1, 2});
        check_error(w, "tokenizer.ggml.tokens");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "llama");
        w.arr_str("tokenizer.ggml.tokens", {});
        check_error(w, "tokenizer.ggml.tokens");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "wordpiece-ish");
        w.arr_str("tokenizer.ggml.tokens", {"a"});
        check_error(w, "tokenizer.ggml.model");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "llama");
        w.arr_str("tokenizer.ggml.tokens", {"a", "b", "a"});
        check_error(w, "tokenizer.ggml.tokens");
    }
    {
        auto w = spm_meta();
        w.arr_f32("tokenizer.ggml.scores", {1.0f, 2.0f});
        check_error(w, "tokenizer.ggml.scores");
    }
    {
        auto w = spm_meta();
        w.arr_str("tokenizer.ggml.scores", {"x"});
        check_error(w, "tokenizer.ggml.scores");
    }
    {
        auto w = spm_meta();
        w.arr_i32("tokenizer.ggml.token_type", {1, 1, 1});
        check_error(w, "tokenizer.ggml.token_type");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "llama");
        w.arr_str("tokenizer.ggml.tokens", {"a", "b"});
        w.arr_i32("tokenizer.ggml.token_type", {1, 9});
        check_error(w, "tokenizer.ggml.token_type");
    }
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"}) {
        auto w = spm_meta();
        w.u32(key, 1000000);
        check_error(w, key);
    }
    {
        auto w = spm_meta();
        w.i32("tokenizer.ggml.bos_token_id", -3);
        check_error(w, "tokenizer.ggml.bos_token_id");
    }
    {
        auto w = spm_meta();
        w.str("tokenizer.ggml.bos_token_id", "1");
        check_error(w, "tokenizer.ggml.bos_token_id");
    }
    {
        auto w = spm_meta();
        w.u32("tokenizer.ggml.add_bos_token", 1);
        check_error(w, "tokenizer.ggml.add_bos_token");
    }
    {
        auto w = bpe_meta();
        w.arr_str("tokenizer.ggml.merges", {"a b", "ab"});
        check_error(w, "tokenizer.ggml.merges");
    }
    {
        Meta w;
        w.str("tokenizer.ggml.model", "gpt2");
        w.arr_str("tokenizer.ggml.tokens", {"a", "b"});
        check_error(w, "tokenizer.ggml.merges");
    }
    {
        auto w = bpe_meta();
        w.arr_f32("tokenizer.ggml.merges", {1.0f});
        check_error(w, "tokenizer.ggml.merges");
    }
}

TEST_CASE("tokenizer default-constructed is empty and safe") {
    Tokenizer tok;
    CHECK(tok.n_vocab() == 0);
    CHECK(tok.encode("hello", true, true).empty());
    CHECK(tok.decode({1, 2, 3}).empty());
    CHECK(tok.bos() == -1);
    CHECK_FALSE(tok.is_eog(0));
    CHECK_FALSE(tok.find_token("a").has_value());
    kiln::TokenStreamDecoder dec(tok);
    CHECK(dec.push(5).empty());
    CHECK(dec.flush().empty());
}

TEST_SUITE_END();
