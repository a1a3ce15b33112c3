// Helpers of the Vulkan test suites: one device (tools/test.sh selects lavapipe, the CPU
// Vulkan driver, through VK_ICD_FILENAMES), buffers filled from and read into vectors.
#pragma once

#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "test_util.h"
#include "vulkan/buffer.h"
#include "vulkan/commands.h"
#include "vulkan/context.h"
#include "vulkan/ops.h"

namespace kiln::test {

struct VulkanFixture {
    std::shared_ptr<vulkan::Context> ctx;
    std::unique_ptr<vulkan::Recorder> rec;
    std::unique_ptr<vulkan::Ops> ops;

    VulkanFixture() {
        auto c = vulkan::Context::create(0);
        REQUIRE_MESSAGE(c.is_ok(), c.message());
        ctx = c.value();
        auto r = vulkan::Recorder::create(*ctx);
        REQUIRE_MESSAGE(r.is_ok(), r.message());
        rec = std::move(r.value());
        ops = std::make_unique<vulkan::Ops>(ctx);
    }

    // A device-local buffer holding `data`.
    template <class T>
    vulkan::Buffer buffer(const std::vector<T>& data) {
        auto b = vulkan::Buffer::create(*ctx, data.size() * sizeof(T), vulkan::Memory::DeviceLocal);
        REQUIRE_MESSAGE(b.is_ok(), b.message());
        REQUIRE(vulkan::upload(*ctx, b.value(), 0, data.data(), data.size() * sizeof(T)).is_ok());
        return std::move(b.value());
    }
    // A device-local buffer of n floats, NaN-filled so an unwritten element fails.
    vulkan::Buffer nan_buffer(size_t n) { return buffer(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN())); }

    template <class T>
    std::vector<T> read(const vulkan::Buffer& b, size_t n) {
        std::vector<T> out(n);
        REQUIRE(vulkan::download(*ctx, b, 0, out.data(), n * sizeof(T)).is_ok());
        return out;
    }
    // Records what `fn` dispatches, runs it and waits.
    template <class Fn>
    void run(Fn&& fn) {
        rec->begin();
        fn(*rec);
        REQUIRE(rec->submit_and_wait().is_ok());
    }
};

}  // namespace kiln::test
