// Session: buffer allocation, argument checks and chunking around forward_chunk().
#include <algorithm>
#include <chrono>
#include <cstring>

#include "cpu/r16.h"
#include "kiln/speculative.h"
#include "moe.h"
#include "session_impl.h"

namespace kiln {

Session::~Session() = default;

Expected<DType> parse_cache_type(const std::string& name) {
    for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::F32})
        if (name == dtype_name(t)) return t;
    return Status::error("'%s' is not a KV cache type (f16, bf16, q8_0, q4_0, f32)", name.c_str());
}

Expected<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Model> model, const SessionOptions& o) {
    if (!model) return Status::error("Session::create: no model");
    const ModelConfig& c = model->config();
    if (o.n_ctx < 0) return Status::error("context size %d is negative", o.n_ctx);
    if (o.n_batch < 1) return Status::error("batch size %d must be >= 1", o.n_batch);
    const int n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min(c.n_ctx_train, 4096);
    if (n_ctx > (1 << 22)) return Status::error("context size %d is too large", n_ctx);

    std::unique_ptr<Session> s(new Session());
    s->model_ = std::move(model);
    s->n_ctx_ = n_ctx;
    s->pool_ = o.pool ? o.pool : std::make_shared<ThreadPool>(o.n_threads, o.pin_threads);
    s->impl_ = std::make_unique<Impl>();
    Impl& m = *s->impl_;
    m.kt = &cpu::active();
    if (o.isa) {
        const cpu::KernelTable* t = nullptr;
        for (cpu::Isa i : {cpu::Isa::Generic, cpu::Isa::Avx2, cpu::Isa::Avx512})
            if (!std::strcmp(o.isa, cpu::isa_name(i))) t = cpu::table_for(i);
        if (!t) return Status::error("CPU kernels '%s' are unknown or not supported by this CPU", o.isa);
        m.kt = t;
    }
    m.n_batch = std::min(o.n_batch, n_ctx);
    m.read_ahead = o.read_ahead;
    m.tune_decode = o.decode_tuning && m.kt->decode_variants() > 1;
    m.tuner = DecodeTuner(m.kt->decode_variants());
    m.skip.assign(size_t(c.n_layer), false);
    for (int il : o.skip_layers) {
        if (il < 0 || il >= c.n_layer) return Status::error("skipped layer %d is outside [0, %d)", il, c.n_layer);
        m.skip[size_t(il)] = true;
    }

    const size_t B = size_t(m.n_batch), E = size_t(c.n_embd);
    m.rope_cs.resize(2 * B * size_t(c.rope_dim / 2) * 2);
    m.rope_freqs.assign(size_t(c.rope_dim / 2), 1.0f);
    const Weights& w = s->model_->weights();
    if (!w.rope_freqs.empty()) std::memcpy(m.rope_freqs.data(), w.rope_freqs.data, sizeof(float) * m.rope_freqs.size());
    if (!o.logit_tokens.empty()) {
        if (o.backend == Backend::Vulkan) return Status::error("a trimmed output head (logit_tokens) runs on the CPU backend only");
        std::vector<int32_t> tokens = o.logit_tokens;
        std::sort(tokens.begin(), tokens.end());
        tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
        if (tokens.front() < 0 || tokens.back() >= c.n_vocab)
            return Status::error("logit_tokens: token id %d is outside the vocabulary [0, %d)", tokens.front() < 0 ? tokens.front() : tokens.back(), c.n_vocab);
        const size_t R = cpu::kR16Rows, rb = w.output.row_size();
        const size_t cap = std::min((tokens.size() + Impl::kHeadGrowth + R - 1) / R * R, size_t(c.n_vocab) / R * R + R);
        m.head_rows.resize(cap * rb);
        std::memset(m.head_rows.data, 0, cap * rb);  // zero rows: logits of 0 that nobody reads
        m.head = w.output;
        m.head.data = m.head_rows.data;
        m.head.ne[2] = m.head.ne[3] = 1;
        m.head.packed = nullptr;
        if (w.output.packed && cpu::r16_supported(m.head.dtype, int64_t(cap))) {  // as the model's own head, for the same kernels
            const size_t group = cpu::r16_group_bytes(m.head.dtype, m.head.cols());
            m.head_packed.resize(cap / R * group);  // filled by add_logit_tokens
            m.head.packed = m.head_packed.data;
            m.head.packed_group_bytes = group;
        }
        m.head_logits.resize(size_t(m.n_batch) * cap);
        m.in_head.assign(size_t(c.n_vocab), 0);
        s->add_logit_tokens(tokens);
    }
    if (o.backend == Backend::Vulkan) {
        auto device = create_vulkan_forward(*s->model_, o, n_ctx, m.n_batch, m.skip);
        if (!device) return device.status();
        m.device = std::move(device.value());
        return s;
    }

    KILN_TRY(m.kv.allocate(c, n_ctx, o.type_k, o.type_v, o.kv_hadamard));
    m.kv.to_f16 = m.kt->f32_to_f16;
    KILN_TRY(m.attn_scratch.allocate(c, m.n_batch, s->pool_->size(), o.type_k));

    const size_t qdim = size_t(c.n_head) * c.head_dim, kdim = size_t(c.n_head_kv) * c.head_dim, vdim = size_t(c.n_head_kv) * c.head_dim_v;
    const size_t odim = size_t(c.n_head) * c.head_dim_v, F = size_t(std::max({c.n_ff, c.n_ff_exp, c.n_ff_shexp, 1}));
    m.x.resize(B * E);
    m.xn.resize(B * E);
    m.q.resize(B * qdim);
    m.k.resize(B * kdim);
    m.v.resize(B * vdim);
    m.attn.resize(B * odim);
    m.proj.resize(B * E);
    m.gate.resize(B * F);
    m.up.resize(B * F);
    // Quantized activations: the widest input of any matmul, in the larger format.
    const int64_t kmax = int64_t(std::max({E, odim, F}));
    // Room for both quantized formats at once (a linear_group whose matrices need both).
    m.act.resize(B * (cpu::act_row_bytes(cpu::ActFormat::Q8x32, kmax) + cpu::act_row_bytes(cpu::ActFormat::Q8K, (kmax + 255) / 256 * 256)) + 256);
    if (!m.x.data || !m.gate.data || !m.act.data) return Status::error("out of memory allocating scratch buffers");
    if (c.is_moe()) KILN_TRY(moe_init(m, *s->model_, o.n_expert_used, m.n_batch));
    else if (o.n_expert_used > 0) return Status::error("%s: --experts-per-token given, but the model has no experts", s->model_->gguf().path().c_str());
    return s;
}

