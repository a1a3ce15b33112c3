// Constrained generation: a GBNF grammar (llama.cpp's grammar format) restricts which tokens
// may be sampled, so the text always stays inside the grammar (JSON that parses, JSON that
// follows a schema, a fixed set of answers, ...).
//
//   auto g = kiln::Grammar::parse(kiln::json_schema_to_gbnf(schema_text).value()).value();
//   kiln::GrammarMatcher m(g);
//   int32_t t = kiln::sample_constrained(sampler, logits, m, pieces);   // then m.accept(pieces[t])
//
// GBNF: `name ::= alternatives` rules (root is `root`); "literals" with \n \t \" \\ \xHH
// \uHHHH escapes; [character classes] with ranges and ^; `.` any character; ( groups );
// * + ? {m} {m,} {m,n} repetition; # comments.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/sampler.h"
#include "kiln/status.h"

namespace kiln {

class Tokenizer;

class Grammar {
public:
    // Parses GBNF; errors name the line and what is wrong (an undefined rule, a bad escape,
    // an unclosed group, a missing root rule, left recursion).
    static Expected<Grammar> parse(std::string_view gbnf, const std::string& root = "root");
    struct Rules;  // the parsed rules (src/runtime/grammar.cpp)
    const Rules& rules() const { return *rules_; }

private:
    std::shared_ptr<const Rules> rules_;  // immutable: matchers and copies share it
};

// Where one text is in a grammar: the set of parse stacks still alive (a pushdown
// automaton over Unicode code points, as llama.cpp's grammar sampler).
class GrammarMatcher {
public:
    explicit GrammarMatcher(const Grammar& g);
    // Whether appending these UTF-8 bytes keeps the text a prefix of a sentence of the grammar
    // (a character split between tokens is checked once it is whole).
    bool accepts(std::string_view bytes) const;
    // Appends the bytes; false (and no change) when the grammar does not allow them.
    bool accept(std::string_view bytes);
    // The text so far is a whole sentence of the grammar (an end-of-generation token may come).
    bool complete() const;
    // Some character may still follow.
    bool can_continue() const;

    struct State;  // stacks and a partial UTF-8 character

private:
    Grammar grammar_;
    std::shared_ptr<State> state_;
};

// The token pieces sample_constrained() tests (token_to_piece of every id; control tokens
// empty) and which ids end generation: computed once per tokenizer.
struct TokenPieces {
    std::vector<std::string> piece;  // (n_vocab)
    std::vector<uint8_t> eog;        // (n_vocab) 1: an end-of-generation token
    static TokenPieces of(const Tokenizer& tok);
};

// Samples from logits (n_vocab floats) as sampler.sample() does, among the tokens the
// grammar allows only: an end-of-generation token only where the text is complete. Walks
// tokens from the highest logit down until top-k allowed ones are found (all, with top-k
// off), so a grammar costs little where the model already follows it. Returns -1 when no
// token is allowed. The caller then matcher.accept()s the token's piece.
int32_t sample_constrained(Sampler& sampler, const float* logits, const GrammarMatcher& matcher, const TokenPieces& pieces);

// GBNF for any JSON value (root: an object when object_root, as response_format
// json_object asks), whitespace bounded so generation cannot wander.
std::string json_gbnf(bool object_root = true);
// GBNF for the JSON texts a JSON Schema describes: type (or a list of types), properties
// (required ones first in the schema's order, then optional ones), additionalProperties,
// items, minItems/maxItems, minLength/maxLength, enum, const, anyOf/oneOf, $ref into $defs /
// definitions. Errors name the unsupported keyword (pattern, allOf, ...). The schema's rule
// is `root_rule` (another name lets a grammar embed it).
Expected<std::string> json_schema_to_gbnf(const std::string& schema_json, const std::string& root_rule = "root");

}  // namespace kiln
