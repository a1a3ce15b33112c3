// Hugging Face tokenizer files -> the tokenizer.ggml.* keys llama.cpp's convert_hf_to_gguf.py
// writes, so kiln's one tokenizer (src/tokenizer_load.cpp) serves both formats.
//   byte-level BPE (a ByteLevel pre-tokenizer/decoder)  -> model "gpt2", merges, a pre name
//   BPE with byte_fallback (SentencePiece converted)      -> model "llama", scores from the merge ranks
#include "tokenizer/hf_tokenizer.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kiln {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

enum : int32_t { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, BYTE = 6 };

// Split regexes of the byte-level tokenizers kiln's pre-tokenizer knows, as the Hugging
// Face files spell them -> tokenizer.ggml.pre (what convert_hf_to_gguf.py's hash finds).
const std::pair<const char*, const char*> kSplitRegexes[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"},
};

class Reader {
public:
    explicit Reader(std::string file) : file_(std::move(file)) {}

    template <class... A>
    Status error(const char* fmt, A... args) const {
        return Status::error_str(file_ + ": " + strfmt(fmt, args...));
    }
    Expected<json> load() const { return read_json_object(file_); }
    const std::string& file() const { return file_; }

private:
    std::string file_;
};

// A token named in tokenizer_config.json: "text" or {"content": "text", ...}.
std::string token_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return "";
}

// Walks a pre_tokenizer / normalizer / decoder tree (Sequence or single) and calls fn on each step.
template <class F>
void for_each_step(const json& node, const char* list_key, F fn) {
    if (!node.is_object()) return;
    if (node.value("type", "") == "Sequence" && node.contains(list_key) && node[list_key].is_array()) {
        for (const json& step : node[list_key]) for_each_step(step, list_key, fn);
    } else {
        fn(node);
    }
}

// tokenizer.ggml.pre for a byte-level tokenizer, from its pre-tokenizer's structure.
std::string pre_tokenizer_name(const json& pre) {
    bool digits = false, byte_level_regex = false;
    std::string split;
    for_each_step(pre, "pretokenizers", [&](const json& s) {
        const std::string type = s.value("type", "");
        if (type == "Digits" && s.value("individual_digits", false)) digits = true;
        if (type == "ByteLevel" && s.value("use_regex", true)) byte_level_regex = true;
        if (type == "Split" && s.contains("pattern") && s["pattern"].is_object() && s["pattern"].contains("Regex") && s["pattern"]["Regex"].is_string())
            split = s["pattern"]["Regex"].get<std::string>();
    });
    if (digits && byte_level_regex && split.empty()) return "smollm";
    if (!split.empty() && !byte_level_regex)
        for (auto [regex, name] : kSplitRegexes)
            if (split == regex) return name;
    if (byte_level_regex && !digits && split.empty()) return "gpt-2";
    return "default";  // kiln warns and uses the default split, as llama.cpp does
}

bool is_byte_token(const std::string& t) {
    return t.size() == 6 && t.starts_with("<0x") && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
}

