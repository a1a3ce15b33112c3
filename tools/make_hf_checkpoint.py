#!/usr/bin/env python3
"""Writes a Hugging Face checkpoint directory from a GGUF file, for kiln's HF-loading tests.

The weights are dequantized by the PyPI `gguf` package and written with the `safetensors`
package under their Hugging Face names and layouts (the inverse of llama.cpp's
convert_hf_to_gguf.py: Llama/Mixtral Q and K rows back in the rotate-half order, Gemma norms
as w where the model computes x * (1 + w), per-expert matrices split out of the 3-D tensors);
config.json carries the hyper-parameters under their transformers names, and tokenizer.json
/ tokenizer_config.json are written with the `tokenizers` package (tools/hf_tokenizer_writer.py).

  PYTHONPATH=$(tools/python_deps.sh) python3 tools/make_hf_checkpoint.py MODEL.gguf OUTDIR \\
      [--dtype f16|bf16|f32] [--shards N] [--multimodal]

Matrices are stored in --dtype (default f16), 1-D tensors in f32, as many HF checkpoints
keep their norms. With --shards N > 1 the tensors are spread over N files named by a
model.safetensors.index.json, as large checkpoints are. --multimodal (Gemma 3) writes the
layout of the 4B-27B image+text checkpoints: Gemma3ForConditionalGeneration, the text
model's config as text_config without the keys equal to transformers' defaults, its
tensors under language_model., and a small stand-in vision tower and projector.
"""
import argparse
import json
import os
import sys

import numpy as np
import gguf
from gguf.quants import dequantize
from safetensors import TensorSpec, serialize_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_tokenizer_writer import write_tokenizer_files  # noqa: E402

CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
           "qwen3moe": "Qwen3MoeForCausalLM", "qwen2moe": "Qwen2MoeForCausalLM", "gemma3": "Gemma3ForCausalLM"}
MODEL_TYPES = {"LlamaForCausalLM": "llama", "MixtralForCausalLM": "mixtral", "Qwen2ForCausalLM": "qwen2",
               "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe", "Qwen2MoeForCausalLM": "qwen2_moe",
               "Gemma3ForCausalLM": "gemma3_text"}
LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias", "attn_v.bias": "self_attn.v_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
    "ffn_gate_inp.weight": "mlp.gate.weight",
    "ffn_gate_shexp.weight": "mlp.shared_expert.gate_proj.weight", "ffn_up_shexp.weight": "mlp.shared_expert.up_proj.weight",
    "ffn_down_shexp.weight": "mlp.shared_expert.down_proj.weight", "ffn_gate_inp_shexp.weight": "mlp.shared_expert_gate.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def unpermute(w, n_head):
    """GGUF llama rows (adjacent RoPE pairs) -> HF rows (rotate-half): HF row j*d/2 + i = GGUF row 2i + j."""
    rows, cols = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (numpy has no bfloat16 type)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def encode(x, dtype):
    """(safetensors dtype name, contiguous array holding the bytes) for one tensor."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1 or dtype == "f32":
        return "float32", x
    if dtype == "bf16":
        return "bfloat16", to_bf16(x)
    return "float16", x.astype(np.float16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--multimodal", action="store_true")
    args = ap.parse_args()

    r = gguf.GGUFReader(args.model)
    arch = field(r, "general.architecture")
    if arch not in CLASSES:
        sys.exit(f"make_hf_checkpoint: architecture '{arch}' has no Hugging Face class here")
    n_expert = field(r, f"{arch}.expert_count", 0)
    cls = "MixtralForCausalLM" if arch == "llama" and n_expert else CLASSES[arch]
    n_embd = field(r, f"{arch}.embedding_length")
    n_head = field(r, f"{arch}.attention.head_count")
    n_head_kv = field(r, f"{arch}.attention.head_count_kv", n_head)
    head_dim = field(r, f"{arch}.attention.key_length", n_embd // n_head)
    names = {t.name for t in r.tensors}
    tokens = field(r, "tokenizer.ggml.tokens")

    cfg = {
        "architectures": [cls], "model_type": MODEL_TYPES[cls],
        "hidden_size": n_embd, "num_hidden_layers": field(r, f"{arch}.block_count"),
        "num_attention_heads": n_head, "num_key_value_heads": n_head_kv, "head_dim": head_dim,
        "max_position_embeddings": field(r, f"{arch}.context_length", 4096),
        "rms_norm_eps": field(r, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": field(r, f"{arch}.rope.freq_base", 10000.0),
        "vocab_size": len(tokens), "tie_word_embeddings": "output.weight" not in names,
        "torch_dtype": {"f16": "float16", "bf16": "bfloat16", "f32": "float32"}[args.dtype],
    }
    if field(r, f"{arch}.feed_forward_length"):
        cfg["intermediate_size"] = field(r, f"{arch}.feed_forward_length")
    for key, hf in (("tokenizer.ggml.bos_token_id", "bos_token_id"), ("tokenizer.ggml.eos_token_id", "eos_token_id")):
        if field(r, key) is not None:
            cfg[hf] = field(r, key)
    if n_expert:
        cfg["num_local_experts" if cls == "MixtralForCausalLM" else "num_experts"] = n_expert
        cfg["num_experts_per_tok"] = field(r, f"{arch}.expert_used_count")
        if field(r, f"{arch}.expert_feed_forward_length"):
            cfg["moe_intermediate_size"] = field(r, f"{arch}.expert_feed_forward_length")
        if field(r, f"{arch}.expert_shared_feed_forward_length"):
            cfg["shared_expert_intermediate_size"] = field(r, f"{arch}.expert_shared_feed_forward_length")
        if arch != "llama":
            cfg.update(decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=arch == "qwen3moe")
    if arch == "gemma3":
        cfg.update(sliding_window=field(r, "gemma3.attention.sliding_window", 512),
                   sliding_window_pattern=field(r, "gemma3.attention.sliding_window_pattern", 6),
                   rope_local_base_freq=10000.0, query_pre_attn_scalar=head_dim,
                   hidden_activation="gelu_pytorch_tanh", final_logit_softcapping=None, attn_logit_softcapping=None)
    if "rope_freqs.weight" in names:  # what kiln-synth --llama3-rope writes: Llama 3.1's parameters
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192}

    tensors = {}
    for t in r.tensors:
        if t.name == "rope_freqs.weight":
            continue  # config.json's rope_scaling instead
        shape = [int(x) for x in reversed(t.shape.tolist())]  # numpy order: outermost first
        w = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if t.name == "token_embd.weight":
            tensors["model.embed_tokens.weight"] = w
            continue
        if t.name == "output_norm.weight":
            tensors["model.norm.weight"] = w - 1 if arch == "gemma3" else w
            continue
        if t.name == "output.weight":
            tensors["lm_head.weight"] = w
            continue
        _, layer, rest = t.name.split(".", 2)
        prefix = f"model.layers.{layer}."
        if rest.endswith("_exps.weight"):
            proj = rest.split("_")[1]  # gate, up, down
            moe = "block_sparse_moe." if cls == "MixtralForCausalLM" else "mlp."
            hf_proj = {"gate": "w1", "up": "w3", "down": "w2"}[proj] if cls == "MixtralForCausalLM" else f"{proj}_proj"
            for e in range(w.shape[0]):
                tensors[f"{prefix}{moe}experts.{e}.{hf_proj}.weight"] = w[e]
            continue
        if rest == "ffn_norm.weight":
            hf = "pre_feedforward_layernorm.weight" if arch == "gemma3" else "post_attention_layernorm.weight"
        elif rest == "ffn_gate_inp.weight" and cls == "MixtralForCausalLM":
            hf = "block_sparse_moe.gate.weight"
        else:
            hf = LAYER_NAMES[rest]
        if arch == "llama" and rest in ("attn_q.weight", "attn_k.weight"):
            w = unpermute(w, n_head if rest == "attn_q.weight" else n_head_kv)
        if arch == "gemma3" and rest.endswith("norm.weight"):
            w = w - 1
        if rest == "ffn_gate_inp_shexp.weight":
            w = w.reshape(1, -1)  # nn.Linear(hidden, 1)
        tensors[prefix + hf] = w

    if args.multimodal:
        if arch != "gemma3":
            sys.exit("make_hf_checkpoint: --multimodal is the Gemma 3 image+text layout")
        tensors = {"language_model." + k: v for k, v in tensors.items()}
        tensors["vision_tower.vision_model.embeddings.patch_embedding.weight"] = np.ones((4, 3, 2, 2), np.float32)
        tensors["multi_modal_projector.mm_input_projection_weight"] = np.ones((8, n_embd), np.float32)
        defaults = {"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "rms_norm_eps": 1e-6,
                    "rope_theta": 1000000.0, "max_position_embeddings": 131072, "query_pre_attn_scalar": 256,
                    "rope_local_base_freq": 10000.0, "sliding_window_pattern": 6}
        text = {k: v for k, v in cfg.items() if k not in ("architectures", "tie_word_embeddings") and defaults.get(k) != v}
        text["model_type"] = "gemma3_text"
        cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": text,
               "vision_config": {"model_type": "siglip_vision_model"}, "tie_word_embeddings": cfg["tie_word_embeddings"]}
        cls = "Gemma3ForConditionalGeneration"

    os.makedirs(args.out, exist_ok=True)
    names = sorted(tensors)
    n = max(1, args.shards)
    files = ["model.safetensors"] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    weight_map, total = {}, 0
    for i, fname in enumerate(files):
        arrays = {k: encode(tensors[k], args.dtype) for k in names[i::n]}  # kept alive while written
        specs = {k: TensorSpec(dtype=dt, shape=list(tensors[k].shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
                 for k, (dt, a) in arrays.items()}
        serialize_file(specs, os.path.join(args.out, fname), metadata={"format": "pt"})
        for k, (_, a) in arrays.items():
            weight_map[k] = fname
            total += a.nbytes
    if n > 1:
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    write_tokenizer_files(r, args.out)
    with open(os.path.join(args.out, "config.json"), "w") as f:  # last: it marks the directory complete
        json.dump(cfg, f, indent=2)
    print(f"make_hf_checkpoint: {args.model} -> {args.out} ({cls}, {len(tensors)} tensors, {n} file(s))", file=sys.stderr)


if __name__ == "__main__":
    main()
