#!/usr/bin/env python3
"""The official `openai` Python client against `forja serve`, unchanged.

usage: openai-serve-check.py BASE_URL API_KEY MODEL EMBEDDING_MODEL

Checks models.list, chat (plain and streamed: the same greedy answer),
completions, json_schema structured output (parsed and checked), and
embeddings (float and the client's default base64 encoding). Prints one
JSON line with what it saw; exits 1 with a message on the first mismatch.
"""
import json
import math
import sys

import openai

base_url, key, model, emb_model = sys.argv[1:5]
client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=120)
seen = {"openai": openai.__version__}


def check(cond, what):
    if not cond:
        print(f"openai-serve-check: {what}", file=sys.stderr)
        sys.exit(1)


ids = [m.id for m in client.models.list().data]
check("base" in ids, f"models.list lacks base: {ids}")
seen["models"] = ids

msgs = [{"role": "user", "content": "Name the capital of France."}]
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=16, temperature=0)
text = r.choices[0].message.content
check(r.object == "chat.completion" and isinstance(text, str), f"chat: {r}")
check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, f"usage: {r.usage}")
seen["chat"] = text

parts, finish, usage = [], None, None
stream = client.chat.completions.create(
    model=model, messages=msgs, max_tokens=16, temperature=0, stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        finish = c.finish_reason or finish
check("".join(parts) == text, f"stream {''.join(parts)!r} != chat {text!r}")
check(finish in ("stop", "length"), f"stream finish_reason {finish}")
check(usage is not None and usage.total_tokens == r.usage.total_tokens, f"stream usage {usage}")
seen["stream_chunks"] = len(parts)

c = client.completions.create(model=model, prompt="The council approved", max_tokens=8, temperature=0)
check(c.object == "text_completion" and isinstance(c.choices[0].text, str), f"completions: {c}")

schema = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "population": {"type": "integer"},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "population", "capital"],
    "additionalProperties": False,
}
r = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Describe Paris as JSON."}],
    max_tokens=80,
    temperature=0,
    response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
)
obj = json.loads(r.choices[0].message.content)
check(set(obj) == {"city", "population", "capital"}, f"json_schema keys: {obj}")
check(isinstance(obj["population"], int) and isinstance(obj["capital"], bool), f"json_schema types: {obj}")
seen["json_schema"] = obj

e = client.embeddings.create(model=emb_model, input=["the council meets", "the council meets", "bananas"])
v = [d.embedding for d in e.data]
check(len(v) == 3 and len(v[0]) == 384, f"embeddings shape {len(v)}x{len(v[0]) if v else 0}")
cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
check(abs(cos(v[0], v[1]) - 1) < 1e-5 and cos(v[0], v[2]) < 0.9, "embedding similarities")
f = client.embeddings.create(model=emb_model, input="the council meets", encoding_format="float")
check(max(abs(a - b) for a, b in zip(f.data[0].embedding, v[0])) < 1e-6, "float vs base64 embeddings")
seen["embedding_dim"] = len(v[0])

try:
    client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=4)
    check(False, "an unknown model was accepted")
except openai.NotFoundError as err:
    seen["unknown_model"] = err.status_code
try:
    client.chat.completions.create(model=model, messages=msgs, max_tokens=10**7)
    check(False, "max_tokens over the cap was accepted")
except openai.BadRequestError as err:
    seen["max_tokens_over_cap"] = err.status_code

print(json.dumps(seen))