Status convert(const std::string& dir, GgufWriter& w) {
    Reader tr((fs::path(dir) / "tokenizer.json").string());
    auto tj = tr.load();
    if (!tj) return tj.status();
    const json& t = tj.value();
    if (!t.contains("model") || !t["model"].is_object()) return tr.error("no \"model\" object");
    const json& model = t["model"];
    const std::string type = model.value("type", "BPE");  // older files leave BPE's type out
    if (type != "BPE") return tr.error("tokenizer model '%s' is not supported (kiln reads BPE tokenizers)", type.c_str());
    if (!model.contains("vocab") || !model["vocab"].is_object()) return tr.error("model.vocab must be an object of token -> id");

    // tokens by id: the vocabulary, then the added tokens (which may extend it).
    std::vector<std::string> tokens;   // (n_vocab) token text by id
    std::vector<int32_t> types;        // (n_vocab) llama_token_type
    std::vector<bool> seen;            // (n_vocab) id assigned
    auto assign = [&](const std::string& text, const json& id_json, int32_t ttype, bool may_repeat) -> Status {
        if (!id_json.is_number_integer()) return tr.error("token '%s': id is not an integer", text.c_str());
        const int64_t id = id_json.get<int64_t>();
        if (id < 0 || id >= (int64_t(1) << 24)) return tr.error("token '%s': id %lld is out of range", text.c_str(), (long long)id);
        if (size_t(id) >= tokens.size()) tokens.resize(size_t(id) + 1), types.resize(size_t(id) + 1, NORMAL), seen.resize(size_t(id) + 1, false);
        if (seen[size_t(id)] && !(may_repeat && tokens[size_t(id)] == text)) return tr.error("id %lld is given to both '%s' and '%s'", (long long)id, tokens[size_t(id)].c_str(), text.c_str());
        tokens[size_t(id)] = text;
        types[size_t(id)] = ttype;
        seen[size_t(id)] = true;
        return Status::ok();
    };
    for (const auto& [text, id] : model["vocab"].items()) KILN_TRY(assign(text, id, is_byte_token(text) ? BYTE : NORMAL, false));
    if (t.contains("added_tokens") && !t["added_tokens"].is_null()) {
        if (!t["added_tokens"].is_array()) return tr.error("added_tokens must be an array");
        for (const json& a : t["added_tokens"]) {
            if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id")) return tr.error("an added_tokens entry lacks its content or id");
            KILN_TRY(assign(a["content"].get<std::string>(), a["id"], a.value("special", false) ? CONTROL : USER_DEFINED, true));
        }
    }
    if (tokens.empty()) return tr.error("the vocabulary is empty");
    for (size_t i = 0; i < seen.size(); ++i)
        if (!seen[i]) return tr.error("no token has id %zu (ids must run from 0 to %zu without gaps)", i, tokens.size() - 1);

    // Merges: "a b" strings (older files) or ["a", "b"] pairs.
    std::vector<std::string> merges;
    if (model.contains("merges") && !model["merges"].is_null()) {
        if (!model["merges"].is_array()) return tr.error("model.merges must be an array");
        for (const json& m : model["merges"]) {
            if (m.is_string() && m.get<std::string>().find(' ', 1) != std::string::npos) merges.push_back(m.get<std::string>());
            else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            else return tr.error("merge %zu is neither \"a b\" nor [\"a\", \"b\"]", merges.size());
        }
    }

    const bool byte_fallback = model.value("byte_fallback", false);
    bool byte_level = false;
    for (const char* key : {"pre_tokenizer", "decoder"})
        if (t.contains(key)) for_each_step(t[key], key == std::string("decoder") ? "decoders" : "pretokenizers", [&](const json& s) { byte_level |= s.value("type", "") == "ByteLevel"; });
    const bool spm = byte_fallback && !byte_level;
    if (!spm && !byte_level) return tr.error("a BPE tokenizer without ByteLevel or byte_fallback is not supported");

    std::map<std::string, uint32_t> special_ids;  // tokenizer.ggml.<key> -> id, written once at the end
    if (spm) {
        // SentencePiece merges the adjacent pair whose result scores highest; a BPE merges by
        // rank. Scoring each piece by minus the rank of the first merge that makes it gives
        // the same order (tokenizers' SentencePiece converter sorts merges by score).
        const std::map<std::string, int32_t> ids = [&] {
            std::map<std::string, int32_t> m;
            for (size_t i = 0; i < tokens.size(); ++i) m.emplace(tokens[i], int32_t(i));
            return m;
        }();
        std::vector<float> scores(tokens.size(), -1e9f);  // (n_vocab) pieces no merge makes: never preferred
        for (size_t r = merges.size(); r-- > 0;) {
            const size_t sp = merges[r].find(' ', 1);
            auto it = ids.find(merges[r].substr(0, sp) + merges[r].substr(sp + 1));
            if (it != ids.end()) scores[size_t(it->second)] = -float(r);
        }
        if (model.contains("unk_token") && model["unk_token"].is_string()) {
            auto it = ids.find(model["unk_token"].get<std::string>());
            if (it != ids.end() && types[size_t(it->second)] == NORMAL) types[size_t(it->second)] = UNKNOWN;
            if (it != ids.end()) special_ids["unknown_token_id"] = uint32_t(it->second);
        }
        bool prefix = false;  // SentencePiece's add_dummy_prefix: Prepend("▁") or Metaspace
        if (t.contains("normalizer")) for_each_step(t["normalizer"], "normalizers", [&](const json& s) { prefix |= s.value("type", "") == "Prepend"; });
        if (t.contains("pre_tokenizer")) for_each_step(t["pre_tokenizer"], "pretokenizers", [&](const json& s) {
            if (s.value("type", "") == "Metaspace") prefix |= s.value("prepend_scheme", "always") != "never";
        });
        w.set_str("tokenizer.ggml.model", "llama");
        w.set_str("tokenizer.ggml.pre", "default");
        w.set_arr_f32("tokenizer.ggml.scores", scores);
        w.set_bool("tokenizer.ggml.add_space_prefix", prefix);
    } else {
        w.set_str("tokenizer.ggml.model", "gpt2");
        w.set_str("tokenizer.ggml.pre", pre_tokenizer_name(t.value("pre_tokenizer", json())));
        w.set_arr_str("tokenizer.ggml.merges", merges);
    }
    w.set_arr_str("tokenizer.ggml.tokens", tokens);
    w.set_arr_i32("tokenizer.ggml.token_type", types);

    // tokenizer_config.json: special tokens, BOS/EOS flags, chat template.
    const fs::path cfg_path = fs::path(dir) / "tokenizer_config.json";
    auto write_ids = [&] {
        for (const auto& [key, id] : special_ids) w.set_u32("tokenizer.ggml." + key, id);
        return Status::ok();
    };
    if (!fs::exists(cfg_path)) return write_ids();
    Reader cr(cfg_path.string());
    auto cj = cr.load();
    if (!cj) return cj.status();
    const json& c = cj.value();
    auto id_of = [&](const std::string& text) -> int64_t {
        for (size_t i = 0; i < tokens.size(); ++i)
            if (tokens[i] == text) return int64_t(i);
        return -1;
    };
    for (auto [key, gguf_key] : std::initializer_list<std::pair<const char*, const char*>>{
             {"bos_token", "bos_token_id"}, {"eos_token", "eos_token_id"}, {"unk_token", "unknown_token_id"}, {"pad_token", "padding_token_id"}}) {
        if (!c.contains(key) || c[key].is_null()) continue;
        const std::string text = token_text(c[key]);
        const int64_t id = id_of(text);
        if (id < 0) return cr.error("%s '%s' is not in the vocabulary", key, text.c_str());
        special_ids[gguf_key] = uint32_t(id);
    }
    for (const char* key : {"add_bos_token", "add_eos_token"}) {
        if (!c.contains(key) || c[key].is_null()) continue;
        if (!c[key].is_boolean()) return cr.error("'%s' is not true or false", key);
        w.set_bool(std::string("tokenizer.ggml.") + key, c[key].get<bool>());
    }
    if (c.contains("chat_template") && !c["chat_template"].is_null()) {
        const json& ct = c["chat_template"];
        std::string tmpl;
        if (ct.is_string()) tmpl = ct.get<std::string>();
        else if (ct.is_array())  // [{"name": "default", "template": "..."}, ...]
            for (const json& e : ct)
                if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string()) tmpl = e["template"].get<std::string>();
        if (tmpl.empty()) return cr.error("chat_template must be a string or a list with a \"default\" template");
        w.set_str("tokenizer.chat_template", tmpl);
    }
    return write_ids();
}

}  // namespace

Expected<json> read_json_object(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::error("%s: cannot open", path.c_str());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return Status::error("%s: not valid JSON", path.c_str());
    if (!j.is_object()) return Status::error("%s: expected a JSON object", path.c_str());
    return j;
}

Status hf_tokenizer_to_gguf(const std::string& dir, GgufWriter& w) {
    try {
        return convert(dir, w);
    } catch (const nlohmann::json::exception& e) {  // a value of an unexpected JSON type
        return Status::error("%s: tokenizer files: %s", dir.c_str(), e.what());
    }
}

}  // namespace kiln
