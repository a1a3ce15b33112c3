// Session: buffer allocation, argument checks and chunking around forward_chunk().
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "cpu/r16.h"
#include "kiln/speculative.h"
#include "cpu/moe.h"
#include "cpu/session_impl.h"
#include "kiln/format/gguf.h"
#include "speculative/verification.h"

namespace kiln {

namespace {

// Hybrid models on a device: the state slots a chunk of its one sequence at pos0 reads and
// writes (in s.rec_plans), told to the device; commit() them once it ran. nullptr for
// attention-only models.
const RecurrentStates::Plan* plan_on_device(SessionState& s, DeviceForward& d, int pos0, int n) {
    if (s.rec.empty()) return nullptr;
    s.rec_plans.assign(1, s.rec.plan(0, pos0, n));
    d.set_recurrent_plan(s.rec_plans[0].in, pos0 == 0, s.rec_plans[0].out);
    return &s.rec_plans[0];
}

// A Vulkan device runs the chunks (src/vulkan/forward.cpp): one sequence, the logits of a
// chunk's last rows; the host computes the RoPE tables.
class DeviceRunner final : public ChunkRunner {
public:
    DeviceRunner(SessionState& s, const Model& m, std::unique_ptr<DeviceForward> d) : s_(s), m_(m), device_(std::move(d)) {}
    DeviceForward* device() override { return device_.get(); }
    size_t kv_bytes_per_position() const override { return device_->kv_bytes_per_position(); }

    Status check(const Batch& b) const override {
        const size_t n = b.token.size();
        for (size_t i0 = 0; i0 < n; i0 += size_t(s_.n_batch))
            for (size_t i = i0 + 1; i < std::min(n, i0 + size_t(s_.n_batch)); ++i)
                if (b.logits[i - 1] && !b.logits[i]) return Status::error("batch token %zu: on the Vulkan backend the tokens with logits end each chunk", i);
        return Status::ok();
    }

    Status forward(const Batch& batch, int i0, int n, LogitsOut& out) override {
        const float* rope_local = s_.fill_rope(m_.config(), batch.pos.data() + i0, n);
        int rows = 0;
        for (int i = 0; i < n; ++i) rows += batch.logits[size_t(i0 + i)];
        const int first = out.append(rows);
        for (int i = 0, r = first; i < n; ++i)
            if (batch.logits[size_t(i0 + i)]) out.row_of[size_t(i0 + i)] = r++;
        const RecurrentStates::Plan* plan = plan_on_device(s_, *device_, batch.pos[size_t(i0)], n);
        KILN_TRY(device_->forward(batch.token.data() + i0, n, batch.pos[size_t(i0)], s_.rope_cs(), rope_local, rows, out.row(first)));
        if (plan) s_.rec.commit(*plan);
        return Status::ok();
    }


private:
    SessionState& s_;
    const Model& m_;
    std::unique_ptr<DeviceForward> device_;
};

// SessionOptions::kv_hadamard resolved for the CPU cache: Auto rotates quantized caches
// whose heads are powers of two (the transform's sizes), as llama.cpp does.
bool rotate_kv(const SessionOptions& o, const ModelConfig& c) {
    if (o.kv_hadamard != KvHadamard::Auto) return o.kv_hadamard == KvHadamard::On;
    auto quantized = [](DType t) { return t == DType::Q8_0 || t == DType::Q4_0; };
    return (quantized(o.type_k) || quantized(o.type_v)) && cpu::is_power_of_two(c.head_dim) && cpu::is_power_of_two(c.head_dim_v);
}

}  // namespace

std::unique_ptr<ChunkRunner> make_device_runner(SessionState& s, const Model& model, std::unique_ptr<DeviceForward> device) {
    return std::make_unique<DeviceRunner>(s, model, std::move(device));
}

Session::~Session() = default;

int Session::n_threads() const { return pool_->size(); }

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
    if (o.n_seq_max < 1 || o.n_seq_max > 4096) return Status::error("n_seq_max %d is outside [1, 4096]", o.n_seq_max);
    if (o.backend == Backend::Vulkan && o.n_seq_max > 1) return Status::error("the Vulkan backend runs one sequence (n_seq_max 1), not %d", o.n_seq_max);
    const int n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min(c.n_ctx_train, 4096);
    if (n_ctx > (1 << 22)) return Status::error("context size %d is too large", n_ctx);

