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

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url.rstrip("/") + route
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:300]
                if err.code < 500 or attempt == self.retries:
                    raise EndpointError(f"{url}: HTTP {err.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt == self.retries:
                    raise EndpointError(f"{url}: {err}") from None
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
                texts.append(str(res["choices"][0]["message"]["content"]))
        elif self.batch_prompts:
            for i in range(0, len(prompts), self.max_batch_size):
                chunk = list(prompts[i : i + self.max_batch_size])
                res = self._post("/completions", {**self._body(n), "prompt": chunk})
                choices = sorted(res["choices"], key=lambda c: int(c.get("index", 0)))
                if len(choices) != len(chunk):
                    raise EndpointError(f"{self.base_url}: {len(choices)} choices for "
                                        f"{len(chunk)} prompts; use batch_prompts=False")
                texts += [str(c["text"]) for c in choices]
                self.stats.chunks += 1
        else:
            for p in prompts:
                res = self._post("/completions", {**self._body(n), "prompt": p})
                texts.append(str(res["choices"][0]["text"]))
        self.stats.forward_rows += len(prompts)
        return [Generation(p, t, np.zeros(0, dtype=np.int64))
                for p, t in zip(prompts, texts, strict=True)]
