"""HTTPAdapter: a model served behind an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp).

Only text comes back, so it pairs with the text-only scalarizers (``cosine``, ``bertscore``,
``nli``, ``summary_prob`` with a local scorer). Decoding is fixed (``temperature=0``, optional
``seed``). Prompts are sent ``max_batch_size`` at a time as one ``/v1/completions`` request with a
list prompt (vLLM, this package's server), or one request per prompt with ``batch_prompts=False``
(servers that take a single prompt), or through ``/v1/chat/completions`` with ``chat=True``.
Failed requests are retried ``retries`` times with exponential back-off; errors name the URL.

Example
-------
Creating an adapter sends nothing; its ``model_id`` (provenance) names endpoint and model:

>>> lm = HTTPAdapter("http://127.0.0.1:8000/v1", model="stories260K", max_new_tokens=16)
>>> lm.model_id
'http://127.0.0.1:8000/v1#stories260K'

With a server listening there (e.g. ``faithscope serve``, see :mod:`faithscope.models.server`)::

    lm.generate(["Once upon a time"])[0].text  # 'there was a little girl named Lily...'
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from .batching import AdapterStats
from .generative import Generation


class EndpointError(InputError):
    """The endpoint refused or failed a request."""


def _failure(url: str, err: BaseException, timeout: float, tries: str) -> str:
    """One line naming what went wrong with a request: refused, timed out, or unreachable."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return f"endpoint {url} did not answer within {timeout:g} s ({tries})"
    if isinstance(reason, ConnectionRefusedError):
        return f"endpoint {url} refused the connection ({tries}); is the server running?"
    return f"endpoint {url} could not be reached ({tries}): {reason}"


@dataclass(eq=False)
class HTTPAdapter:
    generates: ClassVar[bool] = True  # explained and evaluated as a generative model
    base_url: str
    model: str
    api_key: str | None = None
    max_new_tokens: int = 32
    max_batch_size: int = 16
    batch_prompts: bool = True
    chat: bool = False
    seed: int | None = 0
    timeout: float = 120.0
    retries: int = 2
    stats: AdapterStats = field(default_factory=AdapterStats)

    @property
    def model_id(self) -> str:
        return f"{self.base_url.rstrip('/')}#{self.model}"

    revision = None

    def _url(self, route: str) -> str:
        return self.base_url.rstrip("/") + route

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._url(route)
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode()
        tries = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as err:
                detail = " ".join(err.read().decode(errors="replace").split())[:300]
                if err.code < 500 or attempt == self.retries:
                    raise EndpointError(f"endpoint {url} answered HTTP {err.code}"
                                        + (f": {detail}" if detail else "")) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                if attempt == self.retries:
                    raise EndpointError(_failure(url, err, self.timeout, tries)) from None
            else:
                try:
                    out = json.loads(raw)
                except ValueError:
                    raise EndpointError(f"endpoint {url} answered with something that is not "
                                        f"JSON: {raw[:80]!r}") from None
                if not isinstance(out, dict) or not isinstance(out.get("choices"), list):
                    raise EndpointError(f"endpoint {url} answered without a 'choices' list; "
                                        "is it OpenAI-compatible?")
                return out
            time.sleep(0.5 * 2**attempt)
        raise EndpointError(f"{url}: no response")  # pragma: no cover

    def _body(self, n_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": n_tokens, "temperature": 0}
        if self.seed is not None:
            body["seed"] = self.seed
        return body

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int | None = None
                 ) -> list[Generation]:
        n = max_new_tokens or self.max_new_tokens
        texts: list[str] = []
        if self.chat:
            for p in prompts:
                res = self._post("/chat/completions", {
                    **self._body(n), "messages": [{"role": "user", "content": p}]})
                texts.append(str(_first(res, self._url("/chat/completions"))["message"]["content"]))
        elif self.batch_prompts:
            for i in range(0, len(prompts), self.max_batch_size):
                chunk = list(prompts[i : i + self.max_batch_size])
                res = self._post("/completions", {**self._body(n), "prompt": chunk})
                choices = sorted(res["choices"], key=lambda c: int(c.get("index", 0)))
                if len(choices) != len(chunk):
                    raise EndpointError(f"endpoint {self._url('/completions')}: {len(choices)} "
                                        f"choices for "
                                        f"{len(chunk)} prompts; use batch_prompts=False")
                if any(not isinstance(c, dict) or "text" not in c for c in choices):
                    raise EndpointError(f"endpoint {self._url('/completions')}: a choice "
                                        "without 'text'")
                texts += [str(c["text"]) for c in choices]
                self.stats.chunks += 1
        else:
            for p in prompts:
                res = self._post("/completions", {**self._body(n), "prompt": p})
                texts.append(str(_first(res, self._url("/completions"))["text"]))
        self.stats.forward_rows += len(prompts)
        return [Generation(p, t, np.zeros(0, dtype=np.int64))
                for p, t in zip(prompts, texts, strict=True)]


def _first(res: dict[str, Any], where: str) -> Any:
    """The first choice of an answer, refused in one line when it is missing or malformed."""
    ch = res["choices"]
    if not ch or not isinstance(ch[0], dict) or not ({"text", "message"} & set(ch[0])):
        raise EndpointError(f"endpoint {where}: a choice without 'text' or 'message'")
    if "message" in ch[0] and not isinstance(ch[0]["message"], dict):
        raise EndpointError(f"endpoint {where}: the answer's message is malformed")
    return ch[0]
