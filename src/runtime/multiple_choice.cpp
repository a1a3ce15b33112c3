// Multiple-choice benchmarks in llama.cpp's formats (include/kiln/multiple_choice.h).
#include "kiln/multiple_choice.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "kiln/sampler.h"
#include "kiln/tokenizer.h"

namespace kiln {

const char* choice_format_name(ChoiceFormat f) {
    switch (f) {
        case ChoiceFormat::HellaSwag: return "HellaSwag";
        case ChoiceFormat::Winogrande: return "Winogrande";
        case ChoiceFormat::MultipleChoice: return "multiple-choice";
    }
    return "?";
}

namespace {

// Lines as std::getline gives them (a last newline ends the last line, no empty line after it).
std::vector<std::string> split_lines(const std::string& data) {
    std::vector<std::string> lines;
    size_t at = 0;
    while (at < data.size()) {
        const size_t nl = data.find('\n', at);
        const size_t end = nl == std::string::npos ? data.size() : nl;
        lines.push_back(data.substr(at, end - at));
        at = end + 1;
    }
    return lines;
}

// A leading integer as istream >> int reads it (spaces before, anything after); false if none.
bool leading_int(const std::string& s, int* out) {
    size_t i = 0;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    const size_t start = i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    const size_t digits = i;
    while (i < s.size() && i - digits < 9 && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == digits) return false;
    *out = std::stoi(s.substr(start, i - start));
    return true;
}

// Fills common_prefix and keeps every scored range after it (its last token's row is the
// first one a choice needs) and after position 0 (nothing predicts the first token).
// Errors when a choice has nothing left to score.
Status finish_task(ChoiceTask& t, const std::string& where) {
    size_t min_len = t.tokens[0].size();
    for (const auto& seq : t.tokens) min_len = std::min(min_len, seq.size());
    size_t cp = 0;
    while (cp < min_len && std::all_of(t.tokens.begin(), t.tokens.end(), [&](const auto& seq) { return seq[cp] == t.tokens[0][cp]; })) ++cp;
    t.common_prefix = int(cp);
    for (size_t s = 0; s < t.tokens.size(); ++s) {
        auto& [first, end] = t.scored[s];
        first = std::max({first, int(cp), 1});
        end = std::min(end, int(t.tokens[s].size()));
        if (first >= end) return Status::error("%s: choice %zu has no tokens of its own to score", where.c_str(), s + 1);
    }
    return Status::ok();
}

// llama.cpp's pick of k of n tasks for --winogrande-tasks and --multiple-choice-tasks.
std::vector<size_t> llama_random_pick(size_t n, size_t k) {
    std::mt19937 rng(1);
    std::vector<size_t> aux(n), picked;
    for (size_t i = 0; i < n; ++i) aux[i] = i;
    const float scale = 1.f / (1.f + float(std::mt19937::max()));
    for (size_t i = 0; i < k; ++i) {
        const size_t j = size_t(int(scale * float(rng()) * float(aux.size())));  // float arithmetic, as llama.cpp
        picked.push_back(aux[j]);
        aux[j] = aux.back();
        aux.pop_back();
    }
    return picked;
}

Expected<ChoiceTasks> load_hellaswag(const std::string& data, const Tokenizer& tok, size_t max_tasks) {
    const std::vector<std::string> lines = split_lines(data);
    if (lines.empty() || lines.size() % 6 != 0)
        return Status::error("HellaSwag data: %zu lines, not a positive multiple of 6 (context, gold index, 4 endings per task)", lines.size());
    size_t n = lines.size() / 6;
    if (max_tasks > 0) n = std::min(n, max_tasks);
    // llama.cpp draws each task uniformly from those left (even when taking all of them).
    std::mt19937 rng(1);
    std::vector<size_t> left(lines.size() / 6);  // task indices not drawn yet
    for (size_t i = 0; i < left.size(); ++i) left[i] = i;
    ChoiceTasks out;
    for (size_t i = 0; i < n; ++i) {
        std::uniform_int_distribution<size_t> dist(0, left.size() - 1);
        const size_t at = dist(rng), idx = left[at];
        left.erase(left.begin() + long(at));
        const std::string where = strfmt("HellaSwag task at line %zu", idx * 6 + 1);
        int gold = -1;
        if (!leading_int(lines[idx * 6 + 1], &gold) || gold < 0 || gold > 3)
            return Status::error("%s: gold ending \"%s\" is not 0, 1, 2 or 3", where.c_str(), lines[idx * 6 + 1].c_str());
        ChoiceTask t;
        for (size_t j = 0; j < 4; ++j) {
            t.tokens.push_back(tok.encode(lines[idx * 6] + " " + lines[idx * 6 + 2 + j], true, false));
            t.scored.push_back({0, int(t.tokens.back().size())});
            t.correct.push_back(int(j) == gold);
        }
        KILN_TRY(finish_task(t, where));
        out.tasks.push_back(std::move(t));
    }
    return out;
}

Expected<ChoiceTasks> load_winogrande(const std::string& data, const Tokenizer& tok, size_t max_tasks) {
    struct Entry {
        std::string first, second, choice[2];
        int answer = 0;
        size_t line = 0;
    };
    std::vector<Entry> entries;
    ChoiceTasks out;
    const std::vector<std::string> lines = split_lines(data);
    // llama-perplexity never reads a Winogrande file's last line (its reader stops at the end
    // of the text before using the line); kiln skips it too, so --winogrande-tasks N picks
    // the same tasks.
    if (lines.size() > 1) out.skipped.push_back(strfmt("line %zu: the last line, which llama.cpp's reader drops", lines.size()));
    for (size_t ln = 0; ln + 1 < lines.size(); ++ln) {
        const std::string& line = lines[ln];
        size_t comma[4], n_comma = 0;  // the first 4 commas outside double quotes
        bool quoted = false;
        for (size_t i = 0; i < line.size() && n_comma < 4; ++i) {
            if (line[i] == '"') quoted = !quoted;
            else if (line[i] == ',' && !quoted) comma[n_comma++] = i;
        }
        auto skip = [&](const char* why) { out.skipped.push_back(strfmt("line %zu: %s", ln + 1, why)); };
        if (n_comma < 4) { skip("fewer than 5 comma-separated fields"); continue; }
        const bool q = comma[0] + 1 < line.size() && line[comma[0] + 1] == '"' && comma[1] >= comma[0] + 3;
        const std::string sentence = q ? line.substr(comma[0] + 2, comma[1] - comma[0] - 3) : line.substr(comma[0] + 1, comma[1] - comma[0] - 1);
        Entry e;
        e.line = ln + 1;
        e.choice[0] = line.substr(comma[1] + 1, comma[2] - comma[1] - 1);
        e.choice[1] = line.substr(comma[2] + 1, comma[3] - comma[2] - 1);
        const size_t blank = sentence.find('_');
        if (blank == std::string::npos) { skip("no _ in the sentence"); continue; }
        if (!leading_int(line.substr(comma[3] + 1), &e.answer) || e.answer < 1 || e.answer > 2) { skip("the answer is not 1 or 2"); continue; }
        e.first = sentence.substr(0, blank), e.second = sentence.substr(blank + 1);
        entries.push_back(std::move(e));
    }
    if (entries.empty()) return Status::error("Winogrande data: no tasks (%zu lines, none \"index,sentence with _,choice1,choice2,answer\")", lines.size());
    if (max_tasks > 0 && max_tasks < entries.size()) {
        std::vector<Entry> picked;
        for (size_t i : llama_random_pick(entries.size(), max_tasks)) picked.push_back(std::move(entries[i]));
        entries = std::move(picked);
    }
    for (const Entry& e : entries) {
        ChoiceTask t;
        int n_base[2];
        for (int k = 0; k < 2; ++k) {
            t.tokens.push_back(tok.encode(e.first + e.choice[k] + e.second, true, false));
            n_base[k] = int(tok.encode(e.first + e.choice[k], true, false).size());
            t.correct.push_back(e.answer == k + 1);
        }
        size_t cp = 0;
        while (cp < std::min(t.tokens[0].size(), t.tokens[1].size()) && t.tokens[0][cp] == t.tokens[1][cp]) ++cp;
        // llama.cpp scores the words after the blank when both choices leave more than 3
        // tokens there (else the choice too), less the last token when there are several.
        const bool after_blank = t.tokens[0].size() - cp > 3 && t.tokens[1].size() - cp > 3;
        for (int k = 0; k < 2; ++k) {
            const int first = after_blank ? n_base[k] : int(cp), len = int(t.tokens[size_t(k)].size());
            t.scored.push_back({first, len - (len - first > 1 ? 1 : 0)});
        }
        if (Status s = finish_task(t, strfmt("Winogrande line %zu", e.line)); !s) {
            out.skipped.push_back(s.message());
            continue;
        }
        out.tasks.push_back(std::move(t));
    }
    if (out.tasks.empty()) return Status::error("Winogrande data: no task leaves tokens to score");
    return out;
}

// Bounds-checked reads of llama.cpp's multiple-choice binary file.
struct BinaryReader {
    const std::string& data;
    size_t at = 0;
    bool u32(uint32_t* v) {
        if (data.size() - at < 4 || at > data.size()) return false;
        std::memcpy(v, data.data() + at, 4);
        at += 4;
        return true;
    }
    bool str(std::string* s) {
        uint32_t n = 0;
        if (!u32(&n) || n > data.size() - at) return false;
        s->assign(data, at, n);
        at += n;
        return true;
    }
    // An answer list: uint32 n (<= 100, as llama.cpp), n strings, n int32 labels.
    bool answers(std::vector<std::string>* a, std::vector<int32_t>* labels) {
        uint32_t n = 0;
        if (!u32(&n) || n > 100) return false;
        a->resize(n), labels->resize(n);
        for (auto& s : *a)
            if (!str(&s)) return false;
        for (auto& l : *labels)
            if (!u32(reinterpret_cast<uint32_t*>(&l))) return false;
        return true;
    }
};

Expected<ChoiceTasks> load_multiple_choice(const std::string& data, const Tokenizer& tok, size_t max_tasks) {
    BinaryReader r{data};
    uint32_t n_task = 0;
    if (!r.u32(&n_task) || n_task == 0) return Status::error("multiple-choice data: no tasks (the file starts with a task count of 0 or is empty)");
    if (size_t(n_task) > (data.size() - 4) / 4) return Status::error("multiple-choice data: %u tasks announced, the file is %zu bytes", n_task, data.size());
    std::vector<uint32_t> offsets(n_task);  // (n_task) where each task starts
    for (auto& o : offsets) r.u32(&o);
    std::vector<size_t> order;  // the tasks to read, in order
    if (max_tasks == 0 || max_tasks >= n_task) {
        for (size_t i = 0; i < n_task; ++i) order.push_back(i);
    } else {
        order = llama_random_pick(n_task, max_tasks);
    }
    const size_t after_table = r.at;
    ChoiceTasks out;
    for (size_t k = 0; k < order.size(); ++k) {
        const size_t i = order[k];
        // All tasks: one after another, as llama.cpp reads them; a pick: from its offset.
        if (order.size() < n_task) r.at = offsets[i];
        else if (k == 0) r.at = after_table;
        std::string question;
        std::vector<std::string> answers, answers2;
        std::vector<int32_t> labels, labels2;
        if (r.at > data.size() || !r.str(&question) || !r.answers(&answers, &labels) || !r.answers(&answers2, &labels2))
            return Status::error("multiple-choice data: task %zu is truncated or malformed (at byte %zu of %zu)", i + 1, r.at, data.size());
        const std::string where = strfmt("multiple-choice task %zu", i + 1);
        if (question.empty() || answers.empty()) return Status::error("%s: empty question or no answers", where.c_str());
        ChoiceTask t;
        for (size_t a = 0; a < answers.size(); ++a) {
            if (answers[a].empty()) return Status::error("%s: answer %zu is empty", where.c_str(), a + 1);
            t.tokens.push_back(tok.encode(question + " " + answers[a], true, false));
            t.scored.push_back({0, int(t.tokens.back().size())});
            t.correct.push_back(labels[a] == 1);
        }
        KILN_TRY(finish_task(t, where));
        out.tasks.push_back(std::move(t));
    }
    return out;
}

int pages(int positions) { return (positions + kKvPagePositions - 1) / kKvPagePositions; }

// KV pages a task can take at most: the prefix's, then each choice's beyond the whole pages
// it shares (a shared partial page is copied by the choices that write into it).
int task_pages(const ChoiceTask& t) {
    int n = pages(t.common_prefix);
    for (const auto& seq : t.tokens) n += pages(int(seq.size())) - t.common_prefix / kKvPagePositions;
    return n;
}

int task_rows(const ChoiceTask& t) {
    int n = 1;
    for (auto [first, end] : t.scored) n += end - first;
    return n;
}

// Scores summed over each choice's scored tokens -> their means, the pick (the first
// highest) and whether it is right.
void finish_result(const ChoiceTask& t, ChoiceTaskResult* r) {
    for (size_t c = 0; c < r->scores.size(); ++c) r->scores[c] /= double(t.scored[c].end - t.scored[c].first);
    r->picked = int(std::max_element(r->scores.begin(), r->scores.end()) - r->scores.begin());
    r->right = t.correct[size_t(r->picked)] != 0;
}

// The group's logits rows at most (each row is n_vocab floats) unless one task needs more.
constexpr int kMaxGroupRows = 512;

// Tasks [i0, i1) on sequences from 0: prefixes first (one sequence per task), then the
// sequence forked to the other choices and every choice's own tokens in one decode.
Status score_group(Session& s, std::span<const ChoiceTask> tasks, std::vector<ChoiceTaskResult>* results) {
    const int n_vocab = s.model().config().n_vocab;
    std::vector<int> base(tasks.size());       // (tasks) each task's first sequence id
    std::vector<int> prefix_row(tasks.size());  // (tasks) its last prefix token's index in the prefix batch
    results->assign(tasks.size(), {});
    Batch prefix;
    for (size_t i = 0, seq = 0; i < tasks.size(); seq += tasks[i].tokens.size(), ++i) {
        base[i] = int(seq);
        (*results)[i].scores.assign(tasks[i].tokens.size(), 0.0);
        for (int p = 0; p < tasks[i].common_prefix; ++p) prefix.add(tasks[i].tokens[0][size_t(p)], base[i], p, p + 1 == tasks[i].common_prefix);
        prefix_row[i] = prefix.size() - 1;
    }
    if (prefix.size() > 0) KILN_TRY(s.decode(prefix));
    for (size_t i = 0; i < tasks.size(); ++i) {
        const ChoiceTask& t = tasks[i];
        if (t.common_prefix == 0) continue;
        const float* row = s.batch_logits(prefix_row[i]);
        const double log_z = log_sum_exp(row, n_vocab);
        for (size_t c = 0; c < t.tokens.size(); ++c)
            if (t.scored[c].first == t.common_prefix) (*results)[i].scores[c] += double(row[t.tokens[c][size_t(t.common_prefix)]]) - log_z;
        for (size_t c = 1; c < t.tokens.size(); ++c) KILN_TRY(s.seq_fork(base[i], base[i] + int(c)));
    }
    Batch own;
    struct Wanted {
        size_t task, choice;
        int32_t target;
    };
    std::vector<Wanted> wanted;  // (own's tokens) what each row scores; target < 0: no row
    for (size_t i = 0; i < tasks.size(); ++i) {
        const ChoiceTask& t = tasks[i];
        for (size_t c = 0; c < t.tokens.size(); ++c) {
            const auto& seq = t.tokens[c];
            for (int p = t.common_prefix; p < int(seq.size()); ++p) {
                const bool row = p + 1 >= t.scored[c].first && p + 1 < t.scored[c].end;  // this row predicts token p + 1
                own.add(seq[size_t(p)], base[i] + int(c), p, row);
                wanted.push_back({i, c, row ? seq[size_t(p) + 1] : -1});
            }
        }
    }
    KILN_TRY(s.decode(own));
    for (int k = 0; k < own.size(); ++k) {
        const Wanted& w = wanted[size_t(k)];
        if (w.target < 0) continue;
        const float* row = s.batch_logits(k);
        (*results)[w.task].scores[w.choice] += double(row[w.target]) - log_sum_exp(row, n_vocab);
    }
    for (size_t i = 0; i < tasks.size(); ++i) {
        finish_result(tasks[i], &(*results)[i]);
        for (size_t c = 0; c < tasks[i].tokens.size(); ++c) KILN_TRY(s.seq_remove(base[i] + int(c)));
    }
    return Status::ok();
}

// A task with more choices than the session has sequences: each choice alone on sequence 0.
Status score_alone(Session& s, const ChoiceTask& t, ChoiceTaskResult* r) {
    const int n_vocab = s.model().config().n_vocab;
    r->scores.assign(t.tokens.size(), 0.0);
    for (size_t c = 0; c < t.tokens.size(); ++c) {
        const auto& seq = t.tokens[c];
        const auto [first, end] = t.scored[c];
        Batch b;
        // Every row from the first scored one to the end: Vulkan returns the logits of a chunk's tail.
        for (int p = 0; p < int(seq.size()); ++p) b.add(seq[size_t(p)], 0, p, p + 1 >= first);
        KILN_TRY(s.seq_remove(0));
        KILN_TRY(s.decode(b));
        for (int p = first - 1; p < end - 1; ++p) {
            const float* row = s.batch_logits(p);
            r->scores[c] += double(row[seq[size_t(p) + 1]]) - log_sum_exp(row, n_vocab);
        }
    }
    finish_result(t, r);
    return s.seq_remove(0);
}

}  // namespace

Expected<ChoiceTasks> load_choice_tasks(ChoiceFormat format, const std::string& data, const Tokenizer& tok, size_t max_tasks) {
    switch (format) {
        case ChoiceFormat::HellaSwag: return load_hellaswag(data, tok, max_tasks);
        case ChoiceFormat::Winogrande: return load_winogrande(data, tok, max_tasks);
        case ChoiceFormat::MultipleChoice: return load_multiple_choice(data, tok, max_tasks);
    }
    return Status::error("unknown multiple-choice format");
}

Status score_choice_tasks(Session& s, std::span<const ChoiceTask> tasks, const std::function<void(size_t, const ChoiceTaskResult&)>& on_task) {
    for (int seq = 0; seq < s.n_seq_max(); ++seq) KILN_TRY(s.seq_remove(seq));
    const int capacity = s.free_positions() / kKvPagePositions;
    std::vector<ChoiceTaskResult> results;
    for (size_t i0 = 0; i0 < tasks.size();) {
        size_t i1 = i0;
        int seqs = 0, used = 0, rows = 0;
        while (i1 < tasks.size()) {
            const ChoiceTask& t = tasks[i1];
            const int k = int(t.tokens.size()), need = task_pages(t), r = task_rows(t);
            if (i1 == i0 && k > s.n_seq_max()) break;  // alone, below
            if (i1 == i0 && need > capacity)
                return Status::error("task %zu needs %d KV positions; the session has %d (raise -c)", i0 + 1, need * kKvPagePositions, capacity * kKvPagePositions);
            if (i1 > i0 && (seqs + k > s.n_seq_max() || used + need > capacity || rows + r > kMaxGroupRows)) break;
            seqs += k, used += need, rows += r, ++i1;
        }
        if (i1 == i0) {
            results.assign(1, {});
            KILN_TRY(score_alone(s, tasks[i0], &results[0]));
            ++i1;
        } else {
            KILN_TRY(score_group(s, tasks.subspan(i0, i1 - i0), &results));
        }
        for (size_t i = i0; i < i1; ++i)
            if (on_task) on_task(i, results[i - i0]);
        i0 = i1;
    }
    return Status::ok();
}

ChoiceSummary summarize_choices(size_t n_right, size_t n, size_t n_choices_total) {
    ChoiceSummary r;
    r.n = n, r.n_right = n_right;
    if (n == 0) return r;
    const double p = double(n_right) / double(n), z = 1.959963984540054;
    r.accuracy = p;
    r.stderr_ = n > 1 ? std::sqrt(p * (1 - p) / double(n - 1)) : 0;
    // Wilson score interval (llama.cpp's HellaSwag interval).
    const double zz = z * z / double(n), half = zz * std::sqrt(double(n) * (4 * p * (1 - p) + zz)) / (2 * z);
    r.wilson_low = (p + zz / 2 - half) / (1 + zz);
    r.wilson_high = (p + zz / 2 + half) / (1 + zz);
    r.chance = n_choices_total > 0 ? double(n) / double(n_choices_total) : 0;
    return r;
}

}  // namespace kiln
