// The thread pool's contract (include/kiln/thread_pool.h): every index runs exactly once,
// in contiguous chunks on grain boundaries, no more chunks than asked for, and a worker
// stuck in its chunk does not hold up the chunks nobody has claimed yet.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/decode_tuner.h"
#include "kiln/thread_pool.h"
#include "test_util.h"

namespace {

struct Chunk {
    int64_t begin, end;
    int thread;
};

// Runs one parallel_for and returns its chunks (in completion order).
std::vector<Chunk> chunks_of(kiln::ThreadPool& pool, int64_t n, int64_t grain, int per_thread) {
    std::mutex mu;
    std::vector<Chunk> out;
    pool.parallel_for(n, grain, [&](int64_t b, int64_t e, int t) {
        std::lock_guard<std::mutex> lock(mu);
        out.push_back({b, e, t});
    }, per_thread);
    return out;
}

// Every index of [0, n) in exactly one chunk, each on grain boundaries and run by a thread of the pool.
void check_cover(const std::vector<Chunk>& chunks, int64_t n, int64_t grain, int threads) {
    std::vector<int> seen(size_t(n), 0);
    for (const Chunk& c : chunks) {
        REQUIRE(c.begin < c.end);
        REQUIRE(c.end <= n);
        REQUIRE(c.thread >= 0);
        REQUIRE(c.thread < threads);
        CHECK(c.begin % grain == 0);
        CHECK((c.end % grain == 0 || c.end == n));
        for (int64_t i = c.begin; i < c.end; ++i) ++seen[size_t(i)];
    }
    for (int64_t i = 0; i < n; ++i) REQUIRE(seen[size_t(i)] == 1);
}

// Yields until `done` reaches `target`; false if that takes over 10 s (a stuck job).
bool wait_for(const std::atomic<int64_t>& done, int64_t target) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (done.load() < target) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

}  // namespace

TEST_CASE("thread pool: every index runs once, chunks are contiguous, on grain boundaries, at most chunks_per_thread a thread") {
    for (int threads : {1, 2, 3, 8}) {
        kiln::ThreadPool pool(threads);
        REQUIRE(pool.size() == threads);
        for (int64_t n : {1, 15, 16, 17, 100, 960, 4097}) {
            for (int64_t grain : {1, 16}) {
                for (int per_thread : {1, 2, 4}) {
                    CAPTURE(threads);
                    CAPTURE(n);
                    CAPTURE(grain);
                    CAPTURE(per_thread);
                    const std::vector<Chunk> chunks = chunks_of(pool, n, grain, per_thread);
                    check_cover(chunks, n, grain, threads);
                    CHECK(chunks.size() <= size_t(threads * per_thread));
                    if (threads > 1 && (n + grain - 1) / grain >= threads * per_thread) CHECK(chunks.size() == size_t(threads * per_thread));
                }
            }
        }
    }
}

TEST_CASE("thread pool: thousands of back-to-back jobs each run completely (no chunk of a stale job)") {
    kiln::ThreadPool pool(2);
    for (int job = 0; job < 5000; ++job) {
        const int64_t n = 1 + job % 61;
        std::atomic<int64_t> sum{0};
        pool.parallel_for(n, 1, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) sum.fetch_add(i + 1);
        }, 1 + job % 4);
        REQUIRE(sum.load() == n * (n + 1) / 2);
    }
}

TEST_CASE("thread pool: a worker stuck in its chunk does not hold up the unclaimed chunks") {
    // The worker that gets a chunk waits there until every other chunk is done; if the
    // other chunks were assigned to it rather than claimed, they would never run and the
    // wait would time out.
    kiln::ThreadPool pool(2);
    for (int round = 0; round < 20; ++round) {
        constexpr int64_t kChunks = 8;  // 2 threads x 4
        std::atomic<int64_t> done{0};
        std::atomic<bool> timed_out{false};
        pool.parallel_for(kChunks, 1, [&](int64_t b, int64_t e, int t) {
            if (t == 1 && !wait_for(done, kChunks - (e - b))) timed_out = true;
            done.fetch_add(e - b);
        }, 4);
        CHECK(done.load() == kChunks);
        CHECK_FALSE(timed_out.load());
    }
}