Status Session::check_tokens(std::span<const int32_t> tokens) const {
    const ModelConfig& c = model_->config();
    const int n = int(tokens.size());
    if (tokens.empty()) return Status::error("forward: no tokens");
    if (tokens.size() > size_t(n_ctx_) || n_past_ + n > n_ctx_) {
        return Status::error("context full: %d tokens in the cache + %zu new exceed the context size of %d (use a larger --ctx)",
                             n_past_, tokens.size(), n_ctx_);
    }
    for (int i = 0; i < n; ++i)
        if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= c.n_vocab) return Status::error("token id %d at index %d is outside the vocabulary [0, %d)", tokens[size_t(i)], i, c.n_vocab);
    return Status::ok();
}

Status Session::verify_on_device(const char* what, std::span<const int32_t> batch, const std::function<Status(const float* rope_local)>& verify) {
    const int n = int(batch.size());
    if (n > impl_->n_batch) return Status::error("%s: %d tokens exceed the batch size %d", what, n, impl_->n_batch);
    const float* rope_local = impl_->fill_rope(model_->config(), n_past_, n);
    n_logits_ = 0;
    KILN_TRY(verify(rope_local));
    n_past_ += n;
    return Status::ok();
}

Status Session::verify_greedy(std::span<const int32_t> batch, int* accepted, int32_t* next) {
    KILN_TRY(check_tokens(batch));
    const int n = int(batch.size());
    const ModelConfig& c = model_->config();
    if (impl_->device)
        return verify_on_device("verify_greedy", batch, [&](const float* rope_local) {
            return impl_->device->verify_greedy(batch.data(), n, n_past_, impl_->rope_cs(), rope_local, accepted, next);
        });
    KILN_TRY(forward(batch, /*all_logits=*/true));
    // Greedy = the lowest index of the largest logit, as Sampler and argmax.comp pick.
    auto pick = [&](int i) { return int32_t(std::max_element(logits(i), logits(i) + c.n_vocab) - logits(i)); };
    int m = 0;
    while (m < n - 1 && pick(m) == batch[size_t(m) + 1]) ++m;
    *accepted = m;
    *next = pick(m);
    return Status::ok();
}

