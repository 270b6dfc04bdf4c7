"""A minimal OpenAI-compatible HTTP server for a local generative model (``faithscope serve``).

It speaks the subset of the API that vLLM, Ollama and llama.cpp servers share and that
:class:`~faithscope.models.http.HTTPAdapter` uses: ``GET /v1/models``, ``POST /v1/completions``
(``prompt`` as a string or a list, ``max_tokens``, ``temperature`` 0 only: decoding is fixed)
and ``POST /v1/chat/completions`` (``messages``; the tokenizer's chat template when it has one,
else the user messages joined). Requests are served one at a time (a lock around the model) by a
threading HTTP server; a list of prompts is generated as one batch.

Example
-------
>>> from faithscope.models.generative import load_generative
>>> server = serve(load_generative("tests/assets/stories260K"), port=0)  # doctest: +SKIP
>>> server.url  # doctest: +SKIP
'http://127.0.0.1:40123/v1'
>>> server.close()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .generative import GenerativeAdapter


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, msg: str) -> None:
        self._send(code, {"error": {"message": msg, "type": "invalid_request_error"}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.server.name, "object": "model", "owned_by": "faithscope"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        try:
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(n) or b"{}")
        except (ValueError, json.JSONDecodeError):
            self._error(400, "body is not JSON")
            return
        if float(req.get("temperature", 0) or 0) != 0:
            self._error(400, "this server decodes greedily: temperature must be 0")
            return
        route = self.path.rstrip("/")
        lm = self.server.lm
        max_tokens = int(req.get("max_tokens") or lm.max_new_tokens)
        if route == "/v1/completions":
            prompts = req.get("prompt")
            prompts = [prompts] if isinstance(prompts, str) else prompts
            if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                self._error(400, "prompt must be a string or a list of strings")
                return
            with self.server.lock:
                chat, lm.chat = lm.chat, False  # completions take raw text
                try:
                    gens = lm.generate(prompts, max_new_tokens=max_tokens)
                finally:
                    lm.chat = chat
            choices: list[dict[str, Any]] = [
                {"index": i, "text": g.text, "finish_reason": "stop", "logprobs": None}
                       for i, g in enumerate(gens)]
            self._send(200, self._envelope("text_completion", choices, gens))
        elif route == "/v1/chat/completions":
            msgs = req.get("messages")
            if not isinstance(msgs, list) or not msgs:
                self._error(400, "messages must be a non-empty list")
                return
            with self.server.lock:
                gens = lm.generate([self._chat_prompt(msgs)], max_new_tokens=max_tokens)
            choices = [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": gens[0].text}}]
            self._send(200, self._envelope("chat.completion", choices, gens))
        else:
            self._error(404, f"no route {self.path}")

    def _chat_prompt(self, msgs: list[dict[str, Any]]) -> str:
        """The user turns' text (the adapter applies the chat template when it has one)."""
        return "\n".join(str(m.get("content", "")) for m in msgs if m.get("role") == "user")

    def _envelope(self, kind: str, choices: list[dict[str, Any]], gens: Any) -> dict[str, Any]:
        n_out = sum(len(g.ids) for g in gens)
        return {"id": f"fs-{time.time_ns()}", "object": kind, "created": int(time.time()),
                "model": self.server.name, "choices": choices,
                "usage": {"completion_tokens": n_out}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    lm: GenerativeAdapter
    name: str
    lock: threading.Lock


@dataclass
class RunningServer:
    httpd: _Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{int(port)}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def serve(lm: GenerativeAdapter, *, host: str = "127.0.0.1", port: int = 8000,
          name: str | None = None, block: bool = False) -> RunningServer:
    """Serve ``lm``; ``port=0`` picks a free port. Non-blocking unless ``block``."""
    httpd = _Server((host, port), _Handler)
    httpd.lm = lm
    httpd.name = name or lm.model_id
    httpd.lock = threading.Lock()
    if block:
        try:
            httpd.serve_forever()
        finally:
            httpd.server_close()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return RunningServer(httpd, thread)