TEST_CASE("thread pool: parallel_for_shares runs every index once, on grain boundaries, each thread's own share from its start in adjacent pieces") {
    for (int threads : {1, 2, 3, 8}) {
        kiln::ThreadPool pool(threads);
        for (int64_t n : {1, 15, 16, 17, 100, 960, 4097, 100000}) {
            for (int64_t grain : {1, 16}) {
                CAPTURE(threads);
                CAPTURE(n);
                CAPTURE(grain);
                std::mutex mu;
                std::vector<Chunk> pieces;  // in the order each thread ran them (per thread)
                pool.parallel_for_shares(n, grain, [&](int64_t b, int64_t e, int t) {
                    std::lock_guard<std::mutex> lock(mu);
                    pieces.push_back({b, e, t});
                });
                check_cover(pieces, n, grain, threads);
                if (threads == 1 || (n + grain - 1) / grain < 2) {
                    CHECK(pieces.size() == 1);
                    continue;
                }
                // Thread t's pieces inside its own share: taken from the front, so in the order
                // run they start at the share's start and each begins where the last ended.
                const int64_t n_grains = (n + grain - 1) / grain;
                for (int t = 0; t < threads; ++t) {
                    const int64_t share0 = n_grains * t / threads * grain, share1 = std::min(n, n_grains * (t + 1) / threads * grain);
                    int64_t at = share0;
                    for (const Chunk& c : pieces) {
                        if (c.thread != t || c.begin < share0 || c.begin >= share1) continue;
                        CHECK(c.begin == at);
                        at = c.end;
                    }
                }
            }
        }
    }
}

TEST_CASE("thread pool: parallel_for_shares merges grains past what a share holds (4M), and back-to-back jobs never mix") {
    kiln::ThreadPool pool(2);
    const int64_t n = (int64_t(1) << 23) + 5;  // 8M grains of 1: merged to grains of 2, 4, ...
    std::atomic<int64_t> covered{0};
    std::atomic<bool> aligned{true};
    pool.parallel_for_shares(n, 1, [&](int64_t b, int64_t e, int) {
        covered.fetch_add(e - b);
        if (b % 2 != 0) aligned = false;
    });
    CHECK(covered.load() == n);
    CHECK(aligned.load());
    for (int job = 0; job < 5000; ++job) {
        const int64_t m = 1 + job % 97;
        std::atomic<int64_t> sum{0};
        auto add = [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) sum.fetch_add(i + 1);
        };
        if (job % 3 == 0) pool.parallel_for(m, 1, add);  // the two kinds of job alternate on one pool
        else pool.parallel_for_shares(m, 1, add);
        REQUIRE(sum.load() == m * (m + 1) / 2);
    }
}

TEST_CASE("thread pool: a worker stuck in its first piece does not hold up the rest of its share") {
    // Thread 1 waits inside its first piece until every other index is done: the rest of its
    // share must be taken from the back by thread 0, or the wait times out.
    kiln::ThreadPool pool(2);
    for (int round = 0; round < 20; ++round) {
        constexpr int64_t kN = 256;
        std::atomic<int64_t> done{0};
        std::atomic<bool> timed_out{false};
        std::atomic<int64_t> stolen{0};  // indices of thread 1's share that thread 0 ran
        pool.parallel_for_shares(kN, 1, [&](int64_t b, int64_t e, int t) {
            if (t == 0 && b >= kN / 2) stolen.fetch_add(e - b);
            if (t == 1 && !wait_for(done, kN - (e - b))) timed_out = true;
            done.fetch_add(e - b);
        });
        CHECK(done.load() == kN);
        CHECK_FALSE(timed_out.load());
        CHECK(stolen.load() > 0);
    }
}

TEST_CASE("thread pool: a pool's first parallel_for_shares right after a parallel_for (a worker may still be leaving it)") {
    for (int round = 0; round < 2000; ++round) {
        kiln::ThreadPool pool(2);
        std::atomic<int64_t> sum{0};
        auto add = [&](int64_t b, int64_t e, int) { sum.fetch_add(e - b); };
        pool.parallel_for(64, 1, add);
        pool.parallel_for_shares(64, 1, add);
        REQUIRE(sum.load() == 128);
    }
}