    std::unique_ptr<Session> s(new Session());
    s->model_ = std::move(model);
    s->n_ctx_ = n_ctx;
    s->pool_ = o.pool ? o.pool : std::make_shared<ThreadPool>(o.n_threads, o.pin_threads);
    s->impl_ = std::make_unique<SessionState>();
    SessionState& m = *s->impl_;
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
    if (const auto& sec = c.rope_sections; sec[0] + sec[1] + sec[2] + sec[3] > 0) {
        // Interleaved M-RoPE (Qwen3.5) on text: pairs take the temporal, height or width
        // position in turn (all the token's position), or the extra one (0: no rotation;
        // an infinite divisor gives angle 0). ggml's ggml_mrope_cache_init, is_imrope.
        const int dims = sec[0] + sec[1] + sec[2] + sec[3];
        for (int p = 0; p < c.rope_dim / 2; ++p) {
            const int sector = p % dims;
            const bool text = (sector % 3 == 1 && sector < 3 * sec[1]) || (sector % 3 == 2 && sector < 3 * sec[2]) || (sector % 3 == 0 && sector < 3 * sec[0]);
            if (!text) m.rope_freqs[size_t(p)] = INFINITY;
        }
    }
    if (!o.logit_tokens.empty()) {
        if (o.backend == Backend::Vulkan) return Status::error("a trimmed output head (logit_tokens) runs on the CPU backend only");
        std::vector<int32_t> tokens = o.logit_tokens;
        std::sort(tokens.begin(), tokens.end());
        tokens.erase(std::unique(tokens.begin(), tokens.end()), tokens.end());
        if (tokens.front() < 0 || tokens.back() >= c.n_vocab)
            return Status::error("logit_tokens: token id %d is outside the vocabulary [0, %d)", tokens.front() < 0 ? tokens.front() : tokens.back(), c.n_vocab);
        const size_t R = cpu::kR16Rows, rb = w.output.row_size();
        const size_t cap = std::min((tokens.size() + SessionState::kHeadGrowth + R - 1) / R * R, size_t(c.n_vocab) / R * R + R);
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
        m.runner = make_device_runner(m, *s->model_, std::move(device.value()));
        m.kv.seqs.reset((n_ctx + kKvPage - 1) / kKvPage, 1);  // the device holds the data; this tracks the positions
        KILN_TRY(m.rec.allocate(c, 1, o.recurrent_rollback, /*with_data=*/false));  // and the recurrent states' slots
        return s;
    }

    KILN_TRY(m.kv.allocate(c, n_ctx, o.type_k, o.type_v, rotate_kv(o, c), o.n_seq_max));
    KILN_TRY(m.rec.allocate(c, o.n_seq_max, o.recurrent_rollback));
    m.kv.to_f16 = m.kt->f32_to_f16;
    KILN_TRY(m.attn_scratch.allocate(c, m.n_batch, s->pool_->size(), o.type_k));
    m.runner = make_cpu_runner(m, *s->pool_, *s->model_);

