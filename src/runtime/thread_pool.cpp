#include "kiln/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#define KILN_PAUSE() _mm_pause()
#else
#define KILN_PAUSE() ((void)0)
#endif

namespace kiln {

namespace {
// About 0.5 ms of spinning on Zen 4 (PAUSE is ~65 cycles) before a worker sleeps: longer
// than the gaps between the jobs of one forward pass, far shorter than between requests.
constexpr int kSpinIterations = 20000;

void pin_to_core(int core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// One load per cache line; the hardware prefetcher sees the stream and runs ahead of it.
void warm_cache(WarmRange r) {
    const auto* p = static_cast<const uint8_t*>(r.p);
    uint64_t sink = 0;
    for (size_t i = 0; i < r.bytes; i += 64) sink += *reinterpret_cast<const volatile uint64_t*>(p + i);
    asm volatile("" ::"r"(sink));
}

uint64_t pack(uint32_t gen, uint32_t n_chunks, uint32_t next) { return uint64_t(gen) << 32 | uint64_t(n_chunks) << 16 | next; }
uint32_t gen_of(uint64_t w) { return uint32_t(w >> 32); }

// A share's word: the job's generation (low 20 bits, so a thread still looking at a
// finished job cannot claim from the next one's shares) and the unclaimed [front, back).
constexpr int64_t kMaxShareGrains = (int64_t(1) << 22) - 1;
uint64_t share_word(uint32_t gen, int64_t front, int64_t back) { return uint64_t(gen & 0xfffff) << 44 | uint64_t(front) << 22 | uint64_t(back); }
uint32_t share_gen(uint64_t w) { return uint32_t(w >> 44); }
int64_t share_front(uint64_t w) { return int64_t(w >> 22) & kMaxShareGrains; }
int64_t share_back(uint64_t w) { return int64_t(w) & kMaxShareGrains; }
}  // namespace

int default_thread_count() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int n_threads, bool pin)
    : n_threads_(std::min(n_threads > 0 ? n_threads : default_thread_count(), 1024)),
      shares_(new Share[size_t(n_threads_)]) {  // before the workers: one still leaving a job may look at them
    if (pin) pin_to_core(0);
    for (int i = 1; i < n_threads_; ++i) {
        workers_.emplace_back([this, i, pin] {
            if (pin) pin_to_core(i % default_thread_count());
            worker_loop(i);
        });
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true);
        work_.store(pack(generation_ + 1, 0, 0));
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

// Claims and runs chunks of generation `gen` until none are left.
void ThreadPool::run_chunks(int thread_index, uint32_t gen) {
    uint64_t w = work_.load(std::memory_order_acquire);
    for (;;) {
        const uint32_t n_chunks = uint32_t(w >> 16) & 0xffff, next = uint32_t(w) & 0xffff;
        if (gen_of(w) != gen || next >= n_chunks) return;
        if (!work_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
        // The chunk is ours: the job cannot change until done_ counts it.
        const int64_t g0 = n_grains_ * next / n_chunks, g1 = n_grains_ * (next + 1) / n_chunks;
        const int64_t b = g0 * grain_, e = std::min(n_, g1 * grain_);
        if (b < e) (*fn_)(b, e, thread_index);
        done_.fetch_add(1, std::memory_order_acq_rel);
        w = work_.load(std::memory_order_acquire);
    }
}

// Runs pieces of generation `gen`: our share from the front, then the others' from the back.
WarmRange ThreadPool::run_shares(int self, uint32_t gen) {
    WarmRange warm;
    const uint32_t g = gen & 0xfffff;
    const int64_t fine = fine_step_.load(std::memory_order_relaxed);
    auto run = [&](int64_t g0, int64_t g1) {
        const int64_t b = g0 * grain_, e = std::min(n_, g1 * grain_);
        if (b < e) (*fn_)(b, e, self);
        done_.fetch_add(g1 - g0, std::memory_order_acq_rel);
    };
    for (int i = 0; i < n_threads_; ++i) {
        std::atomic<uint64_t>& share = shares_[size_t((self + i) % n_threads_)].word;
        const bool own = i == 0;
        for (uint64_t w = share.load(std::memory_order_acquire);;) {
            if (share_gen(w) != g) return warm;  // the job is over
            const int64_t f = share_front(w), b = share_back(w);
            if (f >= b) break;
            const int64_t piece = own ? std::max(fine, (b - f) / 4) : fine;
            const int64_t p0 = own ? f : std::max(f, b - piece), p1 = own ? std::min(b, f + piece) : b;
            if (share.compare_exchange_weak(w, own ? share_word(gen, p1, b) : share_word(gen, f, p0), std::memory_order_acq_rel, std::memory_order_acquire)) {
                if (own && !warm.bytes && shares_[size_t(self)].warm.bytes) {  // the job cannot end before this piece is counted
                    warm = shares_[size_t(self)].warm;
                    warming_.fetch_add(1, std::memory_order_relaxed);  // before the piece is: settle() sees it
                }
                run(p0, p1);
                w = share.load(std::memory_order_acquire);
            }
        }
    }
    return warm;
}

void ThreadPool::worker_loop(int index) {
    uint32_t seen = 0;
    for (;;) {
        uint64_t w = work_.load(std::memory_order_acquire);
        for (int spin = 0; gen_of(w) == seen && spin < kSpinIterations; ++spin) {
            KILN_PAUSE();
            w = work_.load(std::memory_order_acquire);
        }
        if (gen_of(w) == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            sleepers_.fetch_add(1);
            wake_.wait(lock, [&] { return gen_of(work_.load()) != seen; });  // seq_cst: pairs with parallel_for
            sleepers_.fetch_sub(1);
            w = work_.load();
        }
        seen = gen_of(w);
        if (stop_.load()) return;
        if (shares_mode_.load(std::memory_order_relaxed)) {
            if (const WarmRange warm = run_shares(index, seen); warm.bytes) {
                warm_cache(warm);
                warming_.fetch_sub(1, std::memory_order_release);
            }
        } else {
            run_chunks(index, seen);
        }
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn, int chunks_per_thread) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t n_grains = (n + grain - 1) / grain;
    // A few chunks per thread, claimed in order: a thread slowed down by its SMT sibling
    // or by another process does less, instead of everyone waiting for it at the end.
    const int64_t per_thread = std::clamp(chunks_per_thread, 1, 64);
    const uint32_t n_chunks = uint32_t(std::min<int64_t>(n_threads_ == 1 ? 1 : per_thread * n_threads_, n_grains));
    if (n_chunks <= 1) {
        fn(0, n, 0);
        return;
    }
    fn_ = &fn;
    n_ = n, grain_ = grain, n_grains_ = n_grains;
    shares_mode_.store(false, std::memory_order_relaxed);
    run_job(generation_ + 1, n_chunks, n_chunks);
}

void ThreadPool::parallel_for_shares(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn, const WarmRange* warm) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    // Grains past what a share's word holds are merged (boundaries stay multiples of grain).
    while ((n + grain - 1) / grain > kMaxShareGrains) grain *= 2;
    const int64_t n_grains = (n + grain - 1) / grain;
    if (n_threads_ == 1 || n_grains < 2) {
        fn(0, n, 0);
        return;
    }
    fn_ = &fn;
    n_ = n, grain_ = grain, n_grains_ = n_grains;
    shares_mode_.store(true, std::memory_order_relaxed);
    const uint32_t gen = generation_ + 1;
    for (int t = 0; t < n_threads_; ++t) {
        shares_[size_t(t)].word.store(share_word(gen, n_grains * t / n_threads_, n_grains * (t + 1) / n_threads_), std::memory_order_relaxed);
        shares_[size_t(t)].warm = warm && t > 0 ? warm[t] : WarmRange{};
    }
    fine_step_.store(std::max<int64_t>(1, n_grains / n_threads_ / 64), std::memory_order_relaxed);
    run_job(gen, 0, n_grains);
}

void ThreadPool::settle() {
    for (int spin = 0; warming_.load(std::memory_order_acquire) > 0; ++spin) {
        if (spin < kSpinIterations) KILN_PAUSE();
        else std::this_thread::yield();
    }
}

void ThreadPool::run_job(uint32_t gen, uint32_t n_chunks, int64_t total) {
    done_.store(0, std::memory_order_relaxed);
    generation_ = gen;
    work_.store(pack(gen, n_chunks, 0));  // seq_cst store, then the sleeper count load
    if (sleepers_.load() > 0) {
        std::lock_guard<std::mutex> lock(mutex_);  // a waiter is either asleep or will see the new generation
        wake_.notify_all();
    }
    if (shares_mode_.load(std::memory_order_relaxed)) run_shares(0, gen);
    else run_chunks(0, gen);
    // Pieces claimed by workers are running; wait for them, yielding if it takes long
    // (their core may be shared with other work).
    for (int spin = 0; done_.load(std::memory_order_acquire) < total; ++spin) {
        if (spin < kSpinIterations) KILN_PAUSE();
        else std::this_thread::yield();
    }
}

}  // namespace kiln
