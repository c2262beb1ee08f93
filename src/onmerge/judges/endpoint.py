"""A small client for an OpenAI-compatible chat-completions endpoint: the judge of MT-Bench and AlpacaEval.

Configuration, from the environment:
- `ONMERGE_JUDGE_BASE_URL` (else `OPENAI_BASE_URL`, else `https://api.openai.com/v1`): the API root, the part
  before `/chat/completions` (a vLLM or LiteLLM server: `http://host:8000/v1`); it may not hold credentials;
- `ONMERGE_JUDGE_API_KEY` (else `OPENAI_API_KEY`): sent as a bearer token; required (a server that checks no key
  accepts any value, e.g. `EMPTY`);
- `ONMERGE_JUDGE_MODEL`: overrides the benchmark's judge model (the paper's: `gpt-4` for MT-Bench,
  `gpt-4-1106-preview` for AlpacaEval 2.0); a `--judge-model` option overrides both.

A benchmark reads each answer with its own reader, which raises Unscorable when the answer holds no usable judgment
(no rating, a truncated answer, null content, a bad log-probability). Such an answer is never cached: the request is
sent again, up to `scoring_attempts` times, and then the judgment is recorded as failed with the reason. A scorable
answer is cached on disk, one JSON file per request, keyed by the SHA-256 of the endpoint (its normalised base URL)
and the request body (model, messages and sampling parameters), so a rerun never pays twice and one endpoint's
judgments are never served as another's; a cache entry that does not parse, names another endpoint or request, or
cannot be scored is ignored and redone.

Requests are retried with exponential back-off and jitter on connection errors, HTTP 429 and 5xx, honouring
`Retry-After`, and given up after a bounded number of tries with an error that names the URL and the last status.
Each try has a per-read timeout and a deadline for the whole response (`transport`); the key goes only to the
endpoint's origin, never along a redirect to another host, and never into a message. Before the first request goes
out, the cache folder is checked to be writable and `GET {base}/models` checks that the endpoint answers, accepts the
key and serves the judge model.

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
import re
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from onmerge.atomic import write_json
from onmerge.judges.transport import AUTHORIZATION, DEFAULT_PORTS, exchange, public_url

BASE_URL_VARIABLES = ("ONMERGE_JUDGE_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VARIABLES = ("ONMERGE_JUDGE_API_KEY", "OPENAI_API_KEY")
MODEL_VARIABLE = "ONMERGE_JUDGE_MODEL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRIED_STATUSES = frozenset({429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER_S = 600.0  # a server asking for longer than this is treated as down
SCORING_ATTEMPTS = 3  # requests per judgment before an unscorable one is recorded as failed
TRUNCATED = frozenset({"length", "content_filter"})  # finish reasons of an answer cut short

T = TypeVar("T")


class JudgeEndpointError(RuntimeError):
    """Judging cannot go on: the endpoint is misconfigured, unreachable or kept failing, or the cache is unwritable."""


class Unscorable(ValueError):
    """An answer that holds no judgment the benchmark can score; the message says why."""


@dataclass(frozen=True)
class JudgeEndpoint:
    base_url: str
    api_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if "@" in urllib.parse.urlsplit(self.base_url).netloc:
            raise JudgeEndpointError(
                f"the judge base URL {public_url(self.base_url)} holds credentials: drop them from "
                f"{BASE_URL_VARIABLES[0]} and set the key in {API_KEY_VARIABLES[0]}"
            )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> JudgeEndpoint:
        """The endpoint the environment configures; JudgeEndpointError names the variable to set."""
        base_url = next((environ[name] for name in BASE_URL_VARIABLES if environ.get(name)), DEFAULT_BASE_URL)
        api_key = next((environ[name] for name in API_KEY_VARIABLES if environ.get(name)), None)
        if api_key is None:
            raise JudgeEndpointError(
                f"no judge API key: set {API_KEY_VARIABLES[0]} (or {API_KEY_VARIABLES[1]}) for the endpoint "
                f"{public_url(base_url)} (set {BASE_URL_VARIABLES[0]} to use another; a server that checks no key "
                "accepts any value, e.g. EMPTY)"
            )
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise JudgeEndpointError(f"{BASE_URL_VARIABLES[0]}={public_url(base_url)!r} is not an http(s) URL")
        return cls(base_url.rstrip("/"), api_key)

    @property
    def normalized_url(self) -> str:
        """The base URL as the cache keys it: scheme and host in lower case, no default port, no trailing slash."""
        parts = urllib.parse.urlsplit(self.base_url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port not in (None, DEFAULT_PORTS.get(scheme)):
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.normalized_url).netloc

    def scrub(self, text: str) -> str:
        """`text` (a server's reply, say) with the API key masked wherever it stands as a word of its own."""
        return re.sub(rf"(?<![\w-]){re.escape(self.api_key)}(?![\w-])", "***", text)


def judge_model(cli_choice: str | None, paper_default: str, environ: Mapping[str, str] = os.environ) -> str:
    """`--judge-model`, else `ONMERGE_JUDGE_MODEL`, else the paper's judge for the benchmark."""
    return cli_choice or environ.get(MODEL_VARIABLE) or paper_default


def request_key(endpoint_url: str, payload: Mapping[str, Any]) -> str:
    """The cache key: SHA-256 of the endpoint's normalised base URL and the canonical request body."""
    material = {"endpoint": endpoint_url, "request": payload}
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Judged(Generic[T]):
    """What a reader made of the judge's answer: `value`, or None and the `failure` when no attempt was scorable;
    `response` is the answer it was read from (the last one asked, when none could be read)."""

    value: T | None
    response: Mapping[str, Any]
    failure: str | None = None


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
        scoring_attempts: int = SCORING_ATTEMPTS,
        timeout_s: float = 300.0,
        deadline_s: float = 900.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_tries < 1 or scoring_attempts < 1:
            raise ValueError(f"max_tries and scoring_attempts must be at least 1, not {max_tries}, {scoring_attempts}")
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir)
        self.max_tries = max_tries
        self.scoring_attempts = scoring_attempts
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._checked_models: set[str] = set()
        self._cache_checked = False
        self.cache_hits = 0
        self.cache_misses = 0
        self.failed = 0

    # --- the cache ---------------------------------------------------------------------------------------------

    def _cache_path(self, payload: Mapping[str, Any]) -> Path:
        key = request_key(self.endpoint.normalized_url, payload)
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, payload: Mapping[str, Any], read: Callable[[Mapping[str, Any]], T]) -> Judged[T] | None:
        """The cached answer to this request from this endpoint, as `read` reads it; None when it is absent,
        unreadable, another endpoint's or request's, or unscorable."""
        try:
            entry = json.loads(self._cache_path(payload).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(entry, dict) or entry.get("endpoint") != self.endpoint.normalized_url:
            return None
        if entry.get("request") != payload or not isinstance(entry.get("response"), dict):
            return None
        try:
            return Judged(read(entry["response"]), entry["response"])
        except Unscorable:
            return None

    def complete(self, payload: Mapping[str, Any], read: Callable[[Mapping[str, Any]], T]) -> Judged[T]:
        """The first answer to `payload` (a request body) that `read` can score: from the cache, else asked up to
        `scoring_attempts` times; only a scorable answer is cached. Endpoint errors raise JudgeEndpointError."""
        judged = self.cached(payload, read)
        if judged is not None:
            with self._lock:
                self.cache_hits += 1
            return judged
        self.preflight(payload["model"])
        reason, response = "", {}
        for _ in range(self.scoring_attempts):
            response = self._send("POST", "/chat/completions", dict(payload))
            try:
                value = read(response)
            except Unscorable as error:
                reason = self.endpoint.scrub(str(error))
                continue
            entry = {"endpoint": self.endpoint.normalized_url, "request": payload, "response": response}
            write_json(self._cache_path(payload), entry)
            with self._lock:
                self.cache_misses += 1
            return Judged(value, response)
        with self._lock:
            self.failed += 1
        return Judged(None, response, f"{reason} (after {self.scoring_attempts} attempts)")

    def _check_cache_writable(self) -> None:
        """Write a probe file in the cache folder, so an unwritable cache fails before any paid request rather than
        after the first one. An anonymous temporary file: it vanishes on close, or with this process if killed."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.cache_dir) as probe:
                probe.write(b"probe")
                probe.flush()
        except OSError as error:
            raise JudgeEndpointError(
                f"the judgment cache folder {self.cache_dir} is not writable ({error.strerror or error}); "
                "choose another with --cache"
            ) from error

    # --- the endpoint ------------------------------------------------------------------------------------------

    def preflight(self, model: str) -> None:
        """Once: the cache folder is writable; once per model: the endpoint answers `GET /models`, accepts the key,
        and lists `model`. Unreachable is an error at once (that is what this checks); 429 and 5xx are retried."""
        with self._lock:
            if not self._cache_checked:
                self._check_cache_writable()
                self._cache_checked = True
            if model in self._checked_models:
                return
            listing = self._send("GET", "/models", None, retry_connection_errors=False)
            entries = listing.get("data")
            if not isinstance(entries, list):
                raise JudgeEndpointError(
                    f"GET {self.endpoint.base_url}/models answered without a list of models ('data' is "
                    f"{json.dumps(entries)[:100]}); is {self.endpoint.base_url} the API root of an OpenAI-compatible "
                    f"server (its URL up to /v1)? Set it with {BASE_URL_VARIABLES[0]}"
                )
            served = [entry.get("id") for entry in entries if isinstance(entry, dict)]
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
            description = self.endpoint.scrub(result.description)
            if result.status is None and not retry_connection_errors:
                raise JudgeEndpointError(
                    f"the judge endpoint {self.endpoint.base_url} is unreachable ({method} {url}: "
                    f"{description}); set {BASE_URL_VARIABLES[0]} (or {BASE_URL_VARIABLES[1]}) to a running "
                    "OpenAI-compatible server"
                )
            if result.status in (401, 403):
                raise JudgeEndpointError(
                    f"{method} {url}: HTTP {result.status}, the judge endpoint rejected the API key "
                    f"({description}); set {API_KEY_VARIABLES[0]} (or {API_KEY_VARIABLES[1]})"
                )
            if not result.retryable:
                raise JudgeEndpointError(f"{method} {url}: {description}")
            if tries == self.max_tries:
                raise JudgeEndpointError(f"{method} {url}: gave up after {tries} tries; last: {description}")
            self._sleep(self._delay(tries, result.retry_after))

    def _delay(self, tries: int, retry_after: float | None) -> float:
        """Seconds before the next try: `Retry-After` when the server sent it, else exponential back-off with jitter
        (half fixed, half random, so that concurrent workers spread out)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (tries - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _try(self, method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any] | _Failure:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"} | ({"Content-Type": "application/json"} if body is not None else {})
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        request.add_unredirected_header(AUTHORIZATION, f"Bearer {self.endpoint.api_key}")  # kept on its origin
        try:
            reply = exchange(request, timeout_s=self.timeout_s, deadline_s=self.deadline_s)
        except (OSError, http.client.HTTPException) as error:  # refused, reset, timeout, deadline, bad status line
            return _Failure(f"connection error: {getattr(error, 'reason', error)}", True)
        status, raw = reply.status, reply.body
        if not 200 <= status < 300:
            detail = raw.decode("utf-8", "replace")[:300]
            retry_after = _retry_after_s(reply.headers.get("Retry-After"))
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                return _Failure(f"HTTP {status} with Retry-After {retry_after:.0f} s ({detail})", False, status)
            return _Failure(f"HTTP {status} ({detail})", status in RETRIED_STATUSES, status, retry_after)
        try:
            parsed = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _Failure(f"HTTP {status} with a body that is not JSON ({raw[:200]!r})", True, status)
        if not isinstance(parsed, dict):
            return _Failure(f"HTTP {status} with a body that is not a JSON object ({raw[:200]!r})", True, status)
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


# --- reading an answer -----------------------------------------------------------------------------------------


def first_choice(response: Mapping[str, Any]) -> Mapping[str, Any]:
    """`choices[0]` of a chat completion, holding a message; Unscorable otherwise."""
    choices = response.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
        raise Unscorable(f"no choices[0].message in the answer ({json.dumps(response)[:200]})")
    return choice


def message_content(response: Mapping[str, Any]) -> str:
    """The text of the first choice; Unscorable when it is null (or not text)."""
    content = first_choice(response)["message"].get("content")
    if not isinstance(content, str):
        raise Unscorable(f"the answer's content is {json.dumps(content)[:100]}, not text")
    return content


def finished_content(response: Mapping[str, Any]) -> str:
    """The text of the first choice, if the judge finished it; Unscorable when it was cut short."""
    text = message_content(response)
    reason = first_choice(response).get("finish_reason")
    if reason in TRUNCATED:
        raise Unscorable(f"the answer was cut short (finish_reason={reason})")
    return text


def answer_text(response: Mapping[str, Any]) -> str | None:
    """The first choice's text for the record, None where the answer holds none."""
    try:
        return message_content(response)
    except Unscorable:
        return None


def failure_summary(reasons: Sequence[str]) -> str:
    """The commonest reasons judgments failed, with their counts, for the error when none could be scored."""
    return "; ".join(f"{count}x {reason}" for reason, count in Counter(reasons).most_common(3))
