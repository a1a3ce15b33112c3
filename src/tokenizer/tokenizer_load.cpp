// Tokenizer loading from GGUF metadata, following llama_vocab::impl::load: defaults per
// vocab kind, special token ids, end-of-generation detection by token text, attribute
// fix-ups. Every count, id and array length is checked; bad metadata returns a Status
// naming the key.
#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <climits>

#include "kiln/format/gguf.h"
#include "tokenizer/tokenizer_impl.h"

namespace kiln {

namespace {

constexpr const char* K_MODEL = "tokenizer.ggml.model";
constexpr const char* K_PRE = "tokenizer.ggml.pre";
constexpr const char* K_TOKENS = "tokenizer.ggml.tokens";
constexpr const char* K_SCORES = "tokenizer.ggml.scores";
constexpr const char* K_TYPES = "tokenizer.ggml.token_type";
constexpr const char* K_MERGES = "tokenizer.ggml.merges";

bool is_int_type(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
        case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
        default: return false;
    }
}

// An array value of the given element kind, or a Status naming the key.
Expected<const GgufValue*> find_array(const GgufFile& f, const char* key, bool strings, bool required) {
    const GgufValue* v = f.find(key);
    if (!v) {
        if (required) return Status::error("%s: missing metadata '%s'", f.path().c_str(), key);
        return static_cast<const GgufValue*>(nullptr);
    }
    bool ok = v->type == GgufType::ARRAY &&
              (strings ? v->arr_type == GgufType::STRING
                       : (is_int_type(v->arr_type) || v->arr_type == GgufType::F32 || v->arr_type == GgufType::F64));
    if (ok && strings && v->arr_strings.size() != v->arr_len) ok = false;
    if (ok && !strings && !v->arr_data && v->arr_len > 0) ok = false;
    if (!ok)
        return Status::error("%s: metadata '%s' has type %s, expected an array of %s", f.path().c_str(), key,
                             v->type == GgufType::ARRAY ? (std::string("array of ") + gguf_type_name(v->arr_type)).c_str()
                                                        : gguf_type_name(v->type),
                             strings ? "strings" : "numbers");
    return v;
}

// Reads a token id key; ids must name a token of this vocabulary.
Status read_id(const GgufFile& f, const char* key, int32_t n_vocab, TokenId& id) {
    const GgufValue* v = f.find(key);
    if (!v) return Status::ok();
    if (!v->is_integer())
        return Status::error("%s: metadata '%s' has type %s, expected an integer token id", f.path().c_str(), key,
                             gguf_type_name(v->type));
    const bool huge = v->type == GgufType::U64 && v->u > uint64_t(INT64_MAX);
    const int64_t x = huge ? -1 : v->as_int();
    if (x < 0 || x >= n_vocab)
        return Status::error("%s: metadata '%s' = %s is not a token id (the vocabulary has %d tokens)", f.path().c_str(),
                             key, v->to_string().c_str(), n_vocab);
    id = TokenId(x);
    return Status::ok();
}

uint16_t attr_from_type(int64_t type) {
    switch (type) {
        case 1: return ATTR_NORMAL;
        case 2: return ATTR_UNKNOWN;
        case 3: return ATTR_CONTROL;
        case 4: return ATTR_USER_DEFINED;
        case 5: return ATTR_UNUSED;
        case 6: return ATTR_BYTE;
        default: return ATTR_UNDEFINED;
    }
}

bool text_in(std::string_view t, std::initializer_list<std::string_view> list) {
    return std::find(list.begin(), list.end(), t) != list.end();
}

void add_warning(Tokenizer::Impl& t, const std::string& w) {
    if (!t.warning.empty()) t.warning += "; ";
    t.warning += w;
}

// llama.cpp's guesses of end-of-turn, end-of-message and fill-in-the-middle ids by token
// text, its end-of-generation list, and the attribute fix-ups that go with them.
void detect_special_tokens(Tokenizer::Impl& t) {
    auto force_control = [&](TokenId id) { t.attrs[id] |= ATTR_CONTROL; };
    struct Guess {
        TokenId* id;
        std::initializer_list<std::string_view> texts;
    };
    const Guess guesses[] = {
        {&t.eot, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                  "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}},
        {&t.eom, {"<|eom_id|>"}},
        {&t.fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                      "<|code_prefix|>", "<|prefix|>"}},
        {&t.fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                      "<|code_suffix|>", "<|suffix|>"}},
        {&t.fim_mid, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                      "<|code_middle|>", "<|middle|>"}},
        {&t.fim_pad, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
        {&t.fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
        {&t.fim_sep, {"<|file_sep|>"}},
    };
    // Iterating the hash map (not ids) picks the same token as llama.cpp when several match.
    for (const auto& [text, id] : t.to_id) {
        for (const Guess& g : guesses) {
            if (*g.id == -1 && text_in(text, g.texts)) {
                *g.id = id;
                force_control(id);
            }
        }
    }

    // Control tokens named "...unused..." are unused.
    for (TokenId id = 0; id < t.n_vocab(); ++id)
        if ((t.attrs[id] & ATTR_CONTROL) && t.texts[id].find("unused") != std::string::npos) t.attrs[id] |= ATTR_UNUSED;

    t.eog.assign(size_t(t.n_vocab()), 0);
    for (TokenId id : {t.fim_pad, t.fim_rep, t.fim_sep})
        if (id >= 0) t.eog[id] = 1;
    for (TokenId id = 0; id < t.n_vocab(); ++id) {
        const std::string& text = t.texts[id];
        if (text_in(text, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                           "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                           "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                           "<｜end▁of▁sentence｜>", "[e~["})) {
            t.eog[id] = 1;
            force_control(id);
        }
        // gpt-oss: these always render
        if (text_in(text, {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})) t.attrs[id] = ATTR_USER_DEFINED;
    }
    for (TokenId id : {t.eos, t.eot, t.eom})
        if (id >= 0) t.eog[id] = 1;

    // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
    auto eog_with_text = [&](std::string_view text) -> TokenId {
        for (TokenId id = 0; id < t.n_vocab(); ++id)
            if (t.eog[id] && t.texts[id] == text) return id;
        return -1;
    };
    TokenId end_id = eog_with_text("<|end|>");
    bool has_call = eog_with_text("<|call|>") >= 0 || eog_with_text("<|calls|>") >= 0;
    if (end_id >= 0 && has_call && (eog_with_text("<|return|>") >= 0 || eog_with_text("<|flush|>") >= 0)) {
        t.eog[end_id] = 0;
        t.attrs[end_id] = ATTR_USER_DEFINED;
    }
    // gemma4 and plamo have a normal "</s>".
    TokenId s_id = eog_with_text("</s>");
    if (s_id >= 0 && (eog_with_text("<|tool_response>") >= 0 || eog_with_text("<|plamo:eos|>") >= 0)) {
        t.eog[s_id] = 0;
        t.attrs[s_id] = ATTR_NORMAL;
    }
}

// Per-model lstrip/rstrip attributes (the end of llama_vocab::impl::load).
void set_strip_attrs(const GgufFile& f, Tokenizer::Impl& t) {
    std::string name = f.get_string("general.name").is_ok() ? f.get_string("general.name").value() : "";
    std::string arch = f.get_string("general.architecture").is_ok() ? f.get_string("general.architecture").value() : "";
    for (char& c : name) c = char(std::tolower(uint8_t(c)));
    auto set = [&](std::string_view text, uint16_t attr, bool on) {
        TokenId id = t.lookup(text);
        if (id >= 0) t.attrs[id] = on ? (t.attrs[id] | attr) : (t.attrs[id] & ~attr);
    };
    auto contains = [](const std::string& s, std::initializer_list<const char*> subs) {
        for (const char* sub : subs)
            if (s.find(sub) != std::string::npos) return true;
        return false;
    };
    if (contains(t.pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) || contains(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
        set("<mask>", ATTR_LSTRIP, true);
    } else if (contains(name, {"phi-3", "phi3"})) {
        for (TokenId id : t.special_order) t.attrs[id] |= ATTR_RSTRIP;
        set("</s>", ATTR_RSTRIP, true);
        for (const char* text : {"<unk>", "<s>", "<|endoftext|>"}) set(text, ATTR_RSTRIP, false);
    } else if (contains(name, {"modern-bert"})) {
        set("[MASK]", ATTR_LSTRIP, true);
    }
}

}  // namespace

