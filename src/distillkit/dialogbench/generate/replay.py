"""A small OpenAI-compatible server on 127.0.0.1 that answers generation and judge requests without a model.

Generation requests get a constructed instance that fits the request's JSON schema (deterministic per
request, so a repeated request gets the same answer); judge requests get the letter of the correct option
(the constructed correct option starts with "Correct"). A script injects failures: HTTP codes, replies that
are not JSON, replies missing a key, too-short dialogues, repeated dialogues, duplicate options, answer leaks,
wrong judge answers. For tests and benchmarks of the generation pipeline, not for prose quality.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time

from distillkit.lm.loopback import JSONHandler, LoopbackServer

WORDS = (
    "apple river budget ticket coffee window garden meeting laptop violin ferry museum salary doctor "
    "neighbor recipe stadium battery theory planet enzyme market history fever guitar kettle ladder "
    "monsoon notebook orchard parcel quartz rental scooter tablet umbrella voyage wallet yoghurt zipper "
    "anchor blanket candle dentist engine festival glacier harbor island jacket kitchen lantern mirror "
    "noodle ocean pepper quilt rocket saddle tunnel uniform valley walnut circuit protein thesis"
).split()
THINK = '<think>Is it A? The answer is A. {"dialogue": []}</think>'
GEN_STEPS = ("invalid", "missing_key", "short", "dup", "near_dup", "dup_options", "leak")


class ReplayServer(LoopbackServer):
    """Serve /v1/chat/completions; `script` entries are consumed one per generation (or judge) request.

    Entries: an HTTP status (int), 'ok', or one of GEN_STEPS. `judge_wrong_every=k` makes the judge answer
    wrongly for about one request in k (decided by a hash of the request). `always` applies one entry to
    every generation request. `delay` adds seconds per request. `think=True` puts a reasoning block that
    names a wrong letter and holds stray JSON in front of every reply (a reasoning model).
    """

    def __init__(
        self,
        script: list | None = None,
        judge_wrong_every: int = 0,
        always: str | None = None,
        delay: float = 0.0,
        utterances: int = 12,
        think: bool = False,
    ):
        self.script = list(script or [])
        self.judge_wrong_every = judge_wrong_every
        self.always = always
        self.delay = delay
        self.utterances = utterances
        self.think = think
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "generate": 0, "judge": 0, "response_format": 0}
        self.models: dict[str, int] = {}  # "generate:<model>" / "judge:<model>" -> requests
        self.last_dialogue: list[dict] | None = None
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):  # noqa: N802
                body = self.read_json()
                if outer.delay:
                    time.sleep(outer.delay)
                code, text = outer.respond(body)
                if code != 200:
                    self.send_json(code, {"error": {"message": f"injected {code}"}}, {"retry-after": "0"})
                    return
                self.send_json(
                    200,
                    {
                        "id": "r",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {
                            "prompt_tokens": sum(len(m["content"]) // 4 for m in body["messages"]),
                            "completion_tokens": len(text) // 4,
                            "total_tokens": 0,
                        },
                    },
                )

        super().__init__(Handler)

    # ------------------------------------------------------------------ answers
    def respond(self, body: dict) -> tuple[int, str]:
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        is_gen = body["messages"][0]["role"] == "system"
        with self.lock:
            self.counts["requests"] += 1
            self.counts["generate" if is_gen else "judge"] += 1
            self.counts["response_format"] += "response_format" in body
            kind = f"{'generate' if is_gen else 'judge'}:{body['model']}"
            self.models[kind] = self.models.get(kind, 0) + 1
            step = self.script.pop(0) if self.script else (self.always if is_gen and self.always else "ok")
        if isinstance(step, int):
            return step, ""
        text = self._judge(body, digest) if not is_gen else self._generate(body, digest, step)
        return 200, (THINK + text if self.think else text)

    def _judge(self, body: dict, digest: str) -> str:
        last = body["messages"][-1]["content"]
        m = re.search(r"(?:^|\s)([A-D])\. Correct\b", last)
        gold = m.group(1) if m else "A"
        if self.judge_wrong_every and int(digest[:8], 16) % self.judge_wrong_every == 0:
            return f"The answer is {'B' if gold == 'A' else 'A'}."
        return gold

    def _generate(self, body: dict, digest: str, step: str) -> str:
        rng = random.Random(digest)
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        props = schema["properties"] if schema else {"dialogue": {}, "correct": {}, "distractors": {"minItems": 3}}
        if not schema and "`slot`" in body["messages"][-1]["content"]:  # no schema: the keys named in the prompt
            props = {**props, "slot": {}}

        def phrase(n: int) -> str:
            return " ".join(rng.choice(WORDS) for _ in range(n))

        n_utt = 4 if step == "short" else self.utterances
        dialogue = [
            {"speaker": ("User", "Assistant")[i % 2], "text": phrase(10).capitalize() + "?"} for i in range(n_utt)
        ]
        with self.lock:
            prev = self.last_dialogue
            if step in ("dup", "near_dup") and prev is not None:
                dialogue = [dict(t) for t in prev]
                if step == "near_dup":
                    dialogue[-1]["text"] = phrase(10)
            self.last_dialogue = dialogue
        obj: dict = {"dialogue": dialogue}
        correct = "Correct " + phrase(5)
        if "slot" in props:
            obj["slot"] = f"What about {phrase(6)}?" + (f" It is {correct}." if step == "leak" else "")
        if "correct" in props:
            n = props["distractors"].get("minItems", 3)
            obj["correct"] = correct
            obj["distractors"] = [
                correct if step == "dup_options" and k == 0 else "Wrong " + phrase(5) for k in range(n)
            ]
        else:
            n = props["options"]["minItems"]
            obj["options"] = [correct] + ["Wrong " + phrase(5) for _ in range(n - 1)]
            obj["answer_index"] = 0
        if step == "missing_key":
            obj.pop("dialogue")
        text = json.dumps(obj)
        return text[: len(text) // 2] if step == "invalid" else text
