#!/usr/bin/env python3
"""Writes tests/data/jinja_golden.json: every chat template in .cache/templates/*.jinja
(llama.cpp's models/templates, extracted by `tools/fetch_models.py vocab`) rendered by
Python jinja2 for a few fixed conversations, for tests/test_jinja.cpp to compare with
kiln's Jinja engine byte for byte.

Made with jinja2 3.1.6 (Debian's python3-jinja2 or `pip install jinja2==3.1.6`), set up as
Hugging Face transformers does in apply_chat_template:
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker, jinja2.ext.loopcontrols])
with its tojson filter and the globals raise_exception and strftime_now. AssistantTracker
(the {% generation %} tag) is reproduced here as a pass-through call block, as it renders
when no assistant mask is requested; strftime_now uses a fixed date so the output is
deterministic.

The file holds {"jinja2": version, "now": the fixed date, "contexts": {name: context},
"templates": {file: {context: {"output": text} or {"error": true, "message": ...}}}}.
A template that raises for a context (raise_exception, an unsupported tag, a type error)
is recorded as an error; kiln must then fail too.

Usage: tests/data/make_jinja_golden.py [templates_dir] [out.json]
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("KILN_CACHE", os.path.join(ROOT, ".cache"))
NOW = datetime.datetime(2025, 3, 7, 14, 5, 9)


class Generation(jinja2.ext.Extension):
    """transformers' AssistantTracker without the mask bookkeeping: renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation"), [], [], body).set_lineno(lineno)

    def _generation(self, caller):
        return caller()


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' override of jinja2's tojson (no HTML escaping)
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(fmt):
    return NOW.strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

BASE = {"bos_token": "<s>", "eos_token": "</s>"}
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Germany?"},
]
CONTEXTS = {
    "user": dict(BASE, messages=[{"role": "user", "content": "Hello!"}], add_generation_prompt=True),
    "conversation_gen": dict(BASE, messages=CONVERSATION, add_generation_prompt=True),
    "conversation": dict(BASE, messages=CONVERSATION, add_generation_prompt=False),
    "tools": dict(
        BASE,
        tools=[WEATHER_TOOL],
        add_generation_prompt=True,
        messages=[
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
                ],
            },
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": '{"temperature": 18.5, "sky": "cloudy"}'},
        ],
    ),
    "unicode": dict(
        BASE,
        add_generation_prompt=True,
        messages=[
            {"role": "system", "content": "Réponds en français, s'il te plaît.\n"},
            {"role": "user", "content": '  Dis "bonjour" — 你好 🙂\nLine two\t{{ not jinja }}  '},
        ],
    ),
}


def main(argv):
    templates = argv[0] if argv else os.path.join(CACHE, "templates")
    out_path = argv[1] if len(argv) > 1 else os.path.join(ROOT, "tests", "data", "jinja_golden.json")
    env = environment()
    results = {}
    for name in sorted(os.listdir(templates)):
        if not name.endswith(".jinja"):
            continue
        with open(os.path.join(templates, name), encoding="utf-8") as f:
            source = f.read()
        per = {}
        try:
            template = env.from_string(source)
        except Exception as e:  # noqa: BLE001 - any failure is recorded
            template, error = None, f"{type(e).__name__}: {e}"
        for ctx_name, ctx in CONTEXTS.items():
            if template is None:
                per[ctx_name] = {"error": True, "message": error}
                continue
            try:
                per[ctx_name] = {"output": template.render(**json.loads(json.dumps(ctx)))}
            except Exception as e:  # noqa: BLE001
                per[ctx_name] = {"error": True, "message": f"{type(e).__name__}: {e}"}
        results[name] = per
    doc = {"jinja2": jinja2.__version__, "now": NOW.isoformat(), "contexts": CONTEXTS, "templates": results}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1, sort_keys=False)
        f.write("\n")
    n_err = sum(1 for per in results.values() for r in per.values() if "error" in r)
    print(f"{out_path}: {len(results)} templates x {len(CONTEXTS)} contexts ({n_err} errors), jinja2 {jinja2.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:])
