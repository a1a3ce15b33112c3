// Multiple-choice scoring (kiln/multiple_choice.h): llama.cpp's three data formats and their
// bad inputs, batched scoring against each choice run alone, and the answers llama-perplexity
// gives on the same fixtures (tests/data/choice_*, tests/data/make_choice_fixtures.py).
// (The scoring case is named "model: ..." as the other real-model runs: the sanitizer build
// skips those, where it takes 10+ minutes.)
#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kiln/model.h"
#include "kiln/multiple_choice.h"
#include "kiln/sampler.h"
#include "kiln/tokenizer.h"
#include "test_util.h"

namespace {

using kiln::ChoiceFormat;

using kiln::test::message_lacks;

// A task's scores computed the plain way: each choice alone from position 0 in a fresh
// one-sequence session, log-softmax of every row that predicts a scored token.
std::vector<double> scores_alone(const std::shared_ptr<const kiln::Model>& model, const kiln::ChoiceTask& t) {
    kiln::SessionOptions so;
    so.n_ctx = 256, so.n_threads = 2;
    auto s = kiln::Session::create(model, so);
    REQUIRE(s.is_ok());
    const int n_vocab = model->config().n_vocab;
    std::vector<double> out;
    for (size_t c = 0; c < t.tokens.size(); ++c) {
        REQUIRE(s.value()->seq_remove(0).is_ok());
        REQUIRE(s.value()->forward(t.tokens[c], /*all_logits=*/true).is_ok());
        double sum = 0;
        for (int p = t.scored[c].first; p < t.scored[c].end; ++p) {
            const float* row = s.value()->logits(p - 1);
            sum += double(row[t.tokens[c][size_t(p)]]) - kiln::log_sum_exp(row, n_vocab);
        }
        out.push_back(sum / double(t.scored[c].end - t.scored[c].first));
    }
    return out;
}

std::vector<kiln::ChoiceTaskResult> score(const std::shared_ptr<const kiln::Model>& model, const std::vector<kiln::ChoiceTask>& tasks, int n_ctx, int n_seq) {
    kiln::SessionOptions so;
    so.n_ctx = n_ctx, so.n_seq_max = n_seq, so.n_threads = 2;
    auto s = kiln::Session::create(model, so);
    REQUIRE(s.is_ok());
    std::vector<kiln::ChoiceTaskResult> out(tasks.size());
    std::vector<int> seen;
    const kiln::Status st = kiln::score_choice_tasks(*s.value(), tasks, [&](size_t i, const kiln::ChoiceTaskResult& r) { out[i] = r, seen.push_back(int(i)); });
    REQUIRE_MESSAGE(st.is_ok(), st.message());
    REQUIRE(seen.size() == tasks.size());
    for (size_t i = 0; i < seen.size(); ++i) CHECK(seen[i] == int(i));  // in order
    return out;
}

}  // namespace

