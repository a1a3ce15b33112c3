// The interface a Session uses to run its forward pass on a device backend (Vulkan) instead
// of the CPU kernels. Built only with KILN_VULKAN=ON; otherwise create_vulkan_forward()
// returns an error saying so (src/backend.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/model.h"
#include "kiln/session.h"

namespace kiln {

class DeviceForward {
public:
    virtual ~DeviceForward() = default;
    // Runs n tokens at positions pos0.. through every layer not in `skip`, appending their
    // keys and values to the device's KV cache. rope_global / rope_local: (n, rope_dim/2, 2)
    // cos, sin tables of the chunk (rope_local only for models with a local RoPE base).
    // Writes the logits of the last n_logit_rows tokens to logits (n_logit_rows, n_vocab).
    virtual Status forward(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, int n_logit_rows,
                           float* logits) = 0;
    // As forward() with all logits, but instead of returning them compares, on the device,
    // the drafts tokens[1..n) with the model's greedy picks: *accepted = how many in a row
    // match, *next = the greedy pick after them (8 bytes come back instead of n logits rows).
    virtual Status verify_greedy(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, int* accepted,
                                 int32_t* next) = 0;
    // As verify_greedy, by rejection sampling on the device (Session::verify_sampled);
    // only called when can_verify_sampled(v).
    virtual bool can_verify_sampled(const SampledVerification& v) const = 0;
    virtual Status verify_sampled(const int32_t* tokens, int n, int pos0, const float* rope_global, const float* rope_local, const SampledVerification& v,
                                  int* accepted, int32_t* next) = 0;
    // Bytes of KV cache per position (all layers, K and V).
    virtual size_t kv_bytes_per_position() const = 0;
    // Hybrid models (recurrent layers): the state slots the next forward or verification of
    // n tokens reads and writes (RecurrentStates::plan of the one sequence): `in`, the slot
    // written after each token (-1: not kept), and whether `in` is the empty state.
    virtual void set_recurrent_plan(int /*in*/, bool /*empty*/, const std::vector<int>& /*out*/) {}
};

// Uploads the model's weights to Vulkan device options.device and allocates a KV cache of
// n_ctx positions and activations for chunks of up to n_batch tokens. Fails naming the
// architecture, tensor format or option the Vulkan backend does not support.
Expected<std::unique_ptr<DeviceForward>> create_vulkan_forward(const Model& model, const SessionOptions& options, int n_ctx, int n_batch,
                                                               const std::vector<bool>& skip_layers);

}  // namespace kiln