Status Session::verify_sampled(std::span<const int32_t> batch, const SampledVerification& v, int* accepted, int32_t* next) {
    KILN_TRY(check_tokens(batch));
    const size_t n = batch.size();
    if (v.penalized.size() != n || v.q.size() + 1 != n || v.u.size() != 2 * n)
        return Status::error("verify_sampled: %zu tokens need %zu penalty lists, %zu draft distributions and %zu uniforms (got %zu, %zu, %zu)", n, n, n - 1,
                             2 * n, v.penalized.size(), v.q.size(), v.u.size());
    if (impl_->device && impl_->device->can_verify_sampled(v))
        return verify_on_device("verify_sampled", batch, [&](const float* rope_local) {
            return impl_->device->verify_sampled(batch.data(), int(n), n_past_, impl_->rope_cs(), rope_local, v, accepted, next);
        });
    KILN_TRY(forward(batch, /*all_logits=*/true));
    verify_sampled_rows(v, batch, logits(0), model_->config().n_vocab, accepted, next);
    return Status::ok();
}

Status Session::forward(std::span<const int32_t> tokens, bool all_logits) {
    KILN_TRY(check_tokens(tokens));
    const int n = int(tokens.size());
    n_logits_ = 0;
    const bool tuned = impl_->tune_decode && n == 1;
    impl_->decode_variant = tuned ? impl_->tuner.next() : 0;
    const auto t0 = tuned ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    for (int done = 0; done < n;) {
        const int chunk = std::min(impl_->n_batch, n - done);
        const Status st = forward_chunk(tokens.data() + done, chunk, all_logits, done + chunk == n);
        pool_->settle();  // no worker still reading ahead into the weights once we return
        KILN_TRY(st);
        done += chunk;
    }
    if (tuned) impl_->tuner.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return Status::ok();
}

const float* Session::logits(int i) const {
    if (n_logits_ == 0) return nullptr;
    if (i < 0) i = n_logits_ - 1;
    if (i >= n_logits_) return nullptr;
    return logits_.data() + size_t(i) * size_t(model_->config().n_vocab);
}

size_t Session::kv_bytes_per_position() const {
    if (impl_->device) return impl_->device->kv_bytes_per_position();
    return impl_->kv.bytes() / size_t(impl_->kv.n_ctx);
}

int Session::add_logit_tokens(std::span<const int32_t> tokens) {
    Impl& m = *impl_;
    if (m.in_head.empty()) return 0;
    const TensorView& output = model_->weights().output;
    const size_t rb = output.row_size(), cap = m.head_rows.size / rb, R = cpu::kR16Rows, first = m.head_tokens.size();
    for (int32_t t : tokens) {
        if (t < 0 || size_t(t) >= m.in_head.size() || m.in_head[size_t(t)] || m.head_tokens.size() == cap) continue;
        std::memcpy(m.head_rows.data + m.head_tokens.size() * rb, output.row(t), rb);
        m.in_head[size_t(t)] = 1;
        m.head_tokens.push_back(t);
    }
    const size_t last = m.head_tokens.size();
    if (m.head.packed && last > first)  // the 16-row groups the new rows fall in, repacked
        cpu::r16_repack(m.head.dtype, m.head_rows.data + first / R * R * rb, rb, int64_t((last + R - 1) / R * R - first / R * R), m.head.cols(),
                        m.head_packed.data + first / R * m.head.packed_group_bytes);
    m.head.ne[1] = int64_t((last + R - 1) / R * R);
    return int(last - first);
}

Status Session::truncate(int n_keep) {
    if (n_keep < 0 || n_keep > n_past_) return Status::error("truncate(%d): must be within [0, %d]", n_keep, n_past_);
    n_past_ = n_keep;  // entries past n_past are never read and get overwritten
    return Status::ok();
}

}  // namespace kiln