TEST_CASE("multiple choice: llama.cpp's HellaSwag, Winogrande and binary formats, and their bad inputs") {
    const std::string path = kiln::test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const kiln::Tokenizer& tok = model.value()->tokenizer();

    // HellaSwag: 16 tasks, 4 endings each, one right; each ending scored from the first token
    // the endings do not share to its end.
    const std::string hs = kiln::test::read_all(kiln::test::data_path("choice_hellaswag.txt"));
    auto h = kiln::load_choice_tasks(ChoiceFormat::HellaSwag, hs, tok);
    REQUIRE_MESSAGE(h.is_ok(), h.message());
    REQUIRE(h->tasks.size() == 16);
    for (const auto& t : h->tasks) {
        REQUIRE(t.tokens.size() == 4);
        CHECK(std::count(t.correct.begin(), t.correct.end(), 1) == 1);
        CHECK(t.common_prefix >= 1);
        for (size_t c = 0; c < 4; ++c) {
            CHECK(t.scored[c].first == t.common_prefix);
            CHECK(t.scored[c].end == int(t.tokens[c].size()));
            CHECK(std::equal(t.tokens[c].begin(), t.tokens[c].begin() + t.common_prefix, t.tokens[0].begin()));
        }
        bool differ = false;  // the choices part right after the prefix
        for (size_t c = 1; c < 4; ++c) differ |= t.tokens[c][size_t(t.common_prefix)] != t.tokens[0][size_t(t.common_prefix)];
        CHECK(differ);
    }
    CHECK(kiln::load_choice_tasks(ChoiceFormat::HellaSwag, hs, tok, 5)->tasks.size() == 5);
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::HellaSwag, "", tok).status(), "not a positive multiple of 6") == "");
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::HellaSwag, hs.substr(0, hs.rfind('\n', hs.size() - 2) + 1), tok).status(), "not a positive multiple of 6") == "");
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::HellaSwag, "ctx\n7\na\nb\nc\nd\n", tok).status(), "line 1: gold ending \"7\"") == "");
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::HellaSwag, "ctx\nx\na\nb\nc\nd\n", tok).status(), "gold ending \"x\"") == "");
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::HellaSwag, "ctx\n0\na\na\na\na\n", tok).status(), "choice 1 has no tokens of its own") == "");

    // Winogrande: the header and the last line (llama.cpp never reads it) are skipped; the
    // words after the blank are scored, less the last token.
    const std::string wg = kiln::test::read_all(kiln::test::data_path("choice_winogrande.csv"));
    auto w = kiln::load_choice_tasks(ChoiceFormat::Winogrande, wg, tok);
    REQUIRE_MESSAGE(w.is_ok(), w.message());
    CHECK(w->tasks.size() == 16);
    REQUIRE(w->skipped.size() == 2);
    CHECK(w->skipped[0].find("line 18: the last line") != std::string::npos);
    CHECK(w->skipped[1].find("line 1: no _") != std::string::npos);
    for (const auto& t : w->tasks) {
        REQUIRE(t.tokens.size() == 2);
        CHECK(int(t.correct[0]) + int(t.correct[1]) == 1);
        for (size_t c = 0; c < 2; ++c) {
            CHECK(t.scored[c].first > t.common_prefix);  // after the choice word
            CHECK(t.scored[c].end == int(t.tokens[c].size()) - 1);
        }
        // Both choices score the same words: the tokens after the blank.
        CHECK(std::equal(t.tokens[0].begin() + t.scored[0].first, t.tokens[0].end(), t.tokens[1].begin() + t.scored[1].first, t.tokens[1].end()));
    }
    auto bad_lines = kiln::load_choice_tasks(ChoiceFormat::Winogrande, "0,A _ b c d e f.,x,y,2\n1,no blank here.,x,y,1\n2,A _ b c d e f.,x,y,3\n3,short,line\n4,A _ b c d e f.,x,y,1\nlast", tok);
    REQUIRE(bad_lines.is_ok());
    CHECK(bad_lines->tasks.size() == 2);
    CHECK(bad_lines->skipped.size() == 4);
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::Winogrande, "a,b,c\nd,e,f\n", tok).status(), "Winogrande data: no tasks") == "");

    // The binary file: 12 tasks of 4 answers; damaged copies are errors naming the task.
    const std::string mc = kiln::test::read_all(kiln::test::data_path("choice_mc.bin"));
    auto m = kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, mc, tok);
    REQUIRE_MESSAGE(m.is_ok(), m.message());
    CHECK(m->tasks.size() == 12);
    CHECK(kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, mc, tok, 6)->tasks.size() == 6);
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, mc.substr(0, mc.size() - 3), tok).status(), "task 12 is truncated") == "");
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, std::string(4, '\0'), tok).status(), "no tasks") == "");
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, std::string("\xff\xff\xff\x0f", 4), tok).status(), "tasks announced") == "");
    std::string big = mc;
    big[4 + 4 * 12 + 4 + 36] = '\x7f';  // task 1's answer count (after its 36-byte question) -> 127 > 100
    CHECK(message_lacks(kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, big, tok).status(), "task 1 is truncated or malformed") == "");
    for (size_t cut = 0; cut < mc.size(); cut += 37) CHECK_FALSE(kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, mc.substr(0, cut), tok).is_ok());

    // Accuracy, its standard error and Wilson interval as llama.cpp prints them (12 of 16).
    const kiln::ChoiceSummary sum = kiln::summarize_choices(12, 16, 64);
    CHECK(sum.accuracy == 0.75);
    CHECK(sum.stderr_ == doctest::Approx(0.111803).epsilon(1e-5));
    CHECK(sum.wilson_low == doctest::Approx(0.505017).epsilon(1e-5));
    CHECK(sum.wilson_high == doctest::Approx(0.898179).epsilon(1e-5));
    CHECK(sum.chance == 0.25);
}

