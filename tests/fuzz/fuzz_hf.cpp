// libFuzzer target for the Hugging Face checkpoint reader: the input becomes config.json,
// tokenizer.json or tokenizer_config.json (first byte picks which) of a small checkpoint
// whose other files are valid; reading it must succeed or fail with a message, never crash
// (built with ASan + UBSan by tools/test.sh).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "kiln/format/hf_checkpoint.h"

namespace {

const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1, "num_attention_heads": 2,
 "hidden_size": 32, "intermediate_size": 64, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})";
const char* kTokenizer = R"({"added_tokens": [{"id": 3, "content": "<s>", "special": true}],
 "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "use_regex": true}]},
 "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}})";
const char* kTokenizerConfig = R"({"bos_token": "<s>", "add_bos_token": true, "chat_template": "{{ messages }}"})";

void write(const std::string& path, const void* data, size_t size) {
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(static_cast<const char*>(data), std::streamsize(size));
}

// A per-process directory with the valid files and a one-tensor model.safetensors.
const std::string& checkpoint_dir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/kiln-fuzz-hf-XXXXXX";
        if (!mkdtemp(tmpl)) std::abort();
        const std::string header = R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[4,32],"data_offsets":[0,512]}})";
        std::string st(8, '\0');
        const uint64_t len = header.size();
        for (int i = 0; i < 8; ++i) st[size_t(i)] = char((len >> (8 * i)) & 0xff);
        st += header + std::string(512, '\0');
        write(std::string(tmpl) + "/model.safetensors", st.data(), st.size());
        return std::string(tmpl);
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const std::string& dir = checkpoint_dir();
    const char* files[3] = {"config.json", "tokenizer.json", "tokenizer_config.json"};
    const char* valid[3] = {kConfig, kTokenizer, kTokenizerConfig};
    const int target = data[0] % 3;
    for (int i = 0; i < 3; ++i) {
        const std::string path = dir + "/" + files[i];
        if (i == target) write(path, data + 1, size - 1);
        else write(path, valid[i], std::char_traits<char>::length(valid[i]));
    }
    auto f = kiln::open_hf_checkpoint(dir);
    if (!f && f.message().empty()) __builtin_trap();
    return 0;
}
