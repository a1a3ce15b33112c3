#!/usr/bin/env python3
"""Records llama.cpp's greedy tokens and logits on the real models, as kiln's reference.

llama.cpp comes from llama-cpp-python's source distribution (PyPI), see README.md here:
  LLAMA_CPP_LIB_PATH=<llama.cpp build>/bin PYTHONPATH=<sdist root> \\
      python3 tests/data/make_reference.py MODEL.gguf OUT.json

For each prompt it stores:
  - the prompt's token ids (BOS per the model, no special-token parsing);
  - the 64 tokens llama.cpp generates greedily, and at each step the margin between its
    top-1 and top-2 logits (where the margin is tiny, any two engines may pick either);
  - the 256 largest logits (id, value) at the last prompt position and after the 64th
    generated token ("final");
  - llama.cpp's own numeric noise when the same tokens run with flash attention on
    instead of off (it rounds differently): the largest change of those logits, and the
    token it would pick at each step. The tests derive their tolerances from these.
With --chat it also records conversations (CHATS) rendered by llama-cpp-python from the
model's own tokenizer.chat_template (Jinja2, as its chat completion does), tokenized with
special tokens parsed: the case then carries "messages", and the test renders them with
kiln's template. A conversation without a system turn shows the default system prompt the
template inserts.
Settings are llama-cpp-python's defaults: F16 KV cache, no flash attention, n_batch 512.
"""
import json
import sys

import numpy as np
import llama_cpp

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea, there lived",
    "The three primary colors are",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes,",
    "Here is a list of the planets in our solar system:\n1. Mercury\n2.",
    "The quick brown fox jumps over the lazy dog. This sentence is famous because",
    "import numpy as np\n\n# Create a 3x3 identity matrix\n",
    "Photosynthesis is the process by which plants",
    "In 1969, Neil Armstrong became the first person to",
    "1, 2, 3, 4, 5, 6, 7, 8,",
    "Monday, Tuesday, Wednesday,",
    "The first ten prime numbers are 2, 3, 5, 7,",
    "January, February, March, April,",
    "for i in range(10):\n    print(i)\n\nfor j in range(10):\n",
    "<html>\n<head>\n<title>",
    "Q: What is 2 + 2?\nA:",
    "A, B, C, D, E, F, G,",
]
CHATS = [
    [{"role": "user", "content": "Write a Python function that reverses a string."}],
    [{"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "What does this do?\n\nfor i in range(3):\n    print(i * i)"},
     {"role": "assistant", "content": "It prints the squares 0, 1 and 4."},
     {"role": "user", "content": "Rewrite it as a list comprehension."}],
]
N_GEN = 64
TOP = 256


def logits_of(llm):
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def top(logits):
    order = np.argsort(-logits, kind="stable")[:TOP]
    return {"ids": [int(i) for i in order], "values": [float(logits[i]) for i in order]}


def run(llm, ids, gen=None):
    """Greedy from ids, or teacher-forced through gen: (argmaxes, margins, first, final)."""
    llm.reset()
    llm.eval(ids)
    first = logits_of(llm)
    picks, margins = [], []
    lg = first
    for i in range(N_GEN):
        order = np.argsort(-lg, kind="stable")[:2]
        picks.append(int(order[0]))
        margins.append(float(lg[order[0]] - lg[order[1]]))
        llm.eval([picks[-1] if gen is None else gen[i]])
        lg = logits_of(llm)
    return picks, margins, first, lg


def chat_prompt(llm, messages):
    """The conversation as llama-cpp-python renders it from the model's chat template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    meta = llm.metadata
    token = lambda key: llm.detokenize([int(meta[key])], special=True).decode() if key in meta else ""
    fmt = Jinja2ChatFormatter(meta["tokenizer.chat_template"], eos_token=token("tokenizer.ggml.eos_token_id"),
                              bos_token=token("tokenizer.ggml.bos_token_id"))
    return fmt(messages=messages).prompt


def main(model, out_path, chat=False):
    base = dict(model_path=model, n_ctx=512, n_threads=2, n_batch=512, seed=0, verbose=False)
    llm = llama_cpp.Llama(**base)
    llm_fa = llama_cpp.Llama(**base, flash_attn=True)
    cases = []
    inputs = [(p, None) for p in PROMPTS] + ([(chat_prompt(llm, m), m) for m in CHATS] if chat else [])
    for prompt, messages in inputs:
        # a rendered conversation holds special-token text (<|im_start|>), parsed as such
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=messages is not None)
        gen, margins, first, final = run(llm, ids)
        fa_picks, _, first_fa, final_fa = run(llm_fa, ids, gen)
        t_first, t_final = top(first), top(final)
        noise = max(float(np.max(np.abs(first[t_first["ids"]] - first_fa[t_first["ids"]]))),
                    float(np.max(np.abs(final[t_final["ids"]] - final_fa[t_final["ids"]]))))
        cases.append({"prompt": prompt, **({"messages": messages} if messages else {}), "prompt_ids": ids, "generated": gen, "margins": margins,
                      "prompt_logits": t_first, "final_logits": t_final, "llama_fa_noise": noise,
                      "llama_fa_picks": fa_picks})
        print(f"{prompt[:40]!r}: min margin {min(margins):.3f}, fa noise {noise:.3f}, "
              f"fa disagrees {sum(a != b for a, b in zip(fa_picks, gen))}/{N_GEN}: "
              f"{llm.detokenize(gen).decode(errors='replace')[:60]!r}", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump({"model": model.split("/")[-1], "llama_cpp_python": llama_cpp.__version__, "n_gen": N_GEN,
                   "cases": cases}, f)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--chat"]
    if len(args) != 2:
        raise SystemExit("usage: make_reference.py [--chat] MODEL.gguf OUT.json")
    main(args[0], args[1], chat="--chat" in sys.argv[1:])
