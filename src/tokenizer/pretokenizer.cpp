// BPE pre-tokenizer: llama.cpp's regex sets per tokenizer.ggml.pre, run with PCRE2.
//
// llama.cpp runs these regexes through hand-written splitters (gpt2, llama3, qwen2,
// qwen35) or std::regex on a "collapsed" text where every non-ASCII code point is replaced
// by one byte standing for its Unicode category. Both agree with a real Unicode regex
// engine except in a few places this file reproduces on purpose:
//   - non-ASCII white space is seen as U+000B, so it is \s but matches no literal range
//     (e.g. deepseek's [ࠀ-一] does not swallow U+3000);
//   - \p{Lu}, \p{Ll}, \p{Lt}, \p{Lm}, \p{Lo} all mean "any letter";
//   - \d is ASCII only, $ only matches at the very end;
//   - each regex only sees one piece of the previous split (no context across pieces).
#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>

#include "kiln/format/gguf.h"  // is_valid_utf8

namespace kiln::detail {

namespace {

// ---- regex sets (verbatim from llama.cpp's llm_tokenizer_bpe) ------------------------

const char* const k_gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const k_llama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const k_qwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const k_newlines = "[^\\n]+|[\\n]+";

using Exprs = std::vector<std::string>;

const Exprs& exprs_default() {
    static const Exprs e = {"[\\p{P}\\$\\+<=>\\^~\\|]+", k_gpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
    return e;
}

struct KindDef {
    const char* kind;
    Exprs exprs;
    bool byte_encode = true;
};

// Regex sets by kind.
const std::vector<KindDef>& kind_defs() {
    static const std::vector<KindDef> defs = {
        {"default", exprs_default()},
        {"llama3", {k_llama3}},
        {"jais2", {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}"}},
        {"deepseek-llm",
         {"[\r\n]",
          "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+",
          "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+", "\\s+$", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", "\\p{N}+"}},
        {"deepseek-v3",
         {"\\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+",
          "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}},
        {"spark2_5",
         {"\\p{N}{1,3}", "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+",
          "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
          "\\p{N}"}},
        {"youtu",
         {"[\uAC00-\uD7A3\u3131-\u318E]+|[\uFF01\u2026\u201C\u201D\u2018\u2019\u2014\uFF1A\uFF1B\uFF0C\u3001-\u303F\uFE30-\uFE4F]+|[\u3105-\u312F]+|[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+",
          "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"deepseek-coder", {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+", "\\p{N}"}},
        {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", k_gpt2, "[0-9][0-9][0-9]"}},
        {"starcoder", {"\\p{N}", k_gpt2}},
        {"gpt2", {k_gpt2}},
        {"qwen2", {k_qwen2}},
        {"qwen35", {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"bloom", {" ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"}},
        {"viking", {" ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+", "\\p{N}"}},
        {"tekken", {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"chameleon",
         {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
          "[\\p{P}!-/:-@\\[-`{-~]", k_gpt2}},
        {"gpt-4o", {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"granite-embed-multi",
         {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"superbpe", {"\\p{N}+", "(?=(\\d{3})+(?!\\d))"}},
        {"bailingmoe", {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
        {"seed-coder", {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"ufakzeka", {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        {"laguna", {k_newlines, k_qwen2}},
        {"exaone-moe", {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"}},
        {"gemma4", {k_newlines}, false},
        {"minicpm5", {"\\p{N}{1,3}", "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    };
    return defs;
}

// Flags per tokenizer.ggml.pre name (llama_vocab::impl::load).
enum Flag : unsigned {
    NO_CLEAN = 1,       // clean_spaces = false
    IGNORE_MERGES = 2,
    ADD_BOS = 4,
    NO_BOS = 8,         // special_bos_id = none
    ESCAPE_WS = 16,
};

struct NameDef {
    const char* name;
    const char* kind;
    unsigned flags;
};

const NameDef k_names[] = {
    {"default", "default", 0},
    {"llama3", "llama3", IGNORE_MERGES | ADD_BOS}, {"llama-v3", "llama3", IGNORE_MERGES | ADD_BOS},
    {"llama-bpe", "llama3", IGNORE_MERGES | ADD_BOS}, {"falcon3", "llama3", IGNORE_MERGES | ADD_BOS},
    {"falcon-h1", "llama3", IGNORE_MERGES | ADD_BOS}, {"pixtral", "llama3", IGNORE_MERGES | ADD_BOS},
    {"midm-2.0", "llama3", IGNORE_MERGES | ADD_BOS}, {"lfm2", "llama3", IGNORE_MERGES | ADD_BOS},
    {"jina-v5-nano", "llama3", IGNORE_MERGES | ADD_BOS},
    {"deepseek-llm", "deepseek-llm", NO_CLEAN},
    {"deepseek-coder", "deepseek-coder", NO_CLEAN},
    {"deepseek-v3", "deepseek-v3", NO_CLEAN}, {"hunyuan-dense", "deepseek-v3", NO_CLEAN},
    {"hy_v4", "deepseek-v3", NO_CLEAN}, {"joyai-llm", "deepseek-v3", NO_CLEAN},
    {"spark2_5", "spark2_5", NO_CLEAN},
    {"youtu", "youtu", NO_CLEAN | IGNORE_MERGES},
    {"falcon", "falcon", 0},
    {"mpt", "gpt2", 0},
    {"starcoder", "starcoder", 0},
    {"gpt-2", "gpt2", 0}, {"phi-2", "gpt2", 0}, {"jina-es", "gpt2", 0}, {"jina-de", "gpt2", 0},
    {"gigachat", "gpt2", 0}, {"jina-v2-es", "gpt2", 0}, {"jina-v2-de", "gpt2", 0}, {"a.x-4.0", "gpt2", 0},
    {"mellum", "gpt2", 0}, {"modern-bert", "gpt2", 0}, {"jina-v1-en", "gpt2", 0}, {"jina-v2-code", "gpt2", 0},
    {"roberta-bpe", "gpt2", 0}, {"exaone4", "gpt2", 0},
    {"jais-2", "jais2", 0},
    {"gemma4", "gemma4", ESCAPE_WS}, {"granite-embed-multi-311m", "gemma4", ESCAPE_WS},
    {"sarvam-moe", "gemma4", ESCAPE_WS | NO_CLEAN},
    {"refact", "starcoder", 0},
    {"command-r", "starcoder", NO_CLEAN},
    {"qwen2", "qwen2", NO_CLEAN}, {"deepseek-r1-qwen", "qwen2", NO_CLEAN}, {"kormo", "qwen2", NO_CLEAN},
    {"f2llmv2", "qwen2", NO_CLEAN}, {"megrez", "qwen2", 0},
    {"qwen35", "qwen35", NO_CLEAN},
    {"stablelm2", "qwen2", 0},
    {"olmo", "gpt2", 0},
    {"dbrx", "llama3", 0}, {"smaug-bpe", "llama3", 0},
    {"poro-chat", "bloom", NO_CLEAN},
    {"chatglm-bpe", "llama3", NO_BOS},  // CHATGLM4's regex is llama3's
    {"glm4", "llama3", NO_BOS | IGNORE_MERGES}, {"glm5", "llama3", NO_BOS | IGNORE_MERGES},
    {"viking", "viking", NO_CLEAN},
    {"jais", "gpt2", 0},
    {"tekken", "tekken", NO_CLEAN | IGNORE_MERGES | ADD_BOS},
    {"smollm", "starcoder", NO_CLEAN},
    {"codeshell", "starcoder", 0},
    {"bloom", "bloom", 0},
    {"gpt3-finnish", "bloom", 0},
    {"exaone", "starcoder", 0},
    {"exaone-moe", "exaone-moe", 0},
    {"chameleon", "chameleon", ADD_BOS | NO_CLEAN},
    {"minerva-7b", "starcoder", 0},
    {"gpt-4o", "gpt-4o", NO_CLEAN}, {"llama4", "gpt-4o", NO_CLEAN}, {"kanana2", "gpt-4o", NO_CLEAN},
    {"talkie", "gpt-4o", NO_CLEAN}, {"minimax-m2", "gpt-4o", NO_CLEAN},
    {"granite-embed-multi-97m", "granite-embed-multi", NO_CLEAN | IGNORE_MERGES},
    {"superbpe", "superbpe", NO_CLEAN},
    {"trillion", "gpt2", NO_CLEAN},
    {"granite-docling", "gpt2", NO_CLEAN},
    {"bailingmoe", "bailingmoe", NO_CLEAN}, {"bailingmoe2", "bailingmoe", NO_CLEAN},
    {"llada-moe", "bailingmoe", NO_CLEAN},
    {"seed-coder", "seed-coder", NO_CLEAN},
    {"hunyuan", "qwen2", NO_CLEAN},
    {"ufakzeka", "ufakzeka", NO_CLEAN},
    {"grok-2", "qwen2", NO_CLEAN},
    {"laguna", "laguna", NO_CLEAN},
    {"solar-open", "qwen2", NO_CLEAN},
    {"mellum2", "starcoder", 0},
    {"minicpm5", "minicpm5", IGNORE_MERGES},
};

// ---- regex translation -----------------------------------------------------------------

// Rewrites the constructs whose meaning in llama.cpp differs from PCRE2's (see the top).
std::string translate_regex(const std::string& e) {
    std::string out;
    bool in_class = false;
    for (size_t i = 0; i < e.size(); ++i) {
        char c = e[i];
        if (c == '\\' && i + 1 < e.size()) {
            char n = e[i + 1];
            if (n == 'd' || n == 'D') {
                if (in_class) out += "0-9";  // only \d appears inside classes
                else out += n == 'd' ? "[0-9]" : "[^0-9]";
                ++i;
                continue;
            }
            if (n == 'p' && i + 5 < e.size() && e[i + 2] == '{' && e[i + 3] == 'L' && e[i + 5] == '}' &&
                std::strchr("ultmo", e[i + 4])) {
                out += "\\p{L}";
                i += 5;
                continue;
            }
            out += c;
            out += n;
            ++i;
            continue;
        }
        if (c == '[' && !in_class) in_class = true;
        else if (c == ']' && in_class) in_class = false;
        out += c;
    }
    return out;
}

// ---- lenient UTF-8 (llama.cpp's unicode_cpt_from_utf8) -----------------------------------

bool is_nonascii_space(uint32_t cp) {
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes one code point at s[i]; returns 0xFFFD and length 1 for what llama.cpp rejects.
uint32_t decode_lenient(std::string_view s, size_t i, size_t* len) {
    const auto b = [&](size_t k) { return uint8_t(s[i + k]); };
    uint8_t c = b(0);
    *len = 1;
    if (c < 0x80) return c;
    if (!(c & 0x40)) return 0xFFFD;
    int n = !(c & 0x20) ? 2 : !(c & 0x10) ? 3 : !(c & 0x08) ? 4 : 0;
    if (n == 0 || i + n > s.size()) return 0xFFFD;
    uint32_t cp = c & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
        if ((b(k) & 0xC0) != 0x80) return 0xFFFD;
        cp = cp << 6 | (b(k) & 0x3F);
    }
    *len = size_t(n);
    return cp;
}


bool has_nonascii_space(std::string_view s) {
    // All of them start with 0xC2 (U+0085, U+00A0), 0xE1 (U+1680), 0xE2 (U+20xx) or 0xE3 (U+3000).
    for (size_t i = 0; i < s.size(); ++i) {
        uint8_t c = uint8_t(s[i]);
        if (c == 0xC2 || c == 0xE1 || c == 0xE2 || c == 0xE3) {
            size_t len;
            if (is_nonascii_space(decode_lenient(s, i, &len))) return true;
        }
    }
    return false;
}

}  // namespace

std::string sanitize_utf8(std::string_view text) {
    if (is_valid_utf8(text)) return std::string(text);
    std::string out;
    out.reserve(text.size() + 16);
    for (size_t i = 0; i < text.size();) {
        size_t len;
        uint32_t cp = decode_lenient(text, i, &len);
        append_utf8(out, cp > 0x10FFFF ? 0xFFFD : cp);  // llama.cpp throws past U+10FFFF
        i += len;
    }
    return out;
}

// ---- spec lookup ------------------------------------------------------------------------

PreTokenizerSpec pre_tokenizer_spec(std::string_view pre) {
    PreTokenizerSpec spec;
    const NameDef* nd = nullptr;
    std::string_view name = pre.empty() ? std::string_view("default") : pre;
    for (const NameDef& d : k_names)
        if (name == d.name) nd = &d;
    if (!nd) {
        spec.known = false;
        nd = &k_names[0];
    }
    for (const KindDef& k : kind_defs()) {
        if (std::string_view(k.kind) == nd->kind) {
            spec.kind = k.kind;
            spec.regexes = k.exprs;
            spec.byte_encode = k.byte_encode;
        }
    }
    spec.clean_spaces = !(nd->flags & NO_CLEAN);
    spec.ignore_merges = nd->flags & IGNORE_MERGES;
    spec.force_add_bos = nd->flags & ADD_BOS;
    spec.no_default_bos = nd->flags & NO_BOS;
    spec.escape_whitespaces = nd->flags & ESCAPE_WS;
    return spec;
}

// ---- RegexSplitter ----------------------------------------------------------------------

struct RegexSplitter::Regex {
    pcre2_code* code = nullptr;
    bool jit = false;
    ~Regex() { pcre2_code_free(code); }
};

Expected<RegexSplitter> RegexSplitter::compile(const std::vector<std::string>& exprs) {
    RegexSplitter s;
    for (const std::string& e : exprs) {
        std::string pattern = translate_regex(e);
        int err = 0;
        PCRE2_SIZE err_off = 0;
        pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
        if (!code) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            return Status::error("pre-tokenizer regex '%s' does not compile at offset %zu: %s", e.c_str(),
                                 size_t(err_off), reinterpret_cast<const char*>(msg));
        }
        auto r = std::make_shared<Regex>();
        r->code = code;
        r->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // interpreter if JIT is missing
        s.regexes_.push_back(std::move(r));
    }
    return s;
}

namespace {

// One pcre2_match call; on a resource error (JIT stack, heap limit) retries without JIT.
int match_once(const RegexSplitter::Regex& r, const char* subject, size_t len, size_t start, uint32_t options,
               pcre2_match_data* md, pcre2_match_context* mc) {
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject);
    int rc = pcre2_match(r.code, s, len, start, options | PCRE2_NO_UTF_CHECK, md, mc);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && r.jit)
        rc = pcre2_match(r.code, s, len, start, options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, mc);
    return rc;
}

struct Piece {
    size_t begin, end;  // byte offsets into the subject
};

// Per-thread match buffers: encode() may be called once per short chat fragment, so they
// are made once per thread, not per call. Only the whole-match offsets are read, so 16
// pairs are enough for every pattern (PCRE2 returns 0 when captures do not fit).
struct MatchScratch {
    pcre2_match_context* mc = pcre2_match_context_create(nullptr);
    pcre2_jit_stack* js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    pcre2_match_data* md = pcre2_match_data_create(16, nullptr);
    MatchScratch() {
        if (mc && js) pcre2_jit_stack_assign(mc, nullptr, js);
    }
    ~MatchScratch() {
        pcre2_match_data_free(md);
        pcre2_jit_stack_free(js);
        pcre2_match_context_free(mc);
    }
};

size_t utf8_len(const std::string& s, size_t i) {
    uint8_t c = uint8_t(s[i]);
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return std::min(n, s.size() - i);
}

}  // namespace

void RegexSplitter::split(std::string_view text, std::vector<std::string>& words) const {
    if (text.empty()) return;
    // `word_text` is what the words are cut from (llama.cpp re-encodes the code points);
    // `subject` is what the regexes see: the same, with non-ASCII white space as U+000B.
    // `to_word` maps subject offsets to word_text offsets when they differ.
    const std::string word_text = sanitize_utf8(text);
    std::string subject;
    std::vector<size_t> to_word;
    const bool remap = has_nonascii_space(word_text);
    if (remap) {
        subject.reserve(word_text.size());
        to_word.reserve(word_text.size() + 1);
        for (size_t i = 0; i < word_text.size();) {
            size_t len;
            uint32_t cp = decode_lenient(word_text, i, &len);
            if (is_nonascii_space(cp)) {
                to_word.push_back(i);
                subject += '\x0B';
            } else {
                for (size_t k = 0; k < len; ++k) {
                    to_word.push_back(i + k);
                    subject += word_text[i + k];
                }
            }
            i += len;
        }
        to_word.push_back(word_text.size());
    } else {
        subject = word_text;
    }
    // llama.cpp keeps surrogates as code points of no category; PCRE2 would reject them, so
    // they become U+E000 (also no letter, number, mark, punctuation, symbol or space).
    for (size_t i = 0; i + 2 < subject.size(); ++i) {
        if (uint8_t(subject[i]) == 0xED && uint8_t(subject[i + 1]) >= 0xA0) {
            subject[i] = char(0xEE);
            subject[i + 1] = char(0x80);
            subject[i + 2] = char(0x80);
        }
    }

    std::vector<Piece> pieces = {{0, subject.size()}}, next;
    thread_local MatchScratch scratch;
    pcre2_match_context* mc = scratch.mc;
    pcre2_match_data* md = scratch.md;
    for (const auto& re : regexes_) {
        next.clear();
        next.reserve(pieces.size() * 2);
        for (const Piece& p : pieces) {
            // The subject is the piece alone: lookarounds and $ stop at its edges.
            const char* base = subject.data() + p.begin;
            const size_t len = p.end - p.begin;
            size_t gap = 0, from = 0;
            uint32_t opts = 0;
            while (md && from <= len) {
                int rc = match_once(*re, base, len, from, opts, md, mc);
                if (rc < 0) {
                    if (opts != 0) {  // no non-empty match right after an empty one: step a char
                        opts = 0;
                        if (from >= len) break;
                        from += utf8_len(subject, p.begin + from);
                        continue;
                    }
                    break;
                }
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (ms > gap) next.push_back({p.begin + gap, p.begin + ms});
                if (me > ms) next.push_back({p.begin + ms, p.begin + me});
                gap = me;
                from = me;
                // After an empty match, look for a non-empty one at the same place (as
                // std::regex_iterator does), else move one character on.
                opts = me == ms ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
                if (me == ms && from >= len) break;
            }
            if (gap < len) next.push_back({p.begin + gap, p.end});
        }
        pieces.swap(next);
    }

    for (const Piece& p : pieces) {
        size_t b = remap ? to_word[p.begin] : p.begin, e = remap ? to_word[p.end] : p.end;
        words.emplace_back(word_text, b, e - b);
    }
}

// Appends code point cp as UTF-8 (pretokenizer.h).
void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

}  // namespace kiln::detail
