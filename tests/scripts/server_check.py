#!/usr/bin/env python3
"""kiln-server end to end, on loopback, with the official `openai` client and raw HTTP.

    PYTHONPATH=$(tools/python_deps.sh server) tests/scripts/server_check.py BUILD_DIR

Starts kiln-server on free ports with SmolLM2 (and the Qwen2.5-Coder pair when fetched)
and checks: chat and completions against kiln-generate's greedy text, streaming chunks
that reassemble to the non-streamed reply, stop strings, usage counts, logprobs,
tokenize/detokenize, json_object / json_schema / GBNF output that parses and follows the
schema, tool calls (the Qwen pair), prompt-lookup and draft-model drafting (the same greedy text), every error case with its status code, the prefix cache across chat
turns, a client that disconnects mid-stream (its slot freed, seen in /metrics), a full
queue (503), the API key (401), a bounded load test (16 clients x 8 requests, every greedy
reply equal to the same request served alone) and SIGTERM (streams end, exit 0).
Exits 1 on the first failed group, printing what differed.
"""
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


def model_path(name):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools/fetch_models.py"), name], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


class Server:
    """kiln-server on a free loopback port; stderr is kept for the failure report."""

    def __init__(self, model, *args):
        self.proc = subprocess.Popen([os.path.join(BUILD, "kiln-server"), "-m", model, "--port", "0", "-t", "2", *args],
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 120
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise RuntimeError("kiln-server did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def client(self, key="none"):
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=300)

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text) over raw HTTP."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(method, path, body=data, headers=headers or {"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read().decode("utf-8", "replace")
        conn.close()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw

    def metrics(self):
        _, text = self.request("GET", "/metrics")
        return {k: float(v) for k, v in re.findall(r"^(kiln_\w+) (\S+)$", text, re.M)}

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def sse_events(sock_file):
    """Yields the data of each server-sent event from a socket's file (chunked encoding decoded by http.client)."""
    for line in sock_file:
        line = line.decode() if isinstance(line, bytes) else line
        if line.startswith("data: "):
            yield line[6:].strip()


def generate_text(model, prompt, n, chat=True):
    args = [os.path.join(BUILD, "kiln-generate"), "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "2"]
    out = subprocess.run(args + (["--chat"] if chat else []), capture_output=True, text=True, check=True).stdout
    return out[:-1] if out.endswith("\n") else out


def check_replies_match_generate(srv, model, label):
    """Greedy chat and completion replies equal kiln-generate's; streams reassemble to them."""
    c = srv.client()
    q = "What is the capital of France?"
    chat = c.chat.completions.create(model=srv.model_id, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=24)
    want = generate_text(model, q, 24)
    check(chat.choices[0].message.content == want, f"{label}: chat reply {chat.choices[0].message.content!r} != kiln-generate --chat {want!r}")
    parts, usage, finish = [], None, None
    for chunk in c.chat.completions.create(model=srv.model_id, messages=[{"role": "user", "content": q}], temperature=0, max_tokens=24,
                                           stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            parts.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    check("".join(parts) == chat.choices[0].message.content, f"{label}: chat stream {''.join(parts)!r} != {chat.choices[0].message.content!r}")
    check(finish == chat.choices[0].finish_reason, f"{label}: stream finish {finish} != {chat.choices[0].finish_reason}")
    check(usage is not None and usage.completion_tokens == chat.usage.completion_tokens and usage.prompt_tokens == chat.usage.prompt_tokens,
          f"{label}: stream usage {usage} != {chat.usage}")
    p = "The three primary colours are"
    comp = c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=20)
    want = generate_text(model, p, 20, chat=False)
    check(comp.choices[0].text == want, f"{label}: completion {comp.choices[0].text!r} != kiln-generate {want!r}")
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=20, stream=True)
                       if ch.choices)
    check(streamed == comp.choices[0].text, f"{label}: completion stream {streamed!r} != {comp.choices[0].text!r}")


