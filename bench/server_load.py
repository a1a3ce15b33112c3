#!/usr/bin/env python3
"""A bounded load on an OpenAI-compatible server (kiln-server or llama-server), from loopback.

    bench/server_load.py --port 8080 [--clients 8] [--requests 4] [--max-tokens 64] [--seed 1]

Each client sends --requests streaming chat requests one after another: greedy, ignore_eos
(every reply is --max-tokens tokens), prompts of mixed lengths that share a system prompt
(as chat front-ends do). Prints one JSON line: aggregate generated tokens/s over the wall
time, median time to first token, median decode tokens/s per request.
"""
import argparse
import http.client
import json
import random
import statistics
import threading
import time

SYSTEM = "You are a concise assistant for a hardware shop. Answer in plain sentences, no lists. " * 4
TOPICS = ["memory bandwidth", "cooling a server", "power supplies", "SSD endurance", "ECC memory", "PCIe lanes", "rack rails",
          "fan noise", "thermal paste", "UPS sizing", "NUMA", "cable management"]


def one_request(port, messages, max_tokens):
    """(seconds to the first token, seconds for the rest, completion tokens) of one streamed request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.time()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    first, tokens = None, None
    for line in r:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        if first is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
            first = time.time()
    end = time.time()
    conn.close()
    return first - t0, end - first, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    plans = [[[{"role": "system", "content": SYSTEM},
               {"role": "user", "content": f"Tell me about {rng.choice(TOPICS)}." + " Be specific." * rng.randint(0, 60)}]
              for _ in range(a.requests)] for _ in range(a.clients)]
    results, errors = [], []

    def client(plan):
        for messages in plan:
            try:
                results.append(one_request(a.port, messages, a.max_tokens))
            except Exception as e:  # noqa: BLE001 (counted and reported)
                errors.append(repr(e))

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    tokens = sum(r[2] or 0 for r in results)
    print(json.dumps({"requests": len(results), "errors": len(errors), "wall_s": round(wall, 2), "tokens": tokens,
                      "aggregate_tps": round(tokens / wall, 2), "ttft_median_s": round(statistics.median(r[0] for r in results), 3),
                      "decode_tps_median": round(statistics.median((r[2] - 1) / r[1] for r in results if r[1] > 0), 2)}))


if __name__ == "__main__":
    main()