Status load_tokenizer(const GgufFile& f, Tokenizer::Impl& t) {
    const std::string& path = f.path();
    if (!f.has(K_MODEL)) return Status::error("%s: missing metadata '%s'", path.c_str(), K_MODEL);
    auto model = f.get_string(K_MODEL);
    KILN_TRY(model);
    auto pre = f.get_string(K_PRE, "");
    KILN_TRY(pre);
    t.model = model.value();
    t.pre = pre.value();

    // Vocab kind and its defaults.
    if (t.model == "llama") {
        t.kind = Tokenizer::Impl::Kind::Spm;
        t.bos = 1, t.eos = 2, t.unk = 0;
        t.add_space_prefix = true, t.clean_spaces = false, t.add_bos = true, t.add_eos = false;
        t.escape_whitespaces = true;
    } else if (t.model == "gpt2" || t.model == "gemma4") {
        t.kind = Tokenizer::Impl::Kind::Bpe;
        if (t.model == "gemma4") t.pre = "gemma4";
        else t.bos = 11, t.eos = 11;
        t.pre_spec = detail::pre_tokenizer_spec(t.pre);
        if (t.pre.empty())
            add_warning(t, strfmt("%s: missing '%s', using the 'default' pre-tokenizer; tokenization may be degraded",
                                  path.c_str(), K_PRE));
        else if (!t.pre_spec.known)
            add_warning(t, strfmt("%s: unknown or unsupported pre-tokenizer '%s' (%s), using 'default'; "
                                  "tokenization may differ from the model's",
                                  path.c_str(), t.pre.c_str(), K_PRE));
        t.add_space_prefix = false;
        t.escape_whitespaces = t.pre_spec.escape_whitespaces;
        t.clean_spaces = t.pre_spec.clean_spaces;
        t.ignore_merges = t.pre_spec.ignore_merges;
        t.add_bos = t.pre_spec.force_add_bos;
        t.byte_encode = t.pre_spec.byte_encode;
        t.gemma4_newlines = t.pre_spec.kind == "gemma4";
        if (t.pre_spec.no_default_bos) t.bos = -1;
        auto splitter = detail::RegexSplitter::compile(t.pre_spec.regexes);
        KILN_TRY(splitter);
        t.splitter = std::move(splitter.value());
        init_byte_level_tables(t);
    } else {
        return Status::error("%s: tokenizer model '%s' (%s) is not supported (supported: llama, gpt2, gemma4)",
                             path.c_str(), t.model.c_str(), K_MODEL);
    }
    auto space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", t.add_space_prefix);
    KILN_TRY(space_prefix);
    t.add_space_prefix = space_prefix.value();

    // Token list, scores, types.
    auto tokens = find_array(f, K_TOKENS, true, true);
    KILN_TRY(tokens);
    const GgufValue& tv = *tokens.value();
    if (tv.arr_len == 0) return Status::error("%s: metadata '%s' is empty", path.c_str(), K_TOKENS);
    if (tv.arr_len > uint64_t(INT32_MAX))
        return Status::error("%s: metadata '%s' has %" PRIu64 " tokens, too many", path.c_str(), K_TOKENS, tv.arr_len);
    const int32_t n = int32_t(tv.arr_len);
    auto scores = find_array(f, K_SCORES, false, false);
    KILN_TRY(scores);
    auto types = find_array(f, K_TYPES, false, false);
    KILN_TRY(types);
    for (auto [v, key] : {std::pair{scores.value(), K_SCORES}, std::pair{types.value(), K_TYPES}}) {
        if (v && v->arr_len != tv.arr_len)
            return Status::error("%s: metadata '%s' has %" PRIu64 " entries but '%s' has %d tokens", path.c_str(), key,
                                 v->arr_len, K_TOKENS, n);
    }
    if (types.value() && !is_int_type(types.value()->arr_type))
        return Status::error("%s: metadata '%s' has type array of %s, expected integers", path.c_str(), K_TYPES,
                             gguf_type_name(types.value()->arr_type));

    t.texts.reserve(size_t(n));  // never reallocated after this: to_id holds views into it
    t.scores.resize(size_t(n), 0.0f);
    t.attrs.resize(size_t(n), ATTR_NORMAL);
    int32_t n_empty = 0;
    for (int32_t i = 0; i < n; ++i) {
        std::string_view s = tv.arr_strings[size_t(i)];
        if (s.empty()) {  // llama.cpp renames them so they stay distinct
            if (n_empty++ == 0) add_warning(t, strfmt("%s: '%s'[%d] is empty", path.c_str(), K_TOKENS, i));
            t.texts.push_back("[EMPTY_" + std::to_string(i) + "]");
        } else {
            t.texts.emplace_back(s);
        }
        if (scores.value()) t.scores[i] = float(scores.value()->arr_double(uint64_t(i)));
        if (types.value()) {
            int64_t ty = types.value()->arr_int(uint64_t(i));
            if (ty < 0 || ty > 6)
                return Status::error("%s: metadata '%s'[%d] = %" PRId64 " is not a token type (0..6)", path.c_str(),
                                     K_TYPES, i, ty);
            t.attrs[i] = attr_from_type(ty);
        }
    }
    for (int32_t i = 0; i < n; ++i) {
        auto [it, inserted] = t.to_id.try_emplace(std::string_view(t.texts[i]), i);
        if (!inserted)
            return Status::error("%s: metadata '%s'[%d] repeats token %d ('%.40s')", path.c_str(), K_TOKENS, i, it->second,
                                 t.texts[i].c_str());
    }

    // Merges: "left right", ranked by position.
    if (t.kind == Tokenizer::Impl::Kind::Bpe) {
        auto merges = find_array(f, K_MERGES, true, true);
        KILN_TRY(merges);
        const GgufValue& mv = *merges.value();
        if (mv.arr_len > uint64_t(INT32_MAX))
            return Status::error("%s: metadata '%s' has too many entries", path.c_str(), K_MERGES);
        size_t bytes = 0;
        for (std::string_view m : mv.arr_strings) bytes += m.size();
        t.merges.reserve(mv.arr_strings.size(), bytes);
        for (size_t i = 0; i < mv.arr_strings.size(); ++i) {
            std::string_view m = mv.arr_strings[i];
            size_t pos = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
            if (pos == std::string_view::npos)
                return Status::error("%s: metadata '%s'[%zu] = '%.60s' is not two tokens separated by a space",
                                     path.c_str(), K_MERGES, i, std::string(m).c_str());
            t.merges.add(m.substr(0, pos), m.substr(pos + 1), int32_t(i));
        }
    }

    // Special token ids: a default outside the vocabulary is dropped, a bad stored id is an error.
    for (TokenId* id : {&t.bos, &t.eos, &t.unk})
        if (*id >= n) *id = -1;
    const std::pair<const char*, TokenId*> id_keys[] = {
        {"tokenizer.ggml.bos_token_id", &t.bos},         {"tokenizer.ggml.eos_token_id", &t.eos},
        {"tokenizer.ggml.eot_token_id", &t.eot},         {"tokenizer.ggml.eom_token_id", &t.eom},
        {"tokenizer.ggml.unknown_token_id", &t.unk},     {"tokenizer.ggml.seperator_token_id", &t.sep},
        {"tokenizer.ggml.padding_token_id", &t.pad},     {"tokenizer.ggml.mask_token_id", &t.mask},
        {"tokenizer.ggml.fim_pre_token_id", &t.fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &t.fim_suf},
        {"tokenizer.ggml.fim_mid_token_id", &t.fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &t.fim_pad},
        {"tokenizer.ggml.fim_rep_token_id", &t.fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &t.fim_sep},
        {"tokenizer.ggml.prefix_token_id", &t.fim_pre},  {"tokenizer.ggml.suffix_token_id", &t.fim_suf},
        {"tokenizer.ggml.middle_token_id", &t.fim_mid},
    };
    for (const auto& [key, id] : id_keys) KILN_TRY(read_id(f, key, n, *id));
    auto add_bos = f.get_bool("tokenizer.ggml.add_bos_token", t.add_bos);
    KILN_TRY(add_bos);
    auto add_eos = f.get_bool("tokenizer.ggml.add_eos_token", t.add_eos);
    KILN_TRY(add_eos);
    t.add_bos = add_bos.value() || t.pre_spec.kind == "gemma4";  // llama.cpp forces BOS for Gemma 4
    t.add_eos = add_eos.value();

    detect_special_tokens(t);

    // Special tokens for tokenizer_st_partition, longest text first (ties: lower id first).
    t.special_rank.assign(size_t(n), -1);
    for (TokenId id = 0; id < n; ++id)
        if (t.attrs[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t.special_order.push_back(id);
    std::stable_sort(t.special_order.begin(), t.special_order.end(),
                     [&](TokenId a, TokenId b) { return t.texts[a].size() > t.texts[b].size(); });
    for (size_t r = 0; r < t.special_order.size(); ++r) {
        t.special_rank[t.special_order[r]] = int32_t(r);
        t.special_trie.insert(t.texts[t.special_order[r]], int32_t(r));
    }

    // token_to_piece cache (special = true).
    t.piece_off.reserve(size_t(n) + 1);
    t.piece_off.push_back(0);
    for (TokenId id = 0; id < n; ++id) {
        t.piece_blob += t.piece_for_cache(id);
        if (t.piece_blob.size() > UINT32_MAX) return Status::error("%s: '%s' is too large", path.c_str(), K_TOKENS);
        t.piece_off.push_back(uint32_t(t.piece_blob.size()));
    }

    set_strip_attrs(f, t);
    return Status::ok();
}

}  // namespace kiln