def check_api(srv):
    c = srv.client()
    ids = [m.id for m in c.models.list().data]
    check(ids == [srv.model_id], f"/v1/models lists {ids}")
    check(srv.request("GET", "/health") == (200, {"status": "ok"}), "/health")
    # stop strings: the text up to the first occurrence, finish_reason stop
    p = "Once upon a time, in a small village,"
    full = c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=40, extra_body={"ignore_eos": True})
    text = full.choices[0].text
    check(full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 40, f"ignore_eos + max_tokens: {full.usage}, {full.choices[0].finish_reason}")
    words = [w for w in text.split(" ") if len(w) > 3]
    check(len(words) >= 2, f"a reply to cut: {text!r}")
    stop = words[len(words) // 2]
    cut = c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=40, stop=[stop, "\u00a7never"])
    check(cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop",
          f"stop {stop!r}: {cut.choices[0].text!r} ({cut.choices[0].finish_reason}) from {text!r}")
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=40, stop=stop, stream=True)
                       if ch.choices)
    check(streamed == cut.choices[0].text, f"stop string, streamed: {streamed!r} != {cut.choices[0].text!r}")
    # usage: the prompt's tokens as /tokenize counts them with BOS
    status, tok = srv.request("POST", "/tokenize", {"content": p, "add_special": True})
    check(status == 200 and full.usage.prompt_tokens == len(tok["tokens"]), f"usage.prompt_tokens {full.usage.prompt_tokens} vs /tokenize {tok}")
    # tokenize / detokenize round trip
    s = "Héllo wörld 👋 <|im_start|> tabs\tand\nnewlines"
    _, t = srv.request("POST", "/tokenize", {"content": s})
    _, d = srv.request("POST", "/detokenize", {"tokens": t["tokens"]})
    check(d.get("content") == s, f"detokenize(tokenize(s)) = {d!r}")
    _, tp = srv.request("POST", "/tokenize", {"content": "Hello world", "with_pieces": True})
    check("".join(x["piece"] for x in tp["tokens"]) == "Hello world", f"with_pieces: {tp}")
    # logprobs: greedy picks are the top alternative; log probabilities are <= 0 and sorted
    r = c.chat.completions.create(model=srv.model_id, messages=[{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=8,
                                  logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens, f"logprobs entries {len(content)} != {r.usage.completion_tokens} tokens")
    for e in content:
        tops = [t.logprob for t in e.top_logprobs]
        check(len(tops) == 3 and tops == sorted(tops, reverse=True) and e.logprob <= 0 and e.token == e.top_logprobs[0].token
              and abs(e.logprob - tops[0]) < 1e-6 and sum(2.718281828 ** x for x in tops) <= 1.0001, f"logprob entry {e}")
    check("".join(e.token for e in content) == r.choices[0].message.content, "logprob tokens spell the reply")
    cl = c.completions.create(model=srv.model_id, prompt="1, 2, 3,", temperature=0, max_tokens=5, logprobs=2)
    lp = cl.choices[0].logprobs
    check(len(lp.tokens) == 5 and len(lp.token_logprobs) == 5 and all(len(t) <= 2 for t in lp.top_logprobs) and "".join(lp.tokens) == cl.choices[0].text,
          f"completion logprobs {lp}")


CAT_SCHEMA = {"type": "object", "required": ["name", "legs", "colour"],
              "properties": {"name": {"type": "string", "maxLength": 16}, "legs": {"type": "integer"}, "colour": {"enum": ["black", "white", "ginger"]},
                             "toys": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3}}}


def follows_cat_schema(v):
    return (isinstance(v, dict) and set(v) <= {"name", "legs", "colour", "toys"} and isinstance(v.get("name"), str) and len(v["name"]) <= 16
            and isinstance(v.get("legs"), int) and v.get("colour") in ("black", "white", "ginger")
            and (("toys" not in v) or (isinstance(v["toys"], list) and len(v["toys"]) <= 3 and all(isinstance(t, str) and len(t) <= 16 for t in v["toys"]))))


def check_structured(srv):
    """response_format json_object / json_schema and a GBNF grammar: replies parse and follow the schema."""
    c = srv.client()
    msgs = [{"role": "user", "content": "Describe a cat as JSON."}]
    for temperature in (0, 0.8):
        r = c.chat.completions.create(model=srv.model_id, messages=msgs, temperature=temperature, seed=5, max_tokens=400,
                                      response_format={"type": "json_object"})
        if r.choices[0].finish_reason == "stop":  # (a small model may ramble on past max_tokens)
            try:
                v = json.loads(r.choices[0].message.content)
                check(isinstance(v, dict), f"json_object gives an object: {v!r}")
            except ValueError:
                check(False, f"json_object reply does not parse: {r.choices[0].message.content!r}")
        fmt = {"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT_SCHEMA, "strict": True}}
        r = c.chat.completions.create(model=srv.model_id, messages=msgs, temperature=temperature, seed=5, max_tokens=200, response_format=fmt)
        text = r.choices[0].message.content
        try:
            check(follows_cat_schema(json.loads(text)) and r.choices[0].finish_reason == "stop", f"json_schema reply {text!r} ({r.choices[0].finish_reason})")
        except ValueError:
            check(False, f"json_schema reply does not parse: {text!r}")
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model=srv.model_id, messages=msgs, temperature=temperature, seed=5, max_tokens=200, response_format=fmt, stream=True) if ch.choices)
        check(streamed == text, f"json_schema streamed {streamed!r} != {text!r}")
    r = c.completions.create(model=srv.model_id, prompt="Is the sky blue? Answer:", temperature=0.9, seed=1, max_tokens=8,
                             extra_body={"grammar": 'root ::= " " ("yes" | "no") "."'})
    check(r.choices[0].text in (" yes.", " no.") and r.choices[0].finish_reason == "stop", f"GBNF grammar reply {r.choices[0].text!r}")


