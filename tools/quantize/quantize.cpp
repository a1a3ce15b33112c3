// kiln-quantize: a GGUF file or a Hugging Face checkpoint directory in, a GGUF file out,
// with llama-quantize's mixes (the same type for each tensor and, having ggml's reference
// quantizers, the same bytes); the output loads in llama.cpp.
//   kiln-quantize [options] IN OUT.gguf TYPE
//   TYPE: Q4_K_M (= Q4_K) Q4_K_S Q5_K_M (= Q5_K) Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS F16 BF16 F32 COPY
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
#include "kiln/format/gguf_split.h"
#include "kiln/format/gguf_writer.h"
#include "flags.h"

namespace {

int fail(const std::string& message) { return kiln::cli::fail("kiln-quantize", message); }

struct Args {
    std::string in, out, type;
    kiln::QuantizeOptions opt;
    bool rmse = false;
    std::string rmse_vs, imatrix_path;
    kiln::ImportanceMatrix imatrix;
    std::vector<std::string> override_kv;
    kiln::SplitOptions split;
    bool help = false;
};

// Parses argv into *a (the flag table points into it); *usage: the --help text.
kiln::Status parse(int argc, char** argv, Args* out, std::string* usage) {
    Args& a = *out;
    kiln::cli::Flags f("kiln-quantize [options] IN OUT.gguf TYPE\n"
                       "  IN     GGUF file, or Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)\n"
                       "  TYPE   Q4_K_M (= Q4_K) Q4_K_S Q5_K_M (= Q5_K) Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL IQ4_XS IQ3_S IQ3_M F16 BF16 F32,\n"
                       "         IQ3_XXS IQ3_XS IQ2_M IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S (with --imatrix), or COPY (tensors kept)");
    f.value("--tensor-type", "PATTERN=TYPE", "tensors whose name matches PATTERN (regex) get TYPE (repeatable; first match wins)", [&a](const std::string& v) -> kiln::Status {
        auto o = kiln::parse_tensor_type_override(v);
        if (!o) return o.status();
        a.opt.overrides.push_back(std::move(o.value()));
        return kiln::Status::ok();
    });
    auto type_of = [](const char* flag, std::optional<kiln::DType>* t) {
        return [flag, t](const std::string& v) -> kiln::Status {
            auto parsed = kiln::parse_quant_type(v);
            if (!parsed) return parsed.status().with_context(flag);
            return *t = parsed.value(), kiln::Status::ok();
        };
    };
    f.value("--output-tensor-type", "TYPE", "type of output.weight (or of token_embd when the embeddings are tied)", type_of("--output-tensor-type", &a.opt.output_type));
    f.value("--token-embedding-type", "TYPE", "type of token_embd.weight", type_of("--token-embedding-type", &a.opt.token_embd_type));
    f.value("--override-kv", "KEY=TYPE:VALUE", "set a metadata value in the output (TYPE int, float, bool, str)", [&a](const std::string& v) -> kiln::Status {
        auto kv = kiln::parse_override_kv(v);
        if (!kv) return kv.status();
        return a.override_kv.push_back(v), kiln::Status::ok();
    });
    f.value("--split-max-size", "N(M|G)", "write OUT as parts of at most N megabytes (M) or gigabytes (G) of tensors: OUT-00001-of-0000K.gguf ... (llama-gguf-split's naming)",
            [&a](const std::string& v) -> kiln::Status {
                auto n = kiln::parse_split_size(v);
                if (!n) return n.status().with_context("--split-max-size");
                return a.split.max_bytes = n.value(), kiln::Status::ok();
            });
    f.integer("--split-max-tensors", "N", "write OUT as parts of at most N tensors", &a.split.max_tensors, 1, 1 << 30);
    f.integer("-t, --threads", "N", "threads (default: all cores)", &a.opt.n_threads, 1, 1024);
    f.value("--imatrix", "FILE.gguf", "importance matrix (kiln-imatrix's or llama-imatrix's GGUF): required by iq1_s, iq1_m, iq2_xxs, iq2_xs, iq2_s, iq3_xxs, used by every other "
            "quantizer but q8_0's; the mix rules then follow llama-quantize's with an imatrix", [&a](const std::string& v) {
                a.imatrix_path = v;
                return kiln::Status::ok();
            });
    f.boolean("--rmse", "print each quantized tensor's RMSE against the input on stdout", &a.rmse);
    f.value("--rmse-vs", "OTHER.gguf", "... and the RMSE of OTHER's version of it (e.g. llama-quantize's output)", [&a](const std::string& v) {
        return a.rmse = true, a.rmse_vs = v, kiln::Status::ok();
    });
    KILN_TRY(f.parse(argc, argv, 3));
    *usage = f.help();
    a.help = f.help_requested();
    if (a.help) return kiln::Status::ok();
    const auto& pos = f.positional();
    if (pos.size() != 3) return kiln::Status::error("expected IN OUT.gguf TYPE, got %zu arguments (see --help)", pos.size());
    a.in = pos[0], a.out = pos[1], a.type = pos[2];
    auto mix = kiln::parse_quant_mix(a.type);
    if (!mix) return mix.status();
    a.opt.mix = mix.value();
    if (!a.imatrix_path.empty()) {
        auto im = kiln::load_imatrix(a.imatrix_path);
        if (!im) return im.status();
        a.imatrix = std::move(im.value());
        a.opt.imatrix = &a.imatrix;  // a points at its own member: Args is not moved after parse
    }
    return kiln::Status::ok();
}

kiln::Expected<kiln::GgufFile> open_input(const std::string& path) {
    return kiln::open_model_file(path);
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    std::string usage;
    if (const kiln::Status st = parse(argc, argv, &a, &usage); !st) return fail(st.message());
    if (a.help) return std::fputs(usage.c_str(), stdout), 0;
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

    uint64_t bytes = 0;
    for (const kiln::GgufTensor& t : f->tensors()) bytes += t.nbytes;
    if (a.split.max_bytes > 0 || a.split.max_tensors > 0) {
        const bool gguf = a.out.size() > 5 && a.out.compare(a.out.size() - 5, 5, ".gguf") == 0;
        auto parts = kiln::write_gguf_split(f.value(), gguf ? a.out.substr(0, a.out.size() - 5) : a.out, a.split);
        if (!parts) return fail(parts.message());
        std::fprintf(stderr, "kiln-quantize: %s -> %s ... (%zu parts; %s, %.1f MiB)\n", a.in.c_str(), parts->front().c_str(), parts->size(), a.opt.mix.name.c_str(),
                     double(bytes) / (1 << 20));
    } else {
        kiln::GgufWriter w(uint32_t(f->alignment()));
        w.add_file(f.value());
        s = w.write(a.out);
        if (!s) return fail(s.message());
        std::fprintf(stderr, "kiln-quantize: %s -> %s (%s, %.1f MiB)\n", a.in.c_str(), a.out.c_str(), a.opt.mix.name.c_str(), double(bytes) / (1 << 20));
    }

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
