#include "args.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "flags.h"

using kiln::Status;

kiln::Status parse_generate_args(int argc, char** argv, GenerateArgs* out, std::string* help) {
    GenerateArgs& a = *out;
    kiln::cli::Flags f("kiln-generate -m MODEL.gguf [-p PROMPT | -f FILE] [options]",
                       "Generated text goes to stdout; statistics and errors go to stderr.\n"
                       "KILN_ISA=avx512|avx2|generic forces a kernel set.\n");
    f.string("-m, --model", "PATH", "GGUF file or Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)", &a.model);
    f.string("-p, --prompt", "TEXT", "prompt text", &a.prompt);
    f.string("-f, --file", "FILE", "read the prompt from FILE ('-' reads stdin); one trailing newline is dropped, as llama.cpp does", &a.prompt_file);
    f.integer("-n, --n-predict", "N", "tokens to generate (default 128, -1 = until end of text)", &a.n_predict, -1, 1 << 24);
    f.boolean("--chat", "wrap the prompt in the model's chat template", &a.chat);
    f.value("--chat-format", "NAME", "chatml | llama3 | gemma | llama2 | deepseek-r1 (instead of detecting it)", [&a](const std::string& v) {
        return a.chat_format = v, a.chat = true, Status::ok();
    });
    f.string("--system", "TEXT", "system prompt for --chat", &a.system);
    f.boolean("--special", "parse special-token text (e.g. <|im_start|>) in a raw prompt", &a.special);
    f.boolean("-i, --interactive", "read further turns from stdin", &a.interactive);
    f.section("Sampling");
    kiln::cli::add_sampling_flags(f, a.sampling);
    f.boolean("--ignore-eos", "keep generating past end-of-generation tokens", &a.ignore_eos);
    f.section("Model and session");
    kiln::cli::add_session_flags(f, a.session, a.isa);
    kiln::cli::add_load_flags(f, a.load);
    f.section("Speculative decoding (one drafting source; output is exactly the target's)");
    f.string("-md, --model-draft", "FILE", "draft model (same vocabulary as -m); where the text's last 4..8 tokens occurred\n"
             "earlier, what followed them is drafted instead (no draft forward; --lookup-ngram 0: off)", &a.model_draft);
    f.integer("--lookup-ngram", "N", "prompt lookup: draft what followed the last n-gram (N..1) earlier in the text\n"
              "(with -md: n-grams N..4 in front of the draft model)", &a.lookup_ngram, 0, 64);
    f.boolean("--self-spec", "the target drafts for itself with layers skipped (chosen by calibration on the prompt)", &a.self_spec);
    f.value("--skip-layers", "LIST", "self-speculation with these layers skipped, e.g. 3,5,7 (no calibration)", [&a](const std::string& v) -> Status {
        a.self_spec = true;
        a.skip_layers.clear();
        for (size_t p = 0; p <= v.size();) {
            size_t e = v.find(',', p);
            if (e == std::string::npos) e = v.size();
            int layer = 0;
            KILN_TRY(kiln::cli::parse_int("--skip-layers", v.substr(p, e - p), 0, 1 << 16, &layer));
            a.skip_layers.push_back(layer);
            p = e + 1;
        }
        return Status::ok();
    });
    f.boolean("--pard", "the -md model is a PARD model: K draft tokens in one forward with K-1 mask tokens", &a.pard);
    f.value("--pard-mask-id", "N", "PARD mask token (default: tokenizer.ggml.mask_token_id of the draft)", [&a](const std::string& v) {
        a.pard = true;
        return kiln::cli::parse_int("--pard-mask-id", v, 0, 1 << 30, &a.pard_mask_id);
    });
    f.integer("--draft-max, --draft", "N", "draft tokens per round, 1..7 (default 7; the adaptive length picks up to this)", &a.draft_max, 1, kiln::kMaxDraft);
    f.integer("--draft-min", "N", "smallest adaptive draft length (default 0: plain decoding where no draft pays)", &a.draft_min, 0, kiln::kMaxDraft);
    f.number("--draft-p-min", "P", "stop drafting when the draft's probability is below P (default 0 = off)", &a.draft_p_min, 0, 1);
    f.boolean("--no-adaptive-draft", "always draft --draft-max tokens", &a.adaptive_draft, false);
    f.integer("--draft-head", "N", "the -md model drafts from its N most common tokens plus those of the text (default:\n"
              "32768 where its output head is over a quarter of its weights; 0: all tokens)", &a.draft_head, 0, 1 << 24);
    f.integer("-cd, --ctx-draft, --ctx-size-draft", "N", "draft context (default: --ctx; must not be smaller)", &a.ctx_draft, 1, 1 << 22);
    f.boolean("--spec-compare", "also decode plainly, interleaved with the speculative run (a second session decodes\n"
              "each emitted token right after it), and report the speedup (and equality at --temp 0)", &a.spec_compare);
    f.section("Output");
    f.boolean("--json", "print one JSON object (text, tokens, timings) instead of text", &a.json);
    f.boolean("-q, --quiet", "no statistics on stderr", &a.quiet);
    f.boolean("--list-devices", "list compute devices (CPU and Vulkan) and exit", &a.list_devices);
    KILN_TRY(f.parse(argc, argv));
    *help = f.help();
    a.help = f.help_requested();
    a.session.isa = a.isa.empty() ? nullptr : a.isa.c_str();
    if (a.help || a.list_devices) return Status::ok();
    if (a.model.empty()) return Status::error("no model given (-m FILE.gguf; see --help)");
    if (!a.prompt.empty() && !a.prompt_file.empty()) return Status::error("give either -p or -f, not both");
    if (a.prompt.empty() && a.prompt_file.empty()) return Status::error("no prompt given (-p TEXT or -f FILE)");
    if (a.interactive && isatty(0) == 0 && a.prompt_file == "-") return Status::error("-i and -f - both want stdin");
    KILN_TRY(kiln::validate(a.sampling));
    const int n_sources = int(!a.model_draft.empty()) + int(a.lookup_alone()) + int(a.self_spec);
    if (n_sources > 1 || (a.self_spec && a.lookup_ngram >= 0))
        return Status::error("choose one drafting source: -md (with --lookup-ngram or not), --lookup-ngram or --self-spec/--skip-layers");
    if (a.lookup_ngram == 0 && a.model_draft.empty()) return Status::error("--lookup-ngram 0 turns prompt lookup off in front of a draft model (-md)");
    if (a.lookup_ngram > 0 && a.lookup_ngram < kiln::kHybridLookupMin && !a.model_draft.empty())
        return Status::error("--lookup-ngram %d: in front of a draft model, n-grams are at least %d tokens", a.lookup_ngram, kiln::kHybridLookupMin);
    if (a.pard && a.lookup_ngram > 0) return Status::error("--lookup-ngram does not combine with --pard");
    if (a.pard && a.model_draft.empty()) return Status::error("--pard needs a PARD draft model (-md FILE)");
    if (a.draft_min > a.draft_max) return Status::error("--draft-min %d is larger than --draft-max %d", a.draft_min, a.draft_max);
    if (a.ctx_draft > 0 && a.model_draft.empty() && !a.self_spec) return Status::error("--ctx-draft needs a draft (-md or --self-spec)");
    if (a.draft_head >= 0 && (a.model_draft.empty() || a.pard)) return Status::error("--draft-head needs a draft model (-md, not --pard)");
    if (a.spec_compare && !a.speculative()) return Status::error("--spec-compare needs a drafting source (-md, --lookup-ngram, --self-spec)");
    if (a.speculative() && a.interactive) return Status::error("speculative decoding does not support -i yet");
    return Status::ok();
}
