// Loads a model through the installed kiln package and greedily generates 8 tokens.
#include <kiln/kiln.h>

#include <cstdio>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: kiln_consumer MODEL.gguf\n");
        return 2;
    }
    auto model = kiln::Model::load(argv[1]);
    if (!model) {
        std::fprintf(stderr, "kiln_consumer: %s\n", model.message().c_str());
        return 1;
    }
    auto session = kiln::Session::create(model.value());
    if (!session) return 1;
    const kiln::Tokenizer& tok = model.value()->tokenizer();
    std::vector<int32_t> ids = tok.encode("The capital of France is", true, false);
    kiln::SamplerParams sp;
    sp.temperature = 0;
    kiln::Sampler sampler(sp, model.value()->config().n_vocab);
    std::string text;
    for (int i = 0; i < 8; ++i) {
        if (!session.value()->forward(ids).is_ok()) return 1;
        const int32_t t = sampler.sample(session.value()->logits());
        text += tok.token_to_piece(t);
        ids = {t};
    }
    std::printf("kiln_consumer: %s\n", text.c_str());
    return text.empty() ? 1 : 0;
}
