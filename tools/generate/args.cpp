#include "args.h"
#include "kiln/format/quantize.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace {

kiln::Status parse_int(const std::string& flag, const char* v, long lo, long hi, int* out) {
    char* end = nullptr;
    errno = 0;
    long x = std::strtol(v, &end, 10);
    if (!*v || *end || errno) return kiln::Status::error("%s: '%s' is not an integer", flag.c_str(), v);
    if (x < lo || x > hi) return kiln::Status::error("%s: %ld is outside [%ld, %ld]", flag.c_str(), x, lo, hi);
    *out = int(x);
    return kiln::Status::ok();
}

kiln::Status parse_float(const std::string& flag, const char* v, float* out) {
    char* end = nullptr;
    float x = std::strtof(v, &end);
    if (!*v || *end || !std::isfinite(x)) return kiln::Status::error("%s: '%s' is not a number", flag.c_str(), v);
    *out = x;
    return kiln::Status::ok();
}

}  // namespace

const char* generate_usage() {
    return "usage: kiln-generate -m MODEL.gguf [-p PROMPT | -f FILE] [options]\n"
           "\n"
           "  -m, --model PATH          GGUF file or Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)\n"
           "  -p, --prompt TEXT         prompt text\n"
           "  -f, --file FILE           read the prompt from FILE ('-' reads stdin)\n"
           "  -n, --n-predict N         tokens to generate (default 128, -1 = until end of text)\n"
           "      --chat                wrap the prompt in the model's chat template\n"
           "      --chat-format NAME    chatml | llama3 | gemma | llama2 | deepseek-r1 (instead of detecting it)\n"
           "      --system TEXT         system prompt for --chat\n"
           "      --special             parse special-token text (e.g. <|im_start|>) in a raw prompt\n"
           "  -i, --interactive         read further turns from stdin\n"
           "      --temp T              temperature (default 0.8; 0 = greedy)\n"
           "      --top-k K             (default 40, 0 = off)\n"
           "      --top-p P             (default 0.95, 1 = off)\n"
           "      --min-p P             (default 0.05, 0 = off)\n"
           "      --repeat-penalty X    (default 1.0 = off)\n"
           "      --repeat-last-n N     (default 64)\n"
           "  -s, --seed N              sampling seed\n"
           "      --ignore-eos          keep generating past end-of-generation tokens\n"
           "  -t, --threads N           threads (default: all cores)\n"
           "  -c, --ctx N               context size in tokens (default min(trained, 4096))\n"
           "  -ctk, --cache-type-k TYPE K cache type: f16 (default), bf16, q8_0, q4_0, f32\n"
           "  -ctv, --cache-type-v TYPE V cache type (same choices)\n"
           "      --cache-type TYPE     both\n"
           "      --kv-hadamard         rotate K/V/Q per head by a Walsh-Hadamard transform (better 4-bit caches)\n"
           "      --override-kv K=T:V   override model metadata, T = int|float|bool|str\n"
           "      --experts-per-token N MoE: run N experts per token instead of the model's (fewer: faster, lower quality)\n"
           "      --no-mmap             read the model into memory (huge pages) instead of mapping it\n"
           "      --repack              copy q4_K/q6_K/q8_0/q4_0/q4_1/q5_0/q5_1 weights row-interleaved (faster; slower load)\n"
           "      --quantize TYPE       quantize the weights in memory at load: q8_0, q4_k_m, q5_k_m, q6_k, q4_0, ... (llama-quantize's mixes)\n"
           "\n"
           "Speculative decoding (one drafting source; output is exactly the target's):\n"
           "  -md, --model-draft FILE   draft model (same vocabulary as -m); where the text's last 4..8 tokens occurred\n"
           "                            earlier, what followed them is drafted instead (no draft forward; --lookup-ngram 0: off)\n"
           "      --lookup-ngram N      prompt lookup: draft what followed the last n-gram (N..1) earlier in the text\n"
           "                            (with -md: n-grams N..4 in front of the draft model)\n"
           "      --self-spec           the target drafts for itself with layers skipped (chosen by calibration on the prompt)\n"
           "      --skip-layers LIST    self-speculation with these layers skipped, e.g. 3,5,7 (no calibration)\n"
           "      --pard                the -md model is a PARD model: K draft tokens in one forward with K-1 mask tokens\n"
           "      --pard-mask-id N      PARD mask token (default: tokenizer.ggml.mask_token_id of the draft)\n"
           "      --draft-max N         draft tokens per round, 1..7 (default 7; the adaptive length picks up to this)\n"
           "      --draft-min N         smallest adaptive draft length (default 0: plain decoding where no draft pays)\n"
           "      --draft-p-min P       stop drafting when the draft's probability is below P (default 0 = off)\n"
           "      --no-adaptive-draft   always draft --draft-max tokens\n"
           "      --draft-head N        the -md model drafts from its N most common tokens plus those of the text (default:\n"
           "                            32768 where its output head is over a quarter of its weights; 0: all tokens)\n"
           "  -cd, --ctx-draft N        draft context (default: --ctx; must not be smaller)\n"
           "      --spec-compare        also decode plainly, interleaved with the speculative run (a second session decodes\n"
           "                            each emitted token right after it), and report the speedup (and equality at --temp 0)\n"
           "\n"
           "      --json                print one JSON object (text, tokens, timings) instead of text\n"
           "      --quiet               no statistics on stderr\n"
           "      --list-devices        list compute devices (CPU and Vulkan) and exit\n"
           "      --backend cpu|vulkan  where the model runs (default cpu); vulkan: dense llama/qwen2/qwen3/gemma3, f16 KV cache\n"
           "      --device N            Vulkan device N of --list-devices (default 0)\n"
           "  -h, --help                this help\n"
           "\n"
           "Generated text goes to stdout; statistics and errors go to stderr.\n"
           "KILN_ISA=avx512|avx2|generic forces a kernel set.\n";
}