    const size_t qdim = size_t(c.n_head) * c.head_dim, kdim = size_t(c.n_head_kv) * c.head_dim, vdim = size_t(c.n_head_kv) * c.head_dim_v;
    const size_t odim = size_t(c.n_head) * c.head_dim_v, F = size_t(std::max({c.n_ff, c.n_ff_exp, c.n_ff_shexp, 1}));
    m.x.resize(B * E);
    m.xn.resize(B * E);
    m.q.resize(B * qdim);
    m.k.resize(B * kdim);
    m.v.resize(B * vdim);
    m.attn.resize(B * std::max(odim, size_t(c.ssm_v_dim())));
    m.proj.resize(B * E);
    m.gate.resize(B * F);
    m.up.resize(B * F);
    // Quantized activations: the widest input of any matmul, in the larger format.
    const int64_t kmax = int64_t(std::max({E, odim, F, size_t(c.ssm_v_dim())}));
    // Room for both quantized formats at once (a linear_group whose matrices need both).
    m.act.resize(B * (cpu::act_row_bytes(cpu::ActFormat::Q8x32, kmax) + cpu::act_row_bytes(cpu::ActFormat::Q8K, (kmax + 255) / 256 * 256)) + 256);
    if (c.attn_output_gate) m.qg.resize(B * qdim * 2);
    if (c.is_hybrid()) {
        const size_t C = size_t(c.ssm_conv_channels()), Vd = size_t(c.ssm_v_dim()), Hv = size_t(c.ssm_v_heads);
        m.mix.resize(B * C), m.conv.resize(B * C), m.z.resize(B * Vd), m.alpha.resize(B * Hv), m.beta.resize(B * 2 * Hv);
        m.rec_scratch.resize(size_t(s->pool_->size()) * size_t(c.ssm_state) * size_t(c.ssm_state));
        if (!m.conv.data || !m.rec_scratch.data) return Status::error("out of memory allocating scratch buffers");
    }
    if (!m.x.data || !m.gate.data || !m.act.data) return Status::error("out of memory allocating scratch buffers");
    if (c.is_moe()) KILN_TRY(moe_init(m, *s->model_, o.n_expert_used, m.n_batch));
    else if (o.n_expert_used > 0) return Status::error("%s: SessionOptions::n_expert_used given, but the model has no experts", s->model_->gguf().path().c_str());
    return s;
}

Status Session::check_tokens(std::span<const int32_t> tokens) const {
    const ModelConfig& c = model_->config();
    if (tokens.empty()) return Status::error("forward: no tokens");
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= c.n_vocab) return Status::error("token id %d at index %zu is outside the vocabulary [0, %d)", tokens[i], i, c.n_vocab);
    return Status::ok();
}

Status Session::check_batch(const Batch& b, std::vector<std::pair<int, int>>* appends) const {
    const size_t n = b.token.size();
    if (b.seq.size() != n || b.pos.size() != n || b.logits.size() != n)
        return Status::error("batch: %zu tokens but %zu sequence ids, %zu positions, %zu logits flags", n, b.seq.size(), b.pos.size(), b.logits.size());
    KILN_TRY(check_tokens(b.token));
    std::vector<int> added(size_t(n_seq_max()), 0);  // (n_seq_max) tokens of each sequence so far
    for (size_t i = 0; i < n; ++i) {
        const int seq = b.seq[i];
        if (seq < 0 || seq >= n_seq_max()) return Status::error("batch token %zu: sequence id %d is outside [0, %d) (SessionOptions::n_seq_max)", i, seq, n_seq_max());
        const int want = seq_length(seq) + added[size_t(seq)]++;
        if (b.pos[i] != want) return Status::error("batch token %zu: position %d, but sequence %d continues at %d", i, b.pos[i], seq, want);
    }
    for (int seq = 0; seq < n_seq_max(); ++seq)
        if (seq_length(seq) + added[size_t(seq)] > n_ctx_)
            return Status::error("context full: sequence %d holds %d tokens, %d new exceed the context size of %d (SessionOptions::n_ctx)", seq, seq_length(seq),
                                 added[size_t(seq)], n_ctx_);
    KILN_TRY(impl_->runner->check(b));
    appends->clear();
    for (int seq = 0; seq < n_seq_max(); ++seq)
        if (added[size_t(seq)] > 0) appends->push_back({seq, added[size_t(seq)]});
    return Status::ok();
}