TEST_CASE("model: multiple choice: scores batched in groups equal each choice run alone, and llama-perplexity's answers") {
    const std::string path = kiln::test::model_path("hf/smollm2");
    if (!kiln::test::require_file(path)) return;
    auto model = kiln::Model::load(path);
    REQUIRE(model.is_ok());
    const kiln::Tokenizer& tok = model.value()->tokenizer();
    const auto reference = nlohmann::json::parse(kiln::test::read_all(kiln::test::data_path("choice_llama_smollm2.json")));
    auto right = [](const std::vector<kiln::ChoiceTaskResult>& rs) {
        std::vector<int> v;
        for (const auto& r : rs) v.push_back(r.right);
        return v;
    };

    auto h = kiln::load_choice_tasks(ChoiceFormat::HellaSwag, kiln::test::read_all(kiln::test::data_path("choice_hellaswag.txt")), tok);
    REQUIRE(h.is_ok());
    // Many tasks per group; a small cache (one task per group: 5 pages of 64 positions, 8 in
    // all); one sequence (each choice alone).
    const auto grouped = score(model.value(), h->tasks, 2048, 64), small = score(model.value(), h->tasks, 512, 64), alone = score(model.value(), h->tasks, 256, 1);
    for (size_t i = 0; i < h->tasks.size(); ++i) {
        const auto plain = scores_alone(model.value(), h->tasks[i]);
        for (size_t c = 0; c < plain.size(); ++c) {
            CAPTURE(i);
            CAPTURE(c);
            // A mean of a few log-probabilities from logits computed in other chunkings: their
            // float rounding (1e-6 of the logits' size) and no more.
            const double tol = 1e-5 * (1 + std::fabs(plain[c]));
            CHECK(std::fabs(grouped[i].scores[c] - plain[c]) <= tol);
            CHECK(std::fabs(small[i].scores[c] - plain[c]) <= tol);
            CHECK(std::fabs(alone[i].scores[c] - plain[c]) <= tol);
        }
        CHECK(grouped[i].picked == int(std::max_element(plain.begin(), plain.end()) - plain.begin()));
    }
    // llama-perplexity on the same weights (F16) and tasks, drawn in its order: the same right answers.
    CHECK(right(grouped) == reference["hellaswag_right"].get<std::vector<int>>());

    const std::string mc = kiln::test::read_all(kiln::test::data_path("choice_mc.bin"));
    CHECK(right(score(model.value(), kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, mc, tok)->tasks, 2048, 64)) ==
          reference["multiple_choice_right"].get<std::vector<int>>());
    CHECK(right(score(model.value(), kiln::load_choice_tasks(ChoiceFormat::MultipleChoice, mc, tok, 6)->tasks, 2048, 64)) ==
          reference["multiple_choice_6_right"].get<std::vector<int>>());

    // Winogrande prints both scores: they agree within the engines' arithmetic (F16 weights
    // and cache: 4e-3 seen), as do the tasks --winogrande-tasks 5 draws.
    const std::string wg = kiln::test::read_all(kiln::test::data_path("choice_winogrande.csv"));
    for (const char* key : {"winogrande", "winogrande_5"}) {
        auto w = kiln::load_choice_tasks(ChoiceFormat::Winogrande, wg, tok, std::string(key) == "winogrande" ? 0 : 5);
        REQUIRE(w.is_ok());
        const auto rs = score(model.value(), w->tasks, 2048, 64);
        const auto& ref = reference[key];
        REQUIRE(rs.size() == ref.size());
        for (size_t i = 0; i < rs.size(); ++i) {
            CAPTURE(key);
            CAPTURE(i);
            CHECK(std::fabs(rs[i].scores[0] - ref[i][0].get<double>()) < 0.01);
            CHECK(std::fabs(rs[i].scores[1] - ref[i][1].get<double>()) < 0.01);
            CHECK(rs[i].picked + 1 == ref[i][2].get<int>());
            CHECK(rs[i].right == (ref[i][2] == ref[i][3]));
        }
    }
}
