// libFuzzer target for the safetensors reader: any byte string must parse or fail with a
// message, never crash or read out of bounds (built with ASan + UBSan by tools/test.sh).
#include <cstddef>
#include <cstdint>

#include "kiln/format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto f = kiln::SafetensorsFile::parse(data, size, "fuzz.safetensors");
    if (f) {
        volatile uint8_t sink = 0;  // touch every tensor's first and last byte
        for (const auto& t : f->tensors())
            if (t.nbytes) sink = sink ^ t.data[0] ^ t.data[t.nbytes - 1];
    } else if (f.message().empty()) {
        __builtin_trap();
    }
    return 0;
}
