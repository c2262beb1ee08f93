"""Benchmark data (questions, reference answers, instructions, AlpacaEval's GLM data) from a local file, a Hugging
Face hub dataset file or a URL, with the SHA-256 of what was read for the provenance.

A source is one of:
- a local path;
- `hf://datasets/<owner>/<name>[@<revision>]/<path in repo>`, fetched with `huggingface_hub.hf_hub_download` (its
  cache, `HF_ENDPOINT` and `HF_HUB_OFFLINE` apply);
- an `http://` or `https://` URL; credentials in it (`https://user:password@host/...`) are sent as Basic auth, to
  its origin only, and masked wherever the source is named (messages, provenance: `SourceText.source`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onmerge.judges.transport import basic_auth_request, exchange, public_url

HUB_DATASET_PREFIX = "hf://datasets/"


@dataclass(frozen=True)
class SourceText:
    source: str  # as it may be printed: a URL's credentials masked
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def read_source(source: str, timeout: float = 60.0, deadline: float = 600.0) -> SourceText:
    """The text of `source` (see the module docstring), each read within `timeout` seconds and the whole within
    `deadline`; ValueError names the source and what went wrong."""
    if source.startswith(HUB_DATASET_PREFIX):
        return SourceText(source, Path(_hub_download(source)).read_text(encoding="utf-8"))
    if source.startswith(("http://", "https://")):
        return SourceText(public_url(source), _download(source, timeout, deadline))
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{source} is not a file (nor an hf://datasets/... or http(s):// source)")
    return SourceText(source, path.read_text(encoding="utf-8"))


def _download(url: str, timeout: float, deadline: float) -> str:
    """The text at `url`, its credentials sent home only (transport); every message names the masked URL."""
    try:
        reply = exchange(basic_auth_request(url), timeout_s=timeout, deadline_s=deadline)
    except (OSError, http.client.HTTPException) as error:
        raise ValueError(f"cannot download {public_url(url)}: {error}") from error
    if not 200 <= reply.status < 300:
        raise ValueError(f"cannot download {public_url(url)}: HTTP {reply.status}")
    try:
        return reply.body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{public_url(url)} is not UTF-8 text ({error})") from error


def _hub_download(source: str) -> str:
    from huggingface_hub import hf_hub_download

    owner, _, rest = source.removeprefix(HUB_DATASET_PREFIX).partition("/")
    name_revision, _, filename = rest.partition("/")
    name, _, revision = name_revision.partition("@")
    if not (owner and name and filename):
        raise ValueError(f"{source}: expected hf://datasets/<owner>/<name>[@<revision>]/<file>")
    try:
        return hf_hub_download(f"{owner}/{name}", filename, repo_type="dataset", revision=revision or None)
    except Exception as error:  # the hub client raises many kinds (offline, 404, auth); all mean "cannot read"
        raise ValueError(f"cannot download {source}: {error}") from error


def parse_records(text: SourceText) -> list[dict[str, Any]]:
    """JSON objects from a JSON list or from JSON Lines (one object per line; blank lines skipped)."""
    body = text.text.strip()
    if body.startswith("["):
        try:
            records = json.loads(body)
        except json.JSONDecodeError as error:
            raise ValueError(f"{text.source}: not valid JSON ({error})") from error
    else:
        records = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{text.source} line {number}: not valid JSON ({error})") from error
    bad = [i for i, record in enumerate(records) if not isinstance(record, dict)]
    if bad:
        raise ValueError(f"{text.source}: record {bad[0]} is not a JSON object")
    return records


def read_records(source: str) -> tuple[list[dict[str, Any]], SourceText]:
    """`parse_records(read_source(source))`, and the text read (for its SHA-256)."""
    text = read_source(source)
    return parse_records(text), text


def full_set_or_subset(items: list, limit: int | None, expected: int, noun: str, benchmark: str, where: str) -> list:
    """All `expected` items of a benchmark, or its first `limit` when a subset is asked for on purpose."""
    if limit is None:
        if len(items) != expected:
            raise ValueError(
                f"{where} holds {len(items)} {noun}; {benchmark} has {expected} (pass a limit to judge a subset on "
                "purpose)"
            )
        return items
    if not 1 <= limit <= len(items):
        raise ValueError(f"limit {limit} is outside 1..{len(items)}, the {noun} {where} holds")
    return items[:limit]


def read_answers(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """An answers file `onmerge answers` wrote, and what a judgment's provenance says of it (path, SHA-256, model)."""
    text = Path(path).read_text(encoding="utf-8")
    answers = json.loads(text)
    record = {"answers": str(path), "answers_sha256": hashlib.sha256(text.encode()).hexdigest()}
    return answers, record | {"answers_model": answers.get("model")}