TEST_CASE("thread pool: settle() returns only once no worker reads its warm range (its memory may go away next)") {
    // Each worker reads 16 MB ahead after its part; the buffer is unmapped right after
    // settle(). Without the wait a worker still reading it faults.
    kiln::ThreadPool pool(3);
    constexpr size_t kAhead = size_t(16) << 20;
    for (int round = 0; round < 10; ++round) {
        void* ahead = mmap(nullptr, kAhead, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(ahead != MAP_FAILED);
        const std::vector<kiln::WarmRange> warm(3, kiln::WarmRange{ahead, kAhead});
        std::atomic<int64_t> done{0}, worker_pieces{0};
        std::atomic<bool> timed_out{false};
        pool.parallel_for_shares(96, 1, [&](int64_t b, int64_t e, int t) {
            // Thread 0 holds its first piece until both workers have run one of their own
            // (a worker's first claim is in its own share), so both read ahead.
            if (t > 0) worker_pieces.fetch_add(1);
            else if (b == 0 && !wait_for(worker_pieces, 2)) timed_out = true;
            done.fetch_add(e - b);
        }, warm.data());
        CHECK(done.load() == 96);
        CHECK_FALSE(timed_out.load());
        pool.settle();
        munmap(ahead, kAhead);
    }
}

TEST_CASE("decode tuner: trials both variants in pairs, keeps the faster, and stays put on a tie") {
    using kiln::DecodeTuner;
    // Variant 1 twice as fast: during the first trial the tuner runs 0, 1, 1, 0 in pairs, then
    // switches to 1 for the rest of the period.
    DecodeTuner t;
    std::vector<int> seen;
    for (int i = 0; i < DecodeTuner::kPeriod; ++i) {
        const int v = t.next();
        seen.push_back(v);
        t.record(v == 1 ? 0.5 : 1.0);
    }
    const std::vector<int> trial = {0, 0, 1, 1, 1, 1, 0, 0};
    CHECK(std::vector<int>(seen.begin(), seen.begin() + DecodeTuner::kTrialTokens) == trial);
    for (int i = DecodeTuner::kTrialTokens; i < DecodeTuner::kPeriod; ++i) CHECK(seen[size_t(i)] == 1);
    CHECK(t.current() == 1);
    // Next period: the trial now tries 0 on the middle pairs; 0 is slower, so 1 stays.
    for (int i = 0; i < DecodeTuner::kPeriod; ++i) {
        const int v = t.next();
        if (i >= 2 && i < 6) CHECK(v == 0);
        else CHECK(v == 1);
        t.record(v == 1 ? 0.5 : 1.0);
    }
    CHECK(t.current() == 1);
    // Within the margin it does not switch (no flapping on noise).
    DecodeTuner u;
    for (int i = 0; i < 3 * DecodeTuner::kPeriod; ++i) {
        const int v = u.next();
        u.record(v == 1 ? 1.0 - DecodeTuner::kMargin / 2 : 1.0);
        CHECK(u.current() == 0);
    }
}

TEST_CASE("decode tuner: after clear losses in a row it sits out 1, 2, 4, ... periods; a close loss or a switch ends that") {
    using kiln::DecodeTuner;
    // Runs one period of costs cost[v]; returns whether it had a trial (any token off current).
    auto period = [](DecodeTuner& t, const double* cost) {
        bool trial = false;
        for (int i = 0; i < DecodeTuner::kPeriod; ++i) {
            const int v = t.next();
            trial = trial || v != t.current();
            t.record(cost[v]);
        }
        return trial;
    };
    // Variant 1 20% slower: trials in periods 0, 2, 5, 10, 19, 36 (waits 1, 2, 4, 8, 16), then every 17th.
    const double slow[2] = {1.0, 1.2};
    DecodeTuner t;
    std::vector<int> trials;
    for (int p = 0; p < 80; ++p)
        if (period(t, slow)) trials.push_back(p);
    CHECK(trials == std::vector<int>{0, 2, 5, 10, 19, 36, 53, 70});
    CHECK(t.current() == 0);
    // Now variant 1 twice as fast: the next trial (period 87) switches to it, the one after
    // comes at once (period 88, 0 the candidate), then the waits grow again.
    const double fast[2] = {1.0, 0.5};
    trials.clear();
    for (int p = 80; p < 95; ++p)
        if (period(t, fast)) trials.push_back(p);
    CHECK(trials == std::vector<int>{87, 88, 90, 93});
    CHECK(t.current() == 1);
    // 3% slower: within kClearLoss, tried at every turn.
    const double close[2] = {1.0, 1.0 + DecodeTuner::kClearLoss * 0.6};
    DecodeTuner u;
    for (int p = 0; p < 10; ++p) CHECK(period(u, close));
    CHECK(u.current() == 0);
}

TEST_CASE("decode tuner: with three variants each trial challenges the next one in turn, and the fastest wins") {
    using kiln::DecodeTuner;
    // Variant 2 fastest, 1 slowest, all within kClearLoss of each other (so a trial every
    // period): trials go 0 vs 1 (0 stays), 0 vs 2 (2 takes over), then 2 vs 1, 2 vs 0, ...
    // with 2 kept.
    const double cost[3] = {1.0, 1.02, 0.98};
    DecodeTuner t(3);
    std::vector<int> candidates, currents;
    for (int period = 0; period < 5; ++period) {
        candidates.push_back(t.candidate());
        for (int i = 0; i < DecodeTuner::kPeriod; ++i) {
            const int v = t.next();
            if (i >= DecodeTuner::kTrialTokens) CHECK(v == t.current());
            t.record(cost[v]);
        }
        currents.push_back(t.current());
    }
    CHECK(candidates == std::vector<int>{1, 2, 1, 0, 1});
    CHECK(currents == std::vector<int>{0, 2, 2, 2, 2});
    // One variant: never trials anything.
    DecodeTuner one(1);
    for (int i = 0; i < 2 * DecodeTuner::kPeriod; ++i) {
        CHECK(one.next() == 0);
        one.record(1.0);
    }
}
