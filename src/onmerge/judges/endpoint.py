"""A small client for an OpenAI-compatible chat-completions endpoint: the judge of MT-Bench and AlpacaEval.

Configuration, from the environment:
- `ONMERGE_JUDGE_BASE_URL` (else `OPENAI_BASE_URL`, else `https://api.openai.com/v1`): the API root, the part
  before `/chat/completions` (a vLLM or LiteLLM server: `http://host:8000/v1`);
- `ONMERGE_JUDGE_API_KEY` (else `OPENAI_API_KEY`): sent as a bearer token; required (a server that checks no key
  accepts any value, e.g. `EMPTY`);
- `ONMERGE_JUDGE_MODEL`: overrides the benchmark's judge model (the paper's: `gpt-4` for MT-Bench,
  `gpt-4-1106-preview` for AlpacaEval 2.0); a `--judge-model` option overrides both.

Every response is cached on disk, one JSON file per request, keyed by the SHA-256 of the request body (model,
messages and sampling parameters), so a rerun never pays twice; a cache entry that does not parse or does not hold
a chat completion of that very request is ignored and redone. Requests are retried with exponential back-off and
jitter on connection errors, HTTP 429 and 5xx, honouring `Retry-After`, and given up after a bounded number of tries
with an error that names the URL and the last status. Before the first request goes out, `GET {base}/models` checks
that the endpoint answers, accepts the key and serves the judge model.

Plain `urllib`, not the `openai` package: the client needs one POST and one GET, and its retry policy, cache and
error messages are this module's own; `openai` would have its retries disabled and its exceptions unwrapped, for a
dependency whose API moves quickly.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onmerge.atomic import write_json

BASE_URL_VARIABLES = ("ONMERGE_JUDGE_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VARIABLES = ("ONMERGE_JUDGE_API_KEY", "OPENAI_API_KEY")
MODEL_VARIABLE = "ONMERGE_JUDGE_MODEL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRIED_STATUSES = frozenset({429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 600.0  # a server asking for longer than this is treated as down


class JudgeEndpointError(RuntimeError):
    """The judge endpoint is misconfigured, unreachable, or kept failing."""


@dataclass(frozen=True)
class JudgeEndpoint:
    base_url: str
    api_key: str = field(repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> JudgeEndpoint:
        """The endpoint the environment configures; JudgeEndpointError names the variable to set."""
        base_url = next((environ[name] for name in BASE_URL_VARIABLES if environ.get(name)), DEFAULT_BASE_URL)
        api_key = next((environ[name] for name in API_KEY_VARIABLES if environ.get(name)), None)
        if api_key is None:
            raise JudgeEndpointError(
                f"no judge API key: set {API_KEY_VARIABLES[0]} (or {API_KEY_VARIABLES[1]}) for the endpoint "
                f"{base_url} (set {BASE_URL_VARIABLES[0]} to use another; a server that checks no key accepts any "
                "value, e.g. EMPTY)"
            )
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise JudgeEndpointError(f"{BASE_URL_VARIABLES[0]}={base_url!r} is not an http(s) URL")
        return cls(base_url.rstrip("/"), api_key)

    @property
    def host(self) -> str:
        return urllib.parse.urlparse(self.base_url).netloc


def judge_model(cli_choice: str | None, paper_default: str, environ: Mapping[str, str] = os.environ) -> str:
    """`--judge-model`, else `ONMERGE_JUDGE_MODEL`, else the paper's judge for the benchmark."""
    return cli_choice or environ.get(MODEL_VARIABLE) or paper_default


def request_key(payload: Mapping[str, Any], attempt: int = 0) -> str:
    """The cache key: SHA-256 of the canonical request body (and of the attempt number for deliberate re-asks)."""
    material: dict[str, Any] = {"request": payload}
    if attempt:
        material["attempt"] = attempt
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class _Failure:
    """Why the last try failed: an HTTP status (with body) or a connection error."""

    description: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None