def check_speculative(srv):
    """Prompt lookup inside the server: the same greedy text with and without drafts, counted in /metrics."""
    c = srv.client()
    p = "Repeat exactly: alpha beta gamma delta epsilon zeta eta theta. Again: alpha beta gamma delta epsilon zeta eta theta. Again:"
    before = srv.metrics()
    spec = c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=40, extra_body={"ignore_eos": True})
    after = srv.metrics()
    plain = c.completions.create(model=srv.model_id, prompt=p, temperature=0, max_tokens=40, extra_body={"ignore_eos": True, "speculative": False})
    check(spec.choices[0].text == plain.choices[0].text, f"lookup drafts change the reply: {spec.choices[0].text!r} != {plain.choices[0].text!r}")
    drafted = after["kiln_speculative_drafted_total"] - before["kiln_speculative_drafted_total"]
    accepted = after["kiln_speculative_accepted_total"] - before["kiln_speculative_accepted_total"]
    check(drafted > 0 and accepted > 0, f"drafts counted: {accepted} of {drafted}")
    check(srv.metrics()["kiln_speculative_drafted_total"] == after["kiln_speculative_drafted_total"], "speculative: false drafts nothing")


def check_errors(srv):
    n_ctx = srv.request("GET", "/v1/models")[1]["data"][0]["meta"]["n_ctx_per_seq"]
    long_prompt = "word " * (n_ctx + 10)
    cases = [
        ("malformed JSON", "POST", "/v1/chat/completions", '{"messages": [', 400),
        ("body not an object", "POST", "/v1/completions", "[1, 2]", 400),
        ("no messages", "POST", "/v1/chat/completions", {"temperature": 0}, 400),
        ("messages not an array", "POST", "/v1/chat/completions", {"messages": "hi"}, 400),
        ("bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400),
        ("temperature a string", "POST", "/v1/completions", {"prompt": "x", "temperature": "hot"}, 400),
        ("top_p out of range", "POST", "/v1/completions", {"prompt": "x", "top_p": 3}, 400),
        ("max_tokens a float", "POST", "/v1/completions", {"prompt": "x", "max_tokens": 1.5}, 400),
        ("stop not strings", "POST", "/v1/completions", {"prompt": "x", "stop": [1]}, 400),
        ("n = 2", "POST", "/v1/completions", {"prompt": "x", "n": 2}, 400),
        ("unknown model", "POST", "/v1/completions", {"prompt": "x", "model": "gpt-9"}, 400),
        ("token out of vocabulary", "POST", "/v1/completions", {"prompt": [1, 99999999]}, 400),
        ("empty prompt", "POST", "/v1/completions", {"prompt": ""}, 400),
        ("too-long prompt", "POST", "/v1/completions", {"prompt": long_prompt}, 400),
        ("max_tokens past the context", "POST", "/v1/completions", {"prompt": "x", "max_tokens": n_ctx + 1}, 400),
        ("json_schema without a schema", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}, 400),
        ("unsupported schema keyword", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                                          "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "string", "pattern": "a"}}}}, 400),
        ("bad response_format type", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}, 400),
        ("bad GBNF grammar", "POST", "/v1/completions", {"prompt": "x", "grammar": "root ::= undefined-rule"}, 400),
        ("tools on a template without tool calls", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
        ("tool_choice not a choice", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "tool_choice": "maybe"}, 400),
        ("unknown endpoint", "GET", "/v2/nothing", None, 404),
        ("tokenize without content", "POST", "/tokenize", {"text": "x"}, 400),
        ("detokenize bad id", "POST", "/detokenize", {"tokens": [-1]}, 400),
        ("body too large", "POST", "/v1/completions", '{"prompt": "' + "x" * (9 << 20) + '"}', 413),
    ]
    for what, method, path, body, want in cases:
        status, reply = srv.request(method, path, body)
        ok = status == want and isinstance(reply, dict) and isinstance(reply.get("error"), dict) and reply["error"].get("message")
        check(ok, f"{what}: HTTP {status} {str(reply)[:200]} (want {want} with an error object)")
    # random damage to valid bodies: any status but 5xx, and the server lives on
    rng = random.Random(3)
    valid = [json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0.5, "stop": ["x"], "logprobs": True}),
             json.dumps({"prompt": [1, 2, 3], "max_tokens": 2, "response_format": {"type": "json_object"}, "seed": 4}),
             json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "tools": [{"type": "function", "function": {"name": "f"}}]})]
    for k in range(150):
        b = bytearray(rng.choice(valid).encode())
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            op = rng.randrange(3)
            if op == 0:
                b[i] = rng.choice(b'{}[]":,0-9aeZ\\ \x00\xff')
            elif op == 1:
                del b[i]
            else:
                b[i:i] = rng.choice([b'null', b'-1', b'1e309', b'"', b'[', b'{"a":', b'99999999999999999999'])
        path = "/v1/completions" if b"prompt" in b else "/v1/chat/completions"
        try:
            status, _ = srv.request("POST", path, bytes(b))
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            check(False, f"damaged body {bytes(b)[:120]!r}: {e!r}")
            break
        if not check(status < 500, f"damaged body {bytes(b)[:160]!r}: HTTP {status}"):
            break
    # a header past the server's limit: refused, and the server lives on
    try:
        srv.request("GET", "/health", headers={"X-Big": "y" * 20000})
    except (ConnectionError, http.client.HTTPException, OSError):
        pass
    check(srv.request("GET", "/health")[0] == 200, "alive after an oversized header")
    # the openai client sees the error as its exception type
    try:
        srv.client().completions.create(model=srv.model_id, prompt="x", temperature=-1)
        check(False, "temperature -1 accepted")
    except openai.BadRequestError as e:
        check("temperature" in str(e), f"BadRequestError names the field: {e}")


