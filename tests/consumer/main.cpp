// Loads a model through the installed kiln package and greedily generates 8 tokens.
#include <kiln/kiln.h>

#include <cstdio>

int main(int argc, char** argv) {
    if (argc != 2) return std::fprintf(stderr, "usage: kiln_consumer MODEL.gguf\n"), 2;
    auto model = kiln::Model::load(argv[1]);
    auto session = model ? kiln::Session::create(model.value()) : kiln::Status::error("%s", model.message().c_str());
    if (!session) return std::fprintf(stderr, "kiln_consumer: %s\n", session.message().c_str()), 1;
    kiln::Sampler sampler({.temperature = 0}, model.value()->config().n_vocab);
    auto prompt = model.value()->tokenizer().encode("The capital of France is", true, false);
    auto out = kiln::generate(*session.value(), sampler, prompt, {.n_predict = 8});
    if (!out) return std::fprintf(stderr, "kiln_consumer: %s\n", out.message().c_str()), 1;
    std::printf("kiln_consumer: %s\n", out->text.c_str());
    return out->text.empty() ? 1 : 0;
}