kiln::Expected<GenerateArgs> parse_generate_args(int argc, char** argv) {
    GenerateArgs a;
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        auto value = [&](const char** out) -> kiln::Status {
            if (i + 1 >= argc) return kiln::Status::error("%s needs a value", f.c_str());
            *out = argv[++i];
            return kiln::Status::ok();
        };
        const char* v = nullptr;
        if (f == "-h" || f == "--help") a.help = true;
        else if (f == "-m" || f == "--model") { KILN_TRY(value(&v)); a.model = v; }
        else if (f == "-p" || f == "--prompt") { KILN_TRY(value(&v)); a.prompt = v; }
        else if (f == "-f" || f == "--file") { KILN_TRY(value(&v)); a.prompt_file = v; }
        else if (f == "-n" || f == "--n-predict") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, -1, 1 << 24, &a.n_predict)); }
        else if (f == "--chat") a.chat = true;
        else if (f == "--chat-format") { KILN_TRY(value(&v)); a.chat_format = v; a.chat = true; }
        else if (f == "--system") { KILN_TRY(value(&v)); a.system = v; }
        else if (f == "--special") a.special = true;
        else if (f == "-i" || f == "--interactive") a.interactive = true;
        else if (f == "--temp") { KILN_TRY(value(&v)); KILN_TRY(parse_float(f, v, &a.sampling.temperature)); }
        else if (f == "--top-k") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, 1 << 30, &a.sampling.top_k)); }
        else if (f == "--top-p") { KILN_TRY(value(&v)); KILN_TRY(parse_float(f, v, &a.sampling.top_p)); }
        else if (f == "--min-p") { KILN_TRY(value(&v)); KILN_TRY(parse_float(f, v, &a.sampling.min_p)); }
        else if (f == "--repeat-penalty") { KILN_TRY(value(&v)); KILN_TRY(parse_float(f, v, &a.sampling.repeat_penalty)); }
        else if (f == "--repeat-last-n") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, 1 << 20, &a.sampling.repeat_last_n)); }
        else if (f == "-s" || f == "--seed") {
            KILN_TRY(value(&v));
            char* end = nullptr;
            errno = 0;
            unsigned long long x = std::strtoull(v, &end, 10);
            if (!*v || *end || errno || v[0] == '-') return kiln::Status::error("%s: '%s' is not a non-negative integer", f.c_str(), v);
            a.sampling.seed = x;
        }
        else if (f == "--ignore-eos") a.ignore_eos = true;
        else if (f == "-t" || f == "--threads") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 1, 1024, &a.n_threads)); }
        else if (f == "-c" || f == "--ctx" || f == "--ctx-size") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 1, 1 << 22, &a.n_ctx)); }
        else if (f == "--cache-type" || f == "-ctk" || f == "--cache-type-k" || f == "-ctv" || f == "--cache-type-v") {
            KILN_TRY(value(&v));
            auto t = kiln::parse_cache_type(v);
            if (!t) return kiln::Status::error("%s: %s", f.c_str(), t.message().c_str());
            if (f != "-ctv" && f != "--cache-type-v") a.type_k = t.value();
            if (f != "-ctk" && f != "--cache-type-k") a.type_v = t.value();
        }
        else if (f == "--override-kv") { KILN_TRY(value(&v)); a.override_kv.push_back(v); }
        else if (f == "--experts-per-token") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 1, 4096, &a.n_expert_used)); }
        else if (f == "--no-mmap") a.use_mmap = false;
        else if (f == "--kv-hadamard") a.kv_hadamard = true;
        else if (f == "--repack" || f == "-rtr") a.repack = true;
        else if (f == "--quantize") {
            KILN_TRY(value(&v));
            auto mix = kiln::parse_quant_mix(v);
            if (!mix) return mix.status().with_context("--quantize");
            a.quantize = v;
        }
        else if (f == "-md" || f == "--model-draft") { KILN_TRY(value(&v)); a.model_draft = v; }
        else if (f == "-cd" || f == "--ctx-draft" || f == "--ctx-size-draft") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 1, 1 << 22, &a.ctx_draft)); }
        else if (f == "--draft-max" || f == "--draft") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 1, kiln::kMaxDraft, &a.draft_max)); }
        else if (f == "--draft-min") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, kiln::kMaxDraft, &a.draft_min)); }
        else if (f == "--draft-p-min") {
            KILN_TRY(value(&v));
            KILN_TRY(parse_float(f, v, &a.draft_p_min));
            if (a.draft_p_min < 0 || a.draft_p_min > 1) return kiln::Status::error("%s: %g must be in [0, 1]", f.c_str(), double(a.draft_p_min));
        }
        else if (f == "--no-adaptive-draft") a.adaptive_draft = false;
        else if (f == "--draft-head") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, 1 << 24, &a.draft_head)); }
        else if (f == "--lookup-ngram") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, 64, &a.lookup_ngram)); }
        else if (f == "--self-spec") a.self_spec = true;
        else if (f == "--skip-layers") {
            KILN_TRY(value(&v));
            a.self_spec = true;
            a.skip_layers.clear();
            std::string list = v;
            for (size_t p = 0; p <= list.size();) {
                size_t e = list.find(',', p);
                if (e == std::string::npos) e = list.size();
                int layer = 0;
                KILN_TRY(parse_int(f, list.substr(p, e - p).c_str(), 0, 1 << 16, &layer));
                a.skip_layers.push_back(layer);
                p = e + 1;
            }
        }
        else if (f == "--pard") a.pard = true;
        else if (f == "--pard-mask-id") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, 1 << 30, &a.pard_mask_id)); a.pard = true; }
        else if (f == "--spec-compare") a.spec_compare = true;
        else if (f == "--json") a.json = true;
        else if (f == "--quiet" || f == "-q") a.quiet = true;
        else if (f == "--list-devices") a.list_devices = true;
        else if (f == "--backend") {
            KILN_TRY(value(&v));
            auto b = kiln::parse_backend(v);
            if (!b) return kiln::Status::error("%s: %s", f.c_str(), b.message().c_str());
            a.backend = b.value();
        }
        else if (f == "--device") { KILN_TRY(value(&v)); KILN_TRY(parse_int(f, v, 0, 1 << 10, &a.device)); }
        else return kiln::Status::error("unknown flag '%s' (see --help)", f.c_str());
    }
    if (a.help || a.list_devices) return a;
    if (a.model.empty()) return kiln::Status::error("no model given (-m FILE.gguf; see --help)");
    if (!a.prompt.empty() && !a.prompt_file.empty()) return kiln::Status::error("give either -p or -f, not both");
    if (a.prompt.empty() && a.prompt_file.empty()) return kiln::Status::error("no prompt given (-p TEXT or -f FILE)");
    if (a.interactive && isatty(0) == 0 && a.prompt_file == "-") return kiln::Status::error("-i and -f - both want stdin");
    KILN_TRY(kiln::validate(a.sampling));
    const int n_sources = int(!a.model_draft.empty()) + int(a.lookup_alone()) + int(a.self_spec);
    if (n_sources > 1 || (a.self_spec && a.lookup_ngram >= 0))
        return kiln::Status::error("choose one drafting source: -md (with --lookup-ngram or not), --lookup-ngram or --self-spec/--skip-layers");
    if (a.lookup_ngram == 0 && a.model_draft.empty()) return kiln::Status::error("--lookup-ngram 0 turns prompt lookup off in front of a draft model (-md)");
    if (a.lookup_ngram > 0 && a.lookup_ngram < kiln::kHybridLookupMin && !a.model_draft.empty())
        return kiln::Status::error("--lookup-ngram %d: in front of a draft model, n-grams are at least %d tokens", a.lookup_ngram, kiln::kHybridLookupMin);
    if (a.pard && a.lookup_ngram > 0) return kiln::Status::error("--lookup-ngram does not combine with --pard");
    if (a.pard && a.model_draft.empty()) return kiln::Status::error("--pard needs a PARD draft model (-md FILE)");
    if (a.draft_min > a.draft_max) return kiln::Status::error("--draft-min %d is larger than --draft-max %d", a.draft_min, a.draft_max);
    if (a.ctx_draft > 0 && a.model_draft.empty() && !a.self_spec) return kiln::Status::error("--ctx-draft needs a draft (-md or --self-spec)");
    if (a.draft_head >= 0 && (a.model_draft.empty() || a.pard)) return kiln::Status::error("--draft-head needs a draft model (-md, not --pard)");
    if (a.spec_compare && !a.speculative()) return kiln::Status::error("--spec-compare needs a drafting source (-md, --lookup-ngram, --self-spec)");
    if (a.speculative() && a.interactive) return kiln::Status::error("speculative decoding does not support -i yet");
    return a;
}