def check_prefix_cache(srv):
    c = srv.client()
    system = "You are a museum guide. " + " ".join(f"Room {i} holds paintings from the {1500 + 10 * i}s." for i in range(20))
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "Which room has the 1600s?"}]
    before = srv.metrics()
    r1 = c.chat.completions.create(model=srv.model_id, messages=msgs, temperature=0, max_tokens=16)
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content}, {"role": "user", "content": "And the 1650s?"}]
    r2 = c.chat.completions.create(model=srv.model_id, messages=msgs, temperature=0, max_tokens=16)
    cached = r2.usage.prompt_tokens_details.cached_tokens
    check(cached >= (r1.usage.prompt_tokens - 1) // 64 * 64 and cached > 0,
          f"turn 2 reuses turn 1: {cached} cached of {r2.usage.prompt_tokens} (turn 1 prompt {r1.usage.prompt_tokens})")
    after = srv.metrics()
    check(after["kiln_prefix_cache_hits_total"] > before["kiln_prefix_cache_hits_total"], "prefix cache hits counted in /metrics")
    check(after["kiln_prompt_tokens_cached_total"] - before["kiln_prompt_tokens_cached_total"] >= cached, "cached prompt tokens counted")
    # cache_prompt false: same prompt computed in full, same greedy reply (page-aligned reuse is exact)
    r3 = c.chat.completions.create(model=srv.model_id, messages=msgs[:2], temperature=0, max_tokens=16, extra_body={"cache_prompt": False})
    check(r3.usage.prompt_tokens_details.cached_tokens == 0 and r3.choices[0].message.content == r1.choices[0].message.content,
          f"uncached turn 1 {r3.choices[0].message.content!r} != {r1.choices[0].message.content!r}")


