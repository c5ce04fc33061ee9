"""Scene graphs from any OpenAI-compatible chat endpoint, prompted as in the ComCLIP paper.

Base URL, model and key come from options or ``COMCLIP_LLM_BASE_URL`` / ``COMCLIP_LLM_MODEL``
/ ``COMCLIP_LLM_API_KEY`` (falling back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``). Every
reply is validated against the scene-graph schema; a failed request or an invalid reply
raises :class:`ParseError` for that caption, never an empty parse.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from comclip.parsing.base import ParseError, Parser, SceneGraph

SYSTEM_PROMPT = (
    "You parse image captions into scene graphs. Entities are the objects mentioned, each with its "
    "head noun (singular lemma), its full phrase, and its attributes (adjectives, numbers, compound "
    "modifiers). Relations link a subject entity to an object entity by a predicate: the verb's lemma "
    "with its particles and prepositions ('sit on', 'next to'). Reply with JSON only."
)

EXAMPLE_CAPTION = "a young man sitting at a wooden table holds a red cup"
EXAMPLE_REPLY = {
    "entities": [
        {"id": 0, "head": "man", "phrase": "young man", "attributes": ["young"]},
        {"id": 1, "head": "table", "phrase": "wooden table", "attributes": ["wooden"]},
        {"id": 2, "head": "cup", "phrase": "red cup", "attributes": ["red"]},
    ],
    "relations": [
        {"subject": 0, "predicate": "sit at", "object": 1},
        {"subject": 0, "predicate": "hold", "object": 2},
    ],
}


def build_messages(caption: str) -> list[dict]:
    """The chat messages for one caption: instructions, one worked example, the caption."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Caption: {EXAMPLE_CAPTION}"},
        {"role": "assistant", "content": json.dumps(EXAMPLE_REPLY)},
        {"role": "user", "content": f"Caption: {caption}"},
    ]


def graph_from_reply(caption: str, reply: str) -> SceneGraph:
    """Validate a model's reply (JSON, possibly in a code fence) into a scene graph."""
    match = re.search(r"\{.*\}", reply or "", flags=re.S)
    if not match:
        raise ParseError(f"LLM reply for {caption!r} holds no JSON object: {str(reply)[:200]!r}")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ParseError(f"LLM reply for {caption!r} is not valid JSON ({exc}): {match.group(0)[:200]!r}") from None
    if not isinstance(data.get("entities"), list) or not isinstance(data.get("relations", []), list):
        raise ParseError(f"LLM reply for {caption!r} lacks an 'entities' list: {match.group(0)[:200]!r}")
    try:
        return SceneGraph.from_dict(data, text=caption)
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"LLM reply for {caption!r} does not fit the scene-graph schema: {exc}") from None


class LLMParser(Parser):
    """Parser calling ``POST {base_url}/chat/completions`` (needs ``pip install 'comclip[llm]'``)."""

    name = "llm"
    cacheable = True  # stored once parsed: a re-run makes no new calls

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport=None,
        concurrency: int = 8,
        retries: int = 4,
        backoff: float = 1.0,
    ):
        env = os.environ
        self.base_url = (
            base_url or env.get("COMCLIP_LLM_BASE_URL") or env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        ).rstrip("/")
        self.model = model or env.get("COMCLIP_LLM_MODEL") or "gpt-3.5-turbo"
        self.api_key = api_key or env.get("COMCLIP_LLM_API_KEY") or env.get("OPENAI_API_KEY")
        self.timeout = timeout
        self._transport = transport  # an httpx transport, for tests and proxies
        #: Requests in flight at once (parse_many), and how often a rate-limited or failing
        #: (429, 5xx) request is tried again, waiting Retry-After or backoff x 2^attempt seconds.
        self.concurrency, self.retries, self.backoff = max(1, int(concurrency)), max(0, int(retries)), backoff

    def describe(self) -> dict:
        return {"name": self.name, "base_url": self.base_url, "model": self.model}

    def parse_many(self, texts: Sequence[str]) -> list[SceneGraph]:
        """Captions parsed with up to ``concurrency`` requests at once (not one round trip after
        another); the first caption that fails, in caption order, raises its ParseError."""
        texts = list(texts)
        if len(texts) <= 1 or self.concurrency == 1:
            return [self.parse(t) for t in texts]
        with ThreadPoolExecutor(min(self.concurrency, len(texts)), thread_name_prefix="comclip-llm") as pool:
            futures = [pool.submit(self.parse, t) for t in texts]
            return [future.result() for future in futures]

    def parse(self, text: str) -> SceneGraph:
        try:
            import httpx
        except ImportError:
            raise ParseError("the llm parser needs httpx: pip install 'comclip[llm]'") from None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": build_messages(text), "temperature": 0}
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
                response = self._post(client, f"{self.base_url}/chat/completions", body, headers)
                reply = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ParseError(f"LLM request for {text!r} failed: {type(exc).__name__}: {exc}") from None
        return graph_from_reply(text, reply)

    def _post(self, client, url: str, body: dict, headers: dict):
        """POST, trying a rate-limited (429) or failing (5xx) request again, a bounded number of times."""
        for attempt in range(self.retries + 1):
            response = client.post(url, json=body, headers=headers)
            if response.status_code != 429 and response.status_code < 500 or attempt == self.retries:
                response.raise_for_status()
                return response
            time.sleep(_retry_after(response) or self.backoff * 2**attempt)
        raise AssertionError("unreachable")


def _retry_after(response) -> float | None:
    """The server's Retry-After, in seconds (capped at a minute), where it gives one as a number."""
    try:
        return min(60.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None
