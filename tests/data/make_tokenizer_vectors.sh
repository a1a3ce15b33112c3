#!/usr/bin/env bash
# Regenerates tests/data/tokenizer_real_models.json: token ids that llama.cpp's own
# llama-tokenize produces for the real models test_tokenizer.cpp checks kiln against.
#
#   tests/data/make_tokenizer_vectors.sh [path/to/llama-tokenize]
#
# Needs the models fetched by tools/fetch_models.py (in $KILN_CACHE or <repo>/.cache) and a
# built llama-tokenize (default: the llama.cpp vendored by llama-cpp-python 0.3.36 under
# /work/dl/lcp, or $LLAMA_TOKENIZE). Each text is written to a file and passed with
# -f --no-escape, so the bytes reach the tokenizer untouched.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tokenize="${1:-${LLAMA_TOKENIZE:-/work/dl/lcp/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-tokenize}}"
cache="${KILN_CACHE:-$repo/.cache}"
out="$here/tokenizer_real_models.json"

[ -x "$tokenize" ] || { echo "llama-tokenize not found: $tokenize" >&2; exit 1; }

python3 - "$tokenize" "$cache/models" "$out" <<'PY'
import json, os, subprocess, sys, tempfile

tokenize, models_dir, out_path = sys.argv[1:4]

common = [
    "Hello world",
    " Hello,  world!\n\nHow are you?",
    "The year 2024 had 366 days; pi = 3.14159 and 1/3 ~ 0.333.",
    "日本語のテキストと한국어 그리고 Ελληνικά, русский текст.",
    "Emoji: 🦙🚀 😶‍🌫️ 👨‍👩‍👧‍👦 ✅ 🫠",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n-1) + fib(n-2)\n",
    "   leading and trailing   \t\t\n\n\n   ",
    "numbers 1234567890 3.14e-10 0xDEADBEEF 1,000,000 ½ ⅔",
    "café naïve résumé — “quotes” ‘single’ … I'm sure you've seen it, 'RE y'all?",
    "<b>html</b> &amp; {\"json\": [1, 2, null]} // comment\r\nwindows line\r\n",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 ∀x∈ℝ: x² ≥ 0 ⟹ √(x²) = |x|",
    "lorem ipsum dolor sit amet, " * 40,
    "nbsp\u00a0 ideographic\u3000\u3000 thin\u2009 nel\u0085 zwsp\u200b end\u00a0",
]

models = {
    "SmolLM2-135M-Instruct.Q4_1.gguf":
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "gemma-3-270m-q4_k_m.gguf":
        "<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\n",
}

def run(model, data, add_special, parse_special):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
        name = f.name
    try:
        cmd = [tokenize, "-m", model, "-f", name, "--no-escape", "--ids", "--log-disable"]
        if not add_special:
            cmd.append("--no-bos")
        if not parse_special:
            cmd.append("--no-parse-special")
        res = subprocess.run(cmd, check=True, capture_output=True)
    finally:
        os.unlink(name)
    line = [l for l in res.stdout.decode().splitlines() if l.startswith("[")][-1]
    return json.loads(line)

doc = {
    "generated_by": "tests/data/make_tokenizer_vectors.sh with llama.cpp's llama-tokenize "
                    "(llama-cpp-python 0.3.36 vendor tree)",
    "models": [],
}
for model, chat in models.items():
    path = os.path.join(models_dir, model)
    cases = []
    def add(text=None, raw=None, add_special=False, parse_special=False):
        data = raw if raw is not None else text.encode("utf-8")
        case = {"add_special": add_special, "parse_special": parse_special,
                "ids": run(path, data, add_special, parse_special)}
        if raw is not None:
            case["hex"] = raw.hex()
        else:
            case["text"] = text
        cases.append(case)
    for t in common:
        add(t)
    add(common[0], add_special=True)
    add("", add_special=True)
    add(chat, add_special=True, parse_special=True)
    add(chat, parse_special=False)
    add(raw=b"bad utf8: \xff\xfe abc \xe2\x82 \xc3(  \xf0\x9f\x98")
    add(raw=b"-\xc2\xa0\xfe    \xed\xa0\x80\xc2\x85'd\xc0\x80x \xe2\x80\x9d@", parse_special=True)
    doc["models"].append({"file": model, "cases": cases})

# One case per line keeps the file readable and diffs small.
with open(out_path, "w", encoding="utf-8") as f:
    f.write('{\n "generated_by": %s,\n "models": [\n' % json.dumps(doc["generated_by"]))
    for mi, m in enumerate(doc["models"]):
        f.write('  {"file": %s, "cases": [\n' % json.dumps(m["file"]))
        f.write(",\n".join("   " + json.dumps(c, ensure_ascii=False) for c in m["cases"]))
        f.write("\n  ]}%s\n" % ("," if mi + 1 < len(doc["models"]) else ""))
    f.write(" ]\n}\n")
print(f"wrote {out_path}")
PY
