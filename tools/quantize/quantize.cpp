// kiln-quantize: a GGUF file or a Hugging Face checkpoint directory in, a GGUF file out,
// with llama-quantize's mixes (the same type for each tensor and, having ggml's reference
// quantizers, the same bytes); the output loads in llama.cpp.
//   kiln-quantize [options] IN OUT.gguf TYPE
//   TYPE: Q4_K_M (= Q4_K) Q4_K_S Q5_K_M (= Q5_K) Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 F16 BF16 F32 COPY
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

#include "kiln/kiln.h"
#include "kiln/format/quantize.h"
#include "kiln/format/hf_checkpoint.h"
#include "kiln/format/gguf_writer.h"

namespace {

int fail(const std::string& msg) {
    std::fprintf(stderr, "kiln-quantize: %s\n", msg.c_str());
    return 1;
}

const char* kUsage =
    "usage: kiln-quantize [options] IN OUT.gguf TYPE\n"
    "  IN     GGUF file, or Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)\n"
    "  TYPE   Q4_K_M (= Q4_K) Q4_K_S Q5_K_M (= Q5_K) Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 F16 BF16 F32, or COPY (tensors kept)\n"
    "options:\n"
    "  --tensor-type PATTERN=TYPE     tensors whose name matches PATTERN (regex) get TYPE (repeatable; first match wins)\n"
    "  --output-tensor-type TYPE      type of output.weight (or of token_embd when the embeddings are tied)\n"
    "  --token-embedding-type TYPE    type of token_embd.weight\n"
    "  --override-kv KEY=TYPE:VALUE   set a metadata value in the output (TYPE int, float, bool, str)\n"
    "  -t, --threads N                threads (default: all cores)\n"
    "  --rmse                         print each quantized tensor's RMSE against the input on stdout\n"
    "  --rmse-vs OTHER.gguf           ... and the RMSE of OTHER's version of it (e.g. llama-quantize's output)\n";

struct Args {
    std::string in, out, type;
    kiln::QuantizeOptions opt;
    bool rmse = false;
    std::string rmse_vs;
    std::vector<std::string> override_kv;
};

kiln::Expected<Args> parse(int argc, char** argv) {
    Args a;
    std::vector<std::string> pos;
    for (int i = 1; i < argc; ++i) {
        const std::string f = argv[i];
        auto value = [&]() -> kiln::Expected<std::string> {
            if (i + 1 >= argc) return kiln::Status::error("%s needs a value", f.c_str());
            return std::string(argv[++i]);
        };
        if (f == "--tensor-type" || f == "--output-tensor-type" || f == "--token-embedding-type" || f == "-t" || f == "--threads" || f == "--rmse-vs" ||
            f == "--override-kv") {
            auto v = value();
            if (!v) return v.status();
            if (f == "--tensor-type") {
                auto o = kiln::parse_tensor_type_override(v.value());
                if (!o) return o.status();
                a.opt.overrides.push_back(std::move(o.value()));
            } else if (f == "-t" || f == "--threads") {
                char* end = nullptr;
                long n = std::strtol(v->c_str(), &end, 10);
                if (v->empty() || *end || n < 1 || n > 1024) return kiln::Status::error("%s: '%s' is not a thread count in [1, 1024]", f.c_str(), v->c_str());
                a.opt.n_threads = int(n);
            } else if (f == "--override-kv") {
                auto kv = kiln::parse_override_kv(v.value());
                if (!kv) return kv.status();
                a.override_kv.push_back(v.value());
            } else if (f == "--rmse-vs") {
                a.rmse = true;
                a.rmse_vs = v.value();
            } else {
                auto t = kiln::parse_quant_type(v.value());
                if (!t) return t.status().with_context(f);
                (f == "--output-tensor-type" ? a.opt.output_type : a.opt.token_embd_type) = t.value();
            }
        } else if (f == "--rmse") {
            a.rmse = true;
        } else if (f == "-h" || f == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (!f.empty() && f[0] == '-') {
            return kiln::Status::error("unknown flag '%s' (see --help)", f.c_str());
        } else {
            pos.push_back(f);
        }
    }
    if (pos.size() != 3) return kiln::Status::error("expected IN OUT.gguf TYPE, got %zu arguments (see --help)", pos.size());
    a.in = pos[0], a.out = pos[1], a.type = pos[2];
    auto mix = kiln::parse_quant_mix(a.type);
    if (!mix) return mix.status();
    a.opt.mix = mix.value();
    return a;
}

kiln::Expected<kiln::GgufFile> open_input(const std::string& path) {
    return kiln::is_hf_checkpoint_dir(path) ? kiln::open_hf_checkpoint(path) : kiln::GgufFile::open(path);
}

}  // namespace

int main(int argc, char** argv) {
    auto args = parse(argc, argv);
    if (!args) return fail(args.message());
    Args& a = args.value();
    auto f = open_input(a.in);
    if (!f) return fail(f.message());
    // A progress line rewritten in place on a terminal; in a log, only the last state.
    const bool tty = isatty(STDERR_FILENO);
    a.opt.progress = [&](size_t done, size_t total) {
        if (tty || done == total) std::fprintf(stderr, "%skiln-quantize: %s: %zu/%zu tensors%s", tty ? "\r" : "", a.opt.mix.name.c_str(), done, total, done == total ? "\n" : "");
    };
    kiln::Status s = kiln::quantize_gguf(f.value(), a.opt);
    if (!s) return fail(s.message());
    for (const std::string& spec : a.override_kv) {
        auto kv = kiln::parse_override_kv(spec);
        f->set_override(kv->first, kv->second);
    }

    kiln::GgufWriter w(uint32_t(f->alignment()));
    w.add_file(f.value());
    uint64_t bytes = 0;
    for (const kiln::GgufTensor& t : f->tensors()) bytes += t.nbytes;
    s = w.write(a.out);
    if (!s) return fail(s.message());
    std::fprintf(stderr, "kiln-quantize: %s -> %s (%s, %.1f MiB)\n", a.in.c_str(), a.out.c_str(), a.opt.mix.name.c_str(), double(bytes) / (1 << 20));

    if (a.rmse) {
        auto original = open_input(a.in);  // the untouched input (mapped: no copy of a GGUF)
        if (!original) return fail(original.message());
        std::optional<kiln::GgufFile> other;
        if (!a.rmse_vs.empty()) {
            auto o = kiln::GgufFile::open(a.rmse_vs);
            if (!o) return fail(o.message());
            other = std::move(o.value());
        }
        std::printf("| tensor | kiln type | kiln RMSE |%s\n", other ? " other type | other RMSE | kiln/other |" : "");
        std::printf("| --- | --- | ---: |%s\n", other ? " --- | ---: | ---: |" : "");
        for (const kiln::GgufTensor& t : f->tensors()) {
            const kiln::GgufTensor* in = original->find_tensor(t.name);
            if (!in || in->dtype == t.dtype) continue;
            const double e = kiln::tensor_rmse(*in, t);
            std::printf("| %s | %s | %.6g |", t.name.c_str(), kiln::dtype_name(t.dtype), e);
            if (other) {
                const kiln::GgufTensor* o = other->find_tensor(t.name);
                if (!o || o->n_elements() != t.n_elements() || o->ne[0] != t.ne[0]) return fail("--rmse-vs: " + a.rmse_vs + " has no tensor '" + t.name + "' of the same shape");
                const double eo = kiln::tensor_rmse(*in, *o);
                std::printf(" %s | %.6g | %.4f |", kiln::dtype_name(o->dtype), eo, eo > 0 ? e / eo : (e == 0 ? 1.0 : INFINITY));
            }
            std::printf("\n");
        }
    }
    return 0;
}