def open_stream(srv, body):
    """A streaming request on a raw socket; returns (socket, file) once the headers are in."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=120)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    f = s.makefile("rb")
    return s, f


def read_events(f, n):
    """Reads until n 'data:' lines have arrived (raw chunked body lines)."""
    got = []
    while len(got) < n:
        line = f.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            got.append(line[6:].strip().decode())
    return got


def wait_metric(srv, name, pred, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = srv.metrics().get(name)
        if v is not None and pred(v):
            return True
        time.sleep(0.1)
    return False


def check_disconnect(srv):
    before = srv.metrics()["kiln_requests_cancelled_total"]
    s, f = open_stream(srv, {"prompt": "Count from one to a thousand:", "max_tokens": 900, "ignore_eos": True, "stream": True, "temperature": 0})
    check(len(read_events(f, 3)) == 3, "stream started")
    check(srv.metrics()["kiln_requests_running"] >= 1, "the stream holds a slot")
    s.shutdown(socket.SHUT_RDWR)
    s.close()
    check(wait_metric(srv, "kiln_requests_cancelled_total", lambda v: v == before + 1), "a client gone mid-stream cancels its request")
    check(wait_metric(srv, "kiln_requests_running", lambda v: v == 0), "... and frees its slot")


def check_queue_full(model):
    srv = Server(model, "-np", "1", "--max-queue", "0", "-c", "2048")
    srv.model_id = None
    try:
        s, f = open_stream(srv, {"prompt": "Count:", "max_tokens": 500, "ignore_eos": True, "stream": True})
        check(len(read_events(f, 2)) == 2, "a stream holds the only slot")
        t0 = time.time()
        status, reply = srv.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})
        check(status == 503 and "queue" in reply["error"]["message"] and time.time() - t0 < 5, f"full queue: HTTP {status} {reply} (at once)")
        check(srv.metrics()["kiln_requests_refused_total"] == 1, "refusal counted")
        s.close()
    finally:
        check(srv.stop() == 0, "exit 0")


def check_api_key(model):
    srv = Server(model, "--api-key", "sekrit", "-np", "1")
    try:
        check(srv.request("GET", "/health")[0] == 200, "/health needs no key")
        check(srv.request("GET", "/v1/models")[0] == 401, "no key: 401")
        check(srv.request("GET", "/metrics", headers={"Authorization": "Bearer wrong"})[0] == 401, "wrong key: 401")
        check(srv.request("POST", "/tokenize", {"content": "x"}, headers={"Authorization": "Bearer sekrit"})[0] == 200, "right key")
        try:
            srv.client("wrong").models.list()
            check(False, "the openai client with a wrong key got through")
        except openai.AuthenticationError:
            pass
        check(len(srv.client("sekrit").models.list().data) == 1, "the openai client with the key")
    finally:
        check(srv.stop(signal.SIGINT) == 0, "SIGINT: exit 0")


def load_test(srv):
    """16 concurrent clients x 8 requests of mixed lengths; greedy replies equal the same request alone."""
    rng = random.Random(7)
    topics = ["the sea", "a robot", "Paris", "bread", "winter", "a library", "rivers", "the moon", "chess", "gardens", "trains", "music"]
    shared = "Answer briefly and plainly. " * 12
    specs = []
    for i in range(24):
        chat = i % 2 == 0
        prompt = (shared if i % 3 == 0 else "") + f"Tell me about {topics[i % len(topics)]}." + " Please." * rng.randint(0, 40)
        specs.append({"chat": chat, "prompt": prompt, "max_tokens": rng.choice([4, 12, 24, 48])})

    def run(client, spec):
        if spec["chat"]:
            r = client.chat.completions.create(model=srv.model_id, messages=[{"role": "user", "content": spec["prompt"]}], temperature=0,
                                               max_tokens=spec["max_tokens"])
            return r.choices[0].message.content, r.choices[0].finish_reason
        r = client.completions.create(model=srv.model_id, prompt=spec["prompt"], temperature=0, max_tokens=spec["max_tokens"])
        return r.choices[0].text, r.choices[0].finish_reason

    c = srv.client()
    alone = [run(c, s) for s in specs]
    errors, mismatches = [], []

    def worker(k):
        client = srv.client()
        for j in range(8):
            i = (k * 5 + j * 7) % len(specs)
            try:
                got = run(client, specs[i])
                if got != alone[i]:
                    mismatches.append((i, got, alone[i]))
            except Exception as e:  # noqa: BLE001 (any error fails the test)
                errors.append(repr(e))

    t0 = time.time()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, range(16)))
    dt = time.time() - t0
    m = srv.metrics()
    print(f"load test: 128 requests from 16 clients in {dt:.1f} s, {m['kiln_tokens_generated_total']:.0f} tokens generated in all, "
          f"{m['kiln_prefix_cache_hits_total']:.0f} prefix cache hits", flush=True)
    check(not errors, f"load test errors: {errors[:3]}")
    check(not mismatches, f"load test replies differ from alone: {mismatches[:3]}")


def check_sigterm(srv):
    s, f = open_stream(srv, {"prompt": "Count:", "max_tokens": 600, "ignore_eos": True, "stream": True})
    check(len(read_events(f, 2)) == 2, "stream before SIGTERM")
    srv.proc.send_signal(signal.SIGTERM)
    rest = read_events(f, 10000)
    check(rest and rest[-1] == "[DONE]", f"SIGTERM ends the stream with [DONE] (last events {rest[-3:]})")
    check(srv.stop() == 0, "SIGTERM: exit 0")


def main():
    smol = model_path("smollm2")
    srv = Server(smol, "-np", "4", "-c", "4096", "--lookup-ngram", "3")
    srv.model_id = srv.request("GET", "/v1/models")[1]["data"][0]["id"]
    groups = [("replies match kiln-generate", lambda: check_replies_match_generate(srv, smol, "SmolLM2")), ("API", lambda: check_api(srv)),
              ("structured output", lambda: check_structured(srv)), ("speculative", lambda: check_speculative(srv)), ("errors", lambda: check_errors(srv)), ("prefix cache", lambda: check_prefix_cache(srv)),
              ("disconnect", lambda: check_disconnect(srv)), ("queue full", lambda: check_queue_full(smol)),
              ("API key", lambda: check_api_key(smol)), ("load test", lambda: load_test(srv)), ("SIGTERM", lambda: check_sigterm(srv))]
    qwen_small, qwen = model_path("qwen-coder-0.5b"), model_path("qwen-coder-1.5b")
    if qwen_small:
        groups.append(("qwen-coder-0.5b", lambda: check_qwen(qwen_small, "qwen-coder-0.5b")))
    if qwen and qwen_small:
        groups.append(("qwen-coder-1.5b with the 0.5B as draft model", lambda: check_qwen(qwen, "qwen-coder-1.5b", "-md", qwen_small)))
    try:
        for name, fn in groups:
            t0 = time.time()
            n = len(failures)
            fn()
            print(f"{'ok' if len(failures) == n else 'FAILED'}: {name} ({time.time() - t0:.1f} s)", flush=True)
            if len(failures) > n:
                break
    finally:
        srv.stop()
        if failures:
            print("kiln-server log:\n" + "".join(srv.log[-40:]), file=sys.stderr)
    sys.exit(1 if failures else 0)


WEATHER_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "The local time in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def check_tools(srv, label):
    """Tool calls in the Hermes/Qwen format: forced with tool_choice, parsed back, streamed, and a tool result turn."""
    c = srv.client()
    msgs = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
    r = c.chat.completions.create(model=srv.model_id, messages=msgs, tools=WEATHER_TOOLS, tool_choice="required", temperature=0, max_tokens=60)
    calls = r.choices[0].message.tool_calls or []
    ok = r.choices[0].finish_reason == "tool_calls" and len(calls) == 1 and calls[0].function.name in ("get_weather", "get_time")
    args = json.loads(calls[0].function.arguments) if ok else None
    check(ok and isinstance(args, dict) and isinstance(args.get("city"), str), f"{label}: tool_choice required: {r.choices[0]}")
    named = c.chat.completions.create(model=srv.model_id, messages=msgs, tools=WEATHER_TOOLS, temperature=0, max_tokens=60,
                                      tool_choice={"type": "function", "function": {"name": "get_time"}})
    nc = named.choices[0].message.tool_calls or []
    check(len(nc) == 1 and nc[0].function.name == "get_time", f"{label}: a named tool_choice: {named.choices[0]}")
    # streamed: the same call in a tool_calls delta
    streamed = []
    for chunk in c.chat.completions.create(model=srv.model_id, messages=msgs, tools=WEATHER_TOOLS, tool_choice="required", temperature=0,
                                           max_tokens=60, stream=True):
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                streamed.append((tc.function.name, tc.function.arguments))
    check(ok and streamed == [(calls[0].function.name, calls[0].function.arguments)], f"{label}: streamed calls {streamed}")
    # the tool's result goes back in a tool message; the model answers in text
    if ok:
        turn = msgs + [{"role": "assistant", "content": None, "tool_calls": [calls[0].model_dump()]},
                       {"role": "tool", "tool_call_id": calls[0].id, "content": json.dumps({"temperature": 21, "sky": "sunny"})}]
        r2 = c.chat.completions.create(model=srv.model_id, messages=turn, tools=WEATHER_TOOLS, temperature=0, max_tokens=40)
        check(r2.choices[0].finish_reason in ("stop", "length", "tool_calls"), f"{label}: a tool result turn: {r2.choices[0]}")
    status, reply = srv.request("POST", "/v1/chat/completions", {"messages": msgs, "tools": WEATHER_TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    check(status == 400 and "nope" in reply["error"]["message"], f"{label}: an unknown forced tool: {status} {reply}")


def check_qwen(path, name, *extra):
    srv = Server(path, "-np", "2", "-c", "2048", *extra)
    srv.model_id = srv.request("GET", "/v1/models")[1]["data"][0]["id"]
    try:
        check_replies_match_generate(srv, path, name)
        check_tools(srv, name)
        if extra:  # the draft model drafted and the replies above still matched plain greedy decoding
            m = srv.metrics()
            check(m["kiln_speculative_drafted_total"] > 0 and m["kiln_speculative_accepted_total"] > 0,
                  f"{name}: draft model counters {m['kiln_speculative_accepted_total']} of {m['kiln_speculative_drafted_total']}")
            print(f"{name}: the draft model's tokens kept: {m['kiln_speculative_accepted_total']:.0f} of {m['kiln_speculative_drafted_total']:.0f}", flush=True)
    finally:
        check(srv.stop() == 0, f"{name}: exit 0")


if __name__ == "__main__":
    main()
