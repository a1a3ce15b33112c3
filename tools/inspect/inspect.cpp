// kiln-inspect: prints a GGUF file's (or a Hugging Face checkpoint's, as read) header, metadata and tensor table (like gguf-dump).
// Usage: kiln-inspect FILE.gguf|HF_DIR [--tensors-only | --metadata-only] [--full-arrays]
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "kiln/format/gguf.h"
#include "kiln/format/gguf_split.h"
#include "flags.h"

int main(int argc, char** argv) {
    bool show_meta = true, show_tensors = true;
    size_t max_items = 8;
    kiln::cli::Flags flags("kiln-inspect FILE.gguf|HF_DIR [options]");
    flags.boolean("--tensors-only", "only the tensor table", &show_meta, false);
    flags.boolean("--metadata-only", "only the metadata", &show_tensors, false);
    flags.toggle("--full-arrays", "print every element of array values (default: the first 8)", [&] { max_items = SIZE_MAX; });
    if (const kiln::Status st = flags.parse(argc, argv, 1); !st) {
        std::fprintf(stderr, "kiln-inspect: %s\n", st.message().c_str());
        return 2;
    }
    if (flags.help_requested()) return std::fputs(flags.help().c_str(), stdout), 0;
    if (flags.positional().empty()) {
        std::fprintf(stderr, "kiln-inspect: no file given (usage: kiln-inspect FILE.gguf)\n");
        return 2;
    }
    const std::string path = flags.positional()[0];
    // A Hugging Face directory shows as the GGUF it reads as (converted metadata and names).
    auto f = kiln::open_model_file(path);
    if (!f) {
        std::fprintf(stderr, "kiln-inspect: %s\n", f.message().c_str());
        return 1;
    }
    std::printf("file: %s\nGGUF version %u, %zu metadata entries, %zu tensors, alignment %" PRIu64 ", data at offset %" PRIu64 "\n",
                path.c_str(), f->version(), f->metadata().size(), f->tensors().size(), f->alignment(), f->data_offset());
    if (show_meta) {
        std::printf("\n%-5s %-48s %-8s %s\n", "#", "key", "type", "value");
        int k = 0;
        for (const auto& [key, v] : f->metadata())
            std::printf("%-5d %-48s %-8s %s\n", k++, key.c_str(), kiln::gguf_type_name(v.type), v.to_string(max_items).c_str());
    }
    if (show_tensors) {
        std::printf("\n%-5s %-40s %-6s %-28s %14s %12s\n", "#", "tensor", "type", "shape", "offset", "bytes");
        std::map<std::string, uint64_t> bytes_by_type;
        uint64_t total = 0, params = 0;
        int k = 0;
        for (const auto& t : f->tensors()) {
            std::printf("%-5d %-40s %-6s %-28s %14" PRIu64 " %12" PRIu64 "\n", k++, t.name.c_str(), kiln::dtype_name(t.dtype),
                        t.shape_string().c_str(), f->data_offset() + t.offset, t.nbytes);
            bytes_by_type[kiln::dtype_name(t.dtype)] += t.nbytes;
            total += t.nbytes;
            params += uint64_t(t.n_elements());
        }
        std::printf("\n%" PRIu64 " parameters, %.2f MiB of tensor data (%.2f bits per weight)\n", params, total / 1048576.0,
                    params ? 8.0 * double(total) / double(params) : 0.0);
        for (const auto& [name, b] : bytes_by_type) std::printf("  %-6s %10.2f MiB\n", name.c_str(), b / 1048576.0);
    }
    return 0;
}