Status Session::verify_on_device(const char* what, std::span<const int32_t> batch, const std::function<Status(const float* rope_local)>& verify) {
    const int n = int(batch.size());
    if (n > impl_->n_batch) return Status::error("%s: %d tokens exceed the batch size %d", what, n, impl_->n_batch);
    Batch b;  // sequence 0, as forward(batch, true) would run it: the same checks
    for (int i = 0; i < n; ++i) b.add(batch[size_t(i)], 0, n_past() + i, true);
    std::vector<std::pair<int, int>> appends;  // {(0, n)}
    KILN_TRY(check_batch(b, &appends));
    const float* rope_local = impl_->fill_rope(model_->config(), b.pos.data(), n);
    n_logits_ = 0;
    logits_row_.clear();
    const int before = n_past();
    KILN_TRY(impl_->kv.reserve(appends));
    const RecurrentStates::Plan* plan = plan_on_device(*impl_, *impl_->runner->device(), before, n);  // hybrid models' state slots
    const Status st = verify(rope_local);
    if (!st.is_ok()) impl_->kv.seqs.truncate(0, before);
    else if (plan) impl_->rec.commit(*plan);
    return st;
}

Status Session::verify_greedy(std::span<const int32_t> batch, int* accepted, int32_t* next) {
    KILN_TRY(check_tokens(batch));
    const int n = int(batch.size());
    const ModelConfig& c = model_->config();
    if (DeviceForward* device = impl_->runner->device())  // the comparison runs on the device
        return verify_on_device("verify_greedy", batch, [&](const float* rope_local) {
            return device->verify_greedy(batch.data(), n, n_past() - n, impl_->rope_cs(), rope_local, accepted, next);
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
    if (DeviceForward* device = impl_->runner->device(); device && device->can_verify_sampled(v))
        return verify_on_device("verify_sampled", batch, [&](const float* rope_local) {
            return device->verify_sampled(batch.data(), int(n), n_past() - int(n), impl_->rope_cs(), rope_local, v, accepted, next);
        });
    KILN_TRY(forward(batch, /*all_logits=*/true));
    verify_sampled_rows(v, batch, logits(0), model_->config().n_vocab, accepted, next);
    return Status::ok();
}

Status Session::forward(std::span<const int32_t> tokens, bool all_logits) {
    Batch b;  // sequence 0; logits of every token, or of the last
    for (size_t i = 0; i < tokens.size(); ++i) b.add(tokens[i], 0, n_past() + int(i), all_logits || i + 1 == tokens.size());
    return decode(b);
}

Status Session::decode(const Batch& batch) {
    std::vector<std::pair<int, int>> appends;  // (sequences in the batch) (sequence, tokens)
    KILN_TRY(check_batch(batch, &appends));
    const int n = batch.size();
    std::vector<std::pair<int, int>> before;  // (sequences in the batch) (sequence, length), to undo a failed pass
    for (auto [seq, count] : appends) before.push_back({seq, seq_length(seq)});
    KILN_TRY(impl_->kv.reserve(appends));
    for (auto [seq, count] : appends) impl_->rec.pin(seq);  // the states before this call stay, to undo it
    struct Unpin {
        SessionState& m;
        const std::vector<std::pair<int, int>>& seqs;
        ~Unpin() { for (auto [seq, count] : seqs) m.rec.unpin(seq); }
    } unpin{*impl_, appends};
    n_logits_ = 0;
    logits_row_.assign(size_t(n), -1);
    const bool tuned = impl_->tune_decode && n == 1;
    impl_->decode_variant = tuned ? impl_->tuner.next() : 0;
    const auto t0 = tuned ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    for (int done = 0; done < n;) {
        const int chunk = std::min(impl_->n_batch, n - done);
        const bool stop = cancel_ && cancel_->load(std::memory_order_relaxed);
        const Status st = stop ? Status::error("cancelled after %d of %d tokens", done, n) : forward_chunk(batch, done, chunk);
        pool_->settle();  // no worker still reading ahead into the weights once we return
        if (!st.is_ok()) {
            for (auto [seq, length] : before) impl_->kv.seqs.truncate(seq, length), impl_->rec.truncate(seq, length);
            n_logits_ = 0;
            return st;
        }
        done += chunk;
    }
    if (tuned) impl_->tuner.record(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return Status::ok();
}

Status Session::forward_chunk(const Batch& batch, int i0, int n) {
    LogitsOut out{logits_, n_logits_, logits_row_, model_->config().n_vocab};
    return impl_->runner->forward(batch, i0, n, out);
}

Status Session::set_activation_observer(ActivationObserver* o) {
    if (o && impl_->runner->device()) return Status::error("activation observers (importance matrices) run on the CPU backend only, not on Vulkan");
    impl_->observer = o;
    return Status::ok();
}

const float* Session::logits(int i) const {
    if (n_logits_ == 0) return nullptr;
    if (i < 0) i = n_logits_ - 1;
    if (i >= n_logits_) return nullptr;
    return logits_.data() + size_t(i) * size_t(model_->config().n_vocab);
}

const float* Session::batch_logits(int i) const {
    if (i < 0 || size_t(i) >= logits_row_.size() || logits_row_[size_t(i)] < 0) return nullptr;
    return logits(logits_row_[size_t(i)]);
}

int Session::seq_length(int seq) const { return seq >= 0 && seq < n_seq_max() ? impl_->kv.seqs.length(seq) : 0; }
int Session::n_seq_max() const { return impl_->kv.seqs.n_seq(); }
bool Session::seq_can_keep(int seq, int n) const {
    if (seq < 0 || seq >= n_seq_max() || n < 0 || n > seq_length(seq)) return false;
    return impl_->rec.empty() || impl_->rec.can_keep(seq, n);
}

int Session::free_positions() const { return impl_->kv.seqs.free_pages() * kKvPage; }

Status Session::seq_truncate(int seq, int n_keep) {
    if (seq < 0 || seq >= n_seq_max()) return Status::error("sequence id %d is outside [0, %d) (SessionOptions::n_seq_max)", seq, n_seq_max());
    if (n_keep < 0 || n_keep > seq_length(seq)) return Status::error("truncate sequence %d to %d: must be within [0, %d]", seq, n_keep, seq_length(seq));
    if (!seq_can_keep(seq, n_keep))
        return Status::error("truncate sequence %d from %d to %d tokens: this hybrid model's recurrent state goes back at most %d tokens (SessionOptions::recurrent_rollback), or to 0",
                             seq, seq_length(seq), n_keep, impl_->rec.rollback());
    impl_->kv.seqs.truncate(seq, n_keep);  // entries past the length are never read and get overwritten
    impl_->rec.truncate(seq, n_keep);
    return Status::ok();
}

Status Session::seq_fork(int src, int dst, int n) {
    for (int seq : {src, dst})
        if (seq < 0 || seq >= n_seq_max()) return Status::error("sequence id %d is outside [0, %d) (SessionOptions::n_seq_max)", seq, n_seq_max());
    if (n < 0) n = seq_length(src);
    if (src == dst) return Status::error("fork: source and destination are both sequence %d", src);
    if (n > seq_length(src)) return Status::error("fork: sequence %d holds %d positions, not %d", src, seq_length(src), n);
    if (!seq_can_keep(src, n))
        return Status::error("fork: sequence %d's first %d of %d tokens: this hybrid model's recurrent state goes back at most %d tokens (SessionOptions::recurrent_rollback), or to 0",
                             src, n, seq_length(src), impl_->rec.rollback());
    impl_->kv.seqs.fork(src, dst, n);
    impl_->rec.fork(src, dst, n);
    return Status::ok();
}

size_t Session::kv_bytes_per_position() const {
    return impl_->runner->kv_bytes_per_position();
}

int Session::add_logit_tokens(std::span<const int32_t> tokens) {
    SessionState& m = *impl_;
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

}  // namespace kiln
