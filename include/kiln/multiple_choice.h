// Multiple-choice benchmarks as llama-perplexity scores them (--hellaswag, --winogrande,
// --multiple-choice), from data files in llama.cpp's formats, so the accuracies compare:
// each task's choices are token sequences that share a prefix (the question or context);
// a choice's score is the mean log-probability of its scored tokens, and the choice with
// the highest score is the model's answer.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kiln/session.h"
#include "kiln/status.h"

namespace kiln {

class Tokenizer;

enum class ChoiceFormat {
    // Text, 6 lines per task: context, gold ending index (0-3), four endings. Each ending is
    // scored after context + " ", all of its tokens (acc_norm).
    HellaSwag,
    // CSV lines "index,sentence,choice1,choice2,answer" with one "_" in the sentence (a
    // quoted sentence may hold commas; a header line is skipped). The choice fills the
    // blank; the tokens after it are scored (the choice itself too when fewer than 4 follow).
    Winogrande,
    // llama.cpp's binary file (ARC, MMLU, TruthfulQA...): uint32 n, uint32 offsets[n], then
    // per task a question and two answer lists (single- and multi-correct; the first is
    // scored), strings as uint32 length + bytes, labels int32 (1: right).
    MultipleChoice,
};
const char* choice_format_name(ChoiceFormat f);

// Positions [first, end) of a sequence whose tokens' log-probabilities are averaged.
struct ScoredRange {
    int first = 0, end = 0;
};

struct ChoiceTask {
    std::vector<std::vector<int32_t>> tokens;   // (n_choices) each choice's whole sequence (BOS first where the model adds one)
    std::vector<ScoredRange> scored;            // (n_choices) the tokens each choice is scored by
    std::vector<uint8_t> correct;               // (n_choices) 1: a right answer
    int common_prefix = 0;                      // leading tokens every choice shares (>= 1; first >= common_prefix)
};

struct ChoiceTasks {
    std::vector<ChoiceTask> tasks;
    std::vector<std::string> skipped;  // lines of the file that are not tasks, with why (llama.cpp skips them too)
};

// Reads a data file's bytes. max_tasks > 0 takes that many tasks, picked at random as
// llama-perplexity picks them (the same tasks in the same order); HellaSwag's are shuffled
// even when all are taken, as llama.cpp does. Errors name the task or line that is wrong.
Expected<ChoiceTasks> load_choice_tasks(ChoiceFormat format, const std::string& data, const Tokenizer& tok, size_t max_tasks = 0);

struct ChoiceTaskResult {
    std::vector<double> scores;  // (n_choices) mean log-probability of each choice's scored tokens
    int picked = 0;              // the first highest score
    bool right = false;
};

// Scores tasks in groups: the prefix of each task runs once, its sequence is forked for the
// other choices (copy-on-write), and all choices' tokens go in one decode. The session
// needs as many sequences as a task has choices (n_seq_max; with one sequence each choice
// runs alone) and enough KV positions for the largest task. on_task sees each result.
Status score_choice_tasks(Session& s, std::span<const ChoiceTask> tasks, const std::function<void(size_t, const ChoiceTaskResult&)>& on_task);

// Accuracy over n tasks with its binomial standard error and 95% Wilson interval (as
// llama.cpp prints them), and the accuracy of guessing (tasks / all choices).
struct ChoiceSummary {
    size_t n = 0, n_right = 0;
    double accuracy = 0, stderr_ = 0, wilson_low = 0, wilson_high = 0, chance = 0;
};
ChoiceSummary summarize_choices(size_t n_right, size_t n, size_t n_choices_total);

}  // namespace kiln