class ChatClient:
    """Chat completions through a disk cache, with retries; thread-safe, so judgments can run concurrently."""

    def __init__(
        self,
        endpoint: JudgeEndpoint,
        cache_dir: Path,
        *,
        max_tries: int = 8,
        timeout_s: float = 300.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, not {max_tries}")
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir)
        self.max_tries = max_tries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._checked_models: set[str] = set()
        self.cache_hits = 0
        self.cache_misses = 0

    # --- the cache ---------------------------------------------------------------------------------------------

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, payload: Mapping[str, Any], attempt: int = 0) -> dict[str, Any] | None:
        """The cached response to this request, or None (absent, unreadable, or not a completion of it)."""
        path = self._cache_path(request_key(payload, attempt))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(entry, dict) or entry.get("request") != payload or entry.get("attempt", 0) != attempt:
            return None
        response = entry.get("response")
        return response if _is_chat_completion(response) else None

    def complete(self, payload: Mapping[str, Any], attempt: int = 0) -> dict[str, Any]:
        """The chat-completion response to `payload` (a request body): from the cache, else from the endpoint.

        `attempt` > 0 asks again (a separate cache entry) when an earlier answer could not be used.
        """
        response = self.cached(payload, attempt)
        if response is not None:
            with self._lock:
                self.cache_hits += 1
            return response
        self.preflight(payload["model"])
        response = self._send("POST", "/chat/completions", dict(payload))
        if not _is_chat_completion(response):
            raise JudgeEndpointError(
                f"POST {self.endpoint.base_url}/chat/completions answered without choices[0].message.content: "
                f"{json.dumps(response)[:300]}"
            )
        entry = {"request": payload, "response": response} | ({"attempt": attempt} if attempt else {})
        write_json(self._cache_path(request_key(payload, attempt)), entry)
        with self._lock:
            self.cache_misses += 1
        return response

    # --- the endpoint ------------------------------------------------------------------------------------------

    def preflight(self, model: str) -> None:
        """Once per model: the endpoint answers `GET /models`, accepts the key, and lists `model`.

        Unreachable is an error at once (that is what this checks); 429 and 5xx are retried like any request.
        """
        with self._lock:
            if model in self._checked_models:
                return
            listing = self._send("GET", "/models", None, retry_connection_errors=False)
            served = [entry.get("id") for entry in listing.get("data", []) if isinstance(entry, dict)]
            if model not in served:
                raise JudgeEndpointError(
                    f"the judge endpoint {self.endpoint.base_url} does not serve the model {model!r} "
                    f"(GET /models lists {served[:20]}); choose it with --judge-model or {MODEL_VARIABLE}, "
                    f"or point {BASE_URL_VARIABLES[0]} at an endpoint that serves it"
                )
            self._checked_models.add(model)

    def _send(
        self, method: str, path: str, body: dict[str, Any] | None, *, retry_connection_errors: bool = True
    ) -> dict[str, Any]:
        url = f"{self.endpoint.base_url}{path}"
        tries = 0
        while True:
            tries += 1
            result = self._try(method, url, body)
            if not isinstance(result, _Failure):
                return result
            if result.status is None and not retry_connection_errors:
                raise JudgeEndpointError(
                    f"the judge endpoint {self.endpoint.base_url} is unreachable ({method} {url}: "
                    f"{result.description}); set {BASE_URL_VARIABLES[0]} (or {BASE_URL_VARIABLES[1]}) to a running "
                    "OpenAI-compatible server"
                )
            if result.status in (401, 403):
                raise JudgeEndpointError(
                    f"{method} {url}: HTTP {result.status}, the judge endpoint rejected the API key "
                    f"({result.description}); set {API_KEY_VARIABLES[0]} (or {API_KEY_VARIABLES[1]})"
                )
            if not result.retryable:
                raise JudgeEndpointError(f"{method} {url}: {result.description}")
            if tries == self.max_tries:
                raise JudgeEndpointError(f"{method} {url}: gave up after {tries} tries; last: {result.description}")
            self._sleep(self._delay(tries, result.retry_after))

    def _delay(self, tries: int, retry_after: float | None) -> float:
        """Seconds before the next try: `Retry-After` when the server sent it, else exponential back-off with jitter
        (half fixed, half random, so that concurrent workers spread out)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (tries - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _try(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any] | _Failure:
        headers = {"Authorization": f"Bearer {self.endpoint.api_key}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:300]
            retry_after = _retry_after_s(error.headers.get("Retry-After"))
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                return _Failure(f"HTTP {error.code} with Retry-After {retry_after:.0f} s ({detail})", False, error.code)
            return _Failure(f"HTTP {error.code} ({detail})", error.code in RETRIED_STATUSES, error.code, retry_after)
        except (OSError, http.client.HTTPException) as error:  # URLError, refused, reset, timeout, bad status line
            reason = getattr(error, "reason", error)
            return _Failure(f"connection error: {reason}", True)
        try:
            parsed = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _Failure(f"HTTP 200 with a body that is not JSON ({raw[:200]!r})", True, 200)
        if not isinstance(parsed, dict):
            return _Failure(f"HTTP 200 with a body that is not a JSON object ({raw[:200]!r})", True, 200)
        return parsed


def _retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_chat_completion(response: Any) -> bool:
    try:
        return isinstance(response["choices"][0]["message"]["content"], str)
    except (KeyError, IndexError, TypeError):
        return False


def message_text(response: Mapping[str, Any]) -> str:
    """The text of a chat completion's first choice."""
    return response["choices"][0]["message"]["content"]
