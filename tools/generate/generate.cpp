// kiln-generate: generate text with a GGUF model.
//
// stdout carries only the generated text (or, with --json, one JSON object); load progress
// and statistics go to stderr. It never reads stdin unless asked (-i, or -f -), and exits
// non-zero with a one-line error on a bad flag or file.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "args.h"
#include "flags.h"
#include "speculative_cli.h"

#include "kiln/kiln.h"
#include "kiln/format/gguf.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Stats {
    double load_s = 0, prefill_s = 0, decode_s = 0, ttft_s = 0;
    int n_prompt = 0, n_gen = 0;
};

int fail(const std::string& message) { return kiln::cli::fail("kiln-generate", message); }

// Ctrl-C stops the generation (and a long prefill) instead of the process; a second one kills it.
std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
    if (g_interrupted.exchange(true)) std::_Exit(130);
}

// Runs one prompt -> completion with kiln::generate. Streams text to stdout unless json_out is set.
kiln::Status generate(kiln::Session& session, kiln::Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateArgs& a,
                      std::vector<int32_t>* out_tokens, std::string* out_text, Stats* st) {
    kiln::GenerateOptions g;
    g.n_predict = a.n_predict;
    g.ignore_eos = a.ignore_eos;
    g.cancel = &g_interrupted;
    if (!a.json)
        g.on_text = [](std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
            return true;
        };
    auto r = kiln::generate(session, sampler, prompt, g);
    if (!r) return r.status();
    if (r->stop == kiln::StopReason::ContextFull) std::fprintf(stderr, "\nkiln-generate: context full (%d tokens), stopping\n", session.n_ctx());
    if (r->stop == kiln::StopReason::Cancelled) std::fprintf(stderr, "\nkiln-generate: interrupted\n");
    *out_tokens = r->tokens;
    *out_text = r->text;
    st->prefill_s += r->prefill_s;
    if (st->ttft_s == 0) st->ttft_s = r->prefill_s;
    st->decode_s += r->decode_s;
    st->n_prompt += r->n_prompt;
    st->n_gen += int(r->tokens.size());
    return kiln::Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
    GenerateArgs a;
    std::string usage;
    if (const kiln::Status parsed = parse_generate_args(argc, argv, &a, &usage); !parsed) return fail(parsed.message());
    if (a.help) {
        std::fputs(usage.c_str(), stdout);
        return 0;
    }
    if (a.list_devices) {
        std::printf("cpu: %s kernels, %d threads\n", kiln::cpu_isa_name(), kiln::default_thread_count());
        auto devices = kiln::list_vulkan_devices();
        if (!devices) {
            std::printf("vulkan: none (%s)\n", devices.message().c_str());
            return 0;
        }
        if (devices->empty()) std::printf("vulkan: no devices\n");
        for (const kiln::VulkanDeviceInfo& d : devices.value())
            std::printf("vulkan --device %d: %s (%s, Vulkan %s, %.1f GiB device-local)%s\n", d.index, d.name.c_str(), d.type.c_str(), d.api.c_str(),
                        double(d.device_local_bytes) / double(1ull << 30), d.usable ? "" : " [unusable: needs Vulkan 1.2 and a compute queue]");
        return 0;
    }

    auto tl = Clock::now();
    kiln::LoadOptions lo = a.load;
    if (!a.quiet) {  // rewritten in place on a terminal; in a log, only the last state
        const bool tty = isatty(STDERR_FILENO);
        lo.quantize_progress = [&a, tty](size_t done, size_t total) {
            if (tty || done == total)
                std::fprintf(stderr, "%skiln-generate: quantizing to %s: %zu/%zu tensors%s", tty ? "\r" : "", a.load.quantize.c_str(), done, total, done == total ? "\n" : "");
        };
    }
    auto model = kiln::Model::load(a.model, lo);
    if (!model) return fail(model.message());
    const kiln::Tokenizer& tok = model.value()->tokenizer();
    if (!tok.warning().empty() && !a.quiet) std::fprintf(stderr, "kiln-generate: warning: %s\n", tok.warning().c_str());

    // The prompt text: -p, -f FILE, or -f - (stdin, only when asked).
    std::string text = a.prompt;
    if (!a.prompt_file.empty()) {
        std::stringstream ss;
        if (a.prompt_file == "-") {
            ss << std::cin.rdbuf();
        } else {
            std::ifstream in(a.prompt_file, std::ios::binary);
            if (!in) return fail("cannot read prompt file '" + a.prompt_file + "'");
            ss << in.rdbuf();
        }
        text = ss.str();
        // As llama.cpp's -f: one trailing newline (which editors add) is not part of the prompt.
        if (!text.empty() && text.back() == '\n') text.pop_back();
    }
    std::vector<kiln::ChatMessage> messages;
    kiln::ChatTemplate chat_template;
    if (a.chat) {
        if (!a.chat_format.empty()) {
            auto f = kiln::parse_chat_format(a.chat_format);
            if (!f) return fail(f.message());
            chat_template.format = f.value();
        } else {
            const kiln::GgufFile& f = model.value()->gguf();
            auto t = kiln::chat_template_for(f.get_string("tokenizer.chat_template").value(), f.get_string("general.architecture").value());
            if (!t) return fail(t.message());
            chat_template = t.value();
        }
        if (!a.system.empty()) messages.push_back({"system", a.system});
        messages.push_back({"user", text});
        text = kiln::apply_chat_template(chat_template, messages);
    }
    std::vector<int32_t> prompt = tok.encode(text, /*add_special=*/true, /*parse_special=*/a.chat || a.special);
    if (prompt.empty()) return fail("the prompt is empty (give -p TEXT or -f FILE)");

    const kiln::SessionOptions& so = a.session;
    auto session = kiln::Session::create(model.value(), so);
    if (!session) return fail(session.message());
    kiln::Session& s = *session.value();
    if (int(prompt.size()) >= s.n_ctx()) {
        return fail(kiln::strfmt("prompt is %zu tokens but the context holds %d; raise --ctx or shorten the prompt", prompt.size(), s.n_ctx()));
    }
    Stats st;
    st.load_s = seconds_since(tl);
    std::signal(SIGINT, on_sigint);
    if (!a.quiet) {
        std::string engine = kiln::strfmt("%d threads, %s kernels", s.n_threads(), kiln::cpu_isa_name());
        if (so.backend == kiln::Backend::Vulkan) {
            auto devices = kiln::list_vulkan_devices();
            engine = kiln::strfmt("Vulkan device %d", so.device);
            if (devices && size_t(so.device) < devices->size()) engine += " (" + devices.value()[size_t(so.device)].name + ")";
        }
        std::fprintf(stderr, "kiln-generate: %s (%s), %s, ctx %d, loaded in %.2f s\n", a.model.c_str(), model.value()->description().c_str(), engine.c_str(),
                     s.n_ctx(), st.load_s);
    }

    kiln::Sampler sampler(a.sampling, model.value()->config().n_vocab);
    std::vector<int32_t> generated;
    std::string out_text;
    SpecRun spec;
    if (a.speculative()) {
        kiln::Status r = run_speculative(model.value(), s, so, sampler, prompt, a, &generated, &out_text, &spec);
        if (!r) return fail(r.message());
        st.prefill_s = st.ttft_s = spec.prefill_s;
        st.decode_s = spec.decode_s;
        st.n_prompt = spec.n_prompt;
        st.n_gen = spec.n_gen;
    } else {
        kiln::Status run = generate(s, sampler, prompt, a, &generated, &out_text, &st);
        if (!run) return fail(run.message());
    }

    // Interactive: further user turns from stdin, only with -i. `fed` is the text the
    // model has seen; each new turn is the suffix the template adds to it.
    std::string fed = text + out_text;
    while (a.interactive) {
        if (!a.json) std::fputs("\n> ", stderr);
        std::string line;
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        std::string turn = line;
        if (a.chat) {
            messages.push_back({"assistant", out_text});
            messages.push_back({"user", line});
            std::string full = kiln::apply_chat_template(chat_template, messages);
            size_t common = 0;
            while (common < full.size() && common < fed.size() && full[common] == fed[common]) ++common;
            turn = full.substr(common);
            fed = full;
        } else {
            fed += line;
        }
        std::vector<int32_t> ids = tok.encode(turn, false, a.chat || a.special);
        if (s.n_past() + int(ids.size()) >= s.n_ctx()) return fail("context full: this turn does not fit; raise --ctx");
        generated.clear();
        out_text.clear();
        kiln::Status r = generate(s, sampler, ids, a, &generated, &out_text, &st);
        if (!r) return fail(r.message());
        fed += out_text;
    }

    const double bytes = double(model.value()->bytes_per_token(so.n_expert_used));
    const double pp_tps = st.prefill_s > 0 ? st.n_prompt / st.prefill_s : 0;
    const double tg_tps = st.decode_s > 0 && st.n_gen > 1 ? (st.n_gen - 1) / st.decode_s : 0;
    if (a.json) {
        nlohmann::json j;
        j["text"] = out_text;
        j["tokens"] = generated;
        j["prompt_tokens"] = st.n_prompt;
        j["generated_tokens"] = st.n_gen;
        j["timings"] = {{"load_s", st.load_s},      {"ttft_s", st.ttft_s},   {"prefill_s", st.prefill_s},
                        {"decode_s", st.decode_s},  {"prefill_tps", pp_tps}, {"decode_tps", tg_tps},
                        {"decode_gbps", tg_tps * bytes / 1e9}};
        j["model"] = model.value()->description();
        j["threads"] = s.n_threads();
        j["isa"] = kiln::cpu_isa_name();
        if (a.speculative()) j["speculative"] = spec.stats;
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::fputc('\n', stdout);
    }
    if (!a.quiet) {
        std::fprintf(stderr, "\nkiln-generate: prompt %d tokens in %.3f s (%.1f t/s), time to first token %.3f s\n", st.n_prompt,
                     st.prefill_s, pp_tps, st.ttft_s);
        std::fprintf(stderr, "kiln-generate: generated %d tokens in %.3f s (%.1f t/s, %.1f GB/s of weights)\n", st.n_gen, st.decode_s,
                     tg_tps, tg_tps * bytes / 1e9);
    }
    return 0;
}
