// Persistent worker threads for the forward pass.
//
// Contract with the host application: a ThreadPool owns n_threads - 1 worker threads; the
// thread calling parallel_for() is the n-th. Work is cut into a few contiguous chunks per
// thread (long contiguous slices of a weight matrix) and chunks are *claimed*, not
// assigned: if a worker is descheduled because the app's own threads (or anything else)
// occupy its core, the others take over its unclaimed chunks instead of waiting for it
// (parallel_for_shares: the unclaimed back of its share). Workers spin briefly between
// jobs (the jobs of one forward pass are microseconds apart) and then sleep, so an idle pool costs no CPU. kiln creates no
// other threads; size the pool so that pool + busy app threads <= cores.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

// Bytes a worker reads into its cache once its part of a job is done: the start of its
// share of the job that comes next, so memory keeps streaming while the caller thread does
// the serial work between the two (norms, rope, the KV store).
struct WarmRange {
    const void* p = nullptr;
    size_t bytes = 0;
};

class ThreadPool {
public:
    // n_threads <= 0 picks the number of cores this process may use. pin: bind thread i to
    // core i (only sensible when kiln owns the machine).
    explicit ThreadPool(int n_threads = 0, bool pin = false);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Splits [0, n) into contiguous chunks (boundaries at multiples of `grain`), up to
    // chunks_per_thread per thread, and calls fn(begin, end, thread_index) for each;
    // thread_index < size() identifies the executing thread (for per-thread scratch).
    // Returns when all are done. More chunks balance better when a thread is slowed; each
    // costs a claim and its data's cache lines crossing between cores.
    static constexpr int kChunksPerThread = 4;
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn, int chunks_per_thread = kChunksPerThread);

    // The same contract, cut for a job that streams its data once (a decode's matmul):
    // thread t owns the t-th contiguous share of the grains and takes it from the front in
    // pieces that shrink (a quarter of what is left, down to 1/64 of the share), so its
    // stream runs unbroken; a thread out of work takes 1/64-share pieces from the *back*
    // of another's share. The threads finish within one small piece of each other.
    // warm (n_threads entries, or null): what worker t reads after its part (entry 0, the
    // caller's, is unused: the caller has the serial work to do).
    void parallel_for_shares(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn, const WarmRange* warm = nullptr);
    // Returns once no worker is reading a warm range any more: call it before the memory
    // the ranges point into may go away (kiln: at the end of each forward pass).
    void settle();

private:
    void worker_loop(int index);
    void run_chunks(int thread_index, uint32_t gen);
    // Returns the thread's warm range if it claimed a piece of its own share (else the job
    // may be over and the range rewritten for the next one).
    WarmRange run_shares(int thread_index, uint32_t gen);
    // Publishes the job set up in the members below as generation `gen` and runs it with
    // the workers; returns when `done_` reaches `total`.
    void run_job(uint32_t gen, uint32_t n_chunks, int64_t total);

    int n_threads_;
    std::vector<std::thread> workers_;
    // The current job: generation (high 32 bits), chunk count (16) and next chunk (16),
    // claimed by compare-and-swap so a chunk never runs twice or for a stale job.
    std::atomic<uint64_t> work_{0};
    std::atomic<int64_t> done_{0};   // chunks (parallel_for) or grains (shares) finished in the current generation
    std::atomic<bool> shares_mode_{false};  // how the current job is cut; written before it is published
    // parallel_for_shares: each thread's unclaimed grains [front, back) with the job's
    // generation (20 bits | 22 | 22), on its own cache line: the owner's claims stay local.
    struct alignas(64) Share {
        std::atomic<uint64_t> word{0};
        WarmRange warm;  // written before the job is published; read after a claim of this share
    };
    std::unique_ptr<Share[]> shares_;  // (n_threads), allocated once: a worker still leaving the last job may read them
    std::atomic<int> warming_{0};         // workers reading their warm range
    std::atomic<int64_t> fine_step_{1};     // grains: the smallest piece, and a thief's piece (atomic: read before a claim can fail)
    uint32_t generation_ = 0;        // written by the caller thread only
    const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
    int64_t n_ = 0, grain_ = 1, n_grains_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<int> sleepers_{0};
};

// Returns the number of cores this process may run on.
int default_thread_count();

}  // namespace kiln
