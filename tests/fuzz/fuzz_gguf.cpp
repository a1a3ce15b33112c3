// libFuzzer target for the GGUF reader: any byte string must parse or fail with a
// message, never crash or read out of bounds (built with ASan + UBSan by tools/test.sh).
#include <cstddef>
#include <cstdint>

#include "kiln/format/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto f = kiln::GgufFile::parse(data, size, "fuzz.gguf");
    if (f) {
        // Touch what a loader would: every value rendering and every tensor's bytes.
        for (const auto& [key, v] : f->metadata()) (void)v.to_string(4);
        volatile uint8_t sink = 0;
        for (const auto& t : f->tensors())
            if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    } else if (f.message().empty()) {
        __builtin_trap();
    }
    return 0;
}
