"""The judges against faulty answers and faulty servers (issue 16, section 3), on local servers on 127.0.0.1:
answers that cannot be scored are retried, never cached, and recorded as failed; the cache keys the endpoint; the key
and a URL's credentials never leave their origin nor appear in a message; a trickling server meets a deadline; a bad
model list and an unwritable cache fail before any paid request."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from onmerge import worlds
from onmerge.cli import main
from onmerge.items import ITEMS_FILE
from onmerge.judges import alpacaeval, mt_bench
from onmerge.judges.endpoint import ChatClient, JudgeEndpoint, JudgeEndpointError, Unscorable, request_key
from onmerge.judges.sources import read_records
from onmerge.judges.transport import origin
from onmerge.paired import read_measures

KEY = "sk-test-0123456789"
MODELS = {"object": "list", "data": [{"id": "gpt-4"}, {"id": "gpt-4-1106-preview"}]}
Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeJudge:
    """A server whose answers a test scripts: `answer(body)` gives each completion, `routes` override any path."""

    url: str = ""
    answer: Callable[[dict], Any] = lambda body: completion("Rating: [[5]]")
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]


def completion(content: str | None, finish_reason: str = "stop", **choice: Any) -> dict:
    message = {"role": "assistant", "content": content}
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason, **choice}]}


def send(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()  # json.dumps writes NaN as NaN
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def handler_for(judge: FakeJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def handle_any(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            judge.seen.append(Seen(method, self.path, dict(self.headers), body))
            if self.path in judge.routes:
                judge.routes[self.path](self)
            elif self.path == "/v1/models":
                send(self, 200, MODELS)
            elif method == "POST" and self.path == "/v1/chat/completions":
                send(self, 200, judge.answer(body))
            else:
                send(self, 404, {"error": "no such path"})

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

    return Handler


@pytest.fixture
def serve() -> Iterator[Callable[[], FakeJudge]]:
    """Start fake judges on free ports, as many as a test asks for."""
    servers = []

    def start() -> FakeJudge:
        judge = FakeJudge()
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(judge))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        judge.url = f"http://127.0.0.1:{server.server_address[1]}"
        return judge

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def environ(judge: FakeJudge) -> dict[str, str]:
    return {"ONMERGE_JUDGE_BASE_URL": judge.base_url, "ONMERGE_JUDGE_API_KEY": KEY}


def client(judge: FakeJudge, cache: Path, **options: Any) -> ChatClient:
    return ChatClient(JudgeEndpoint(judge.base_url, KEY), cache, sleep=lambda s: None, **options)


# --- MT-Bench fixtures: each answer carries a MARK the scripted judge answers to -------------------------------

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now in French."]},
    {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3+3?"], "reference": ["4", "6"]},
    {"question_id": 131, "category": "extraction", "turns": ["Extract the year.", "And the month."]},
]


def mt_bench_files(tmp_path: Path, marks: list[tuple[str, str]]) -> tuple[Path, Path]:
    questions = tmp_path / "question.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    rows = [
        {"question_id": q["question_id"], "prompts": q["turns"], "turns": [f"answer MARK={m}" for m in pair]}
        for q, pair in zip(QUESTIONS, marks, strict=True)
    ]
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"model": "m", "answers": rows}))
    return questions, answers


def marked_judge(judge: FakeJudge, replies: dict[str, Callable[[], dict]]) -> None:
    """Answer each judgment by the MARK of the answer it grades (the last one in the prompt)."""
    judge.answer = lambda body: replies[re.findall(r"MARK=(\w+)", body["messages"][-1]["content"])[-1]]()


def judge_mt_bench(tmp_path: Path, judge: FakeJudge, cache: Path, **options: Any) -> dict:
    questions, answers = tmp_path / "question.jsonl", tmp_path / "answers.json"
    out = tmp_path / "mt_bench.json"
    mt_bench.judge_file(str(questions), answers, cache, out, limit=3, environ=environ(judge), **options)
    return json.loads(out.read_text())


def cached_responses(cache: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in cache.rglob("*.json")]


# --- unscorable answers ------------------------------------------------------------------------------------------


def test_parse_rating_accepts_exactly_what_fastchats_judge_accepts():
    """FastChat's run_judge_single: `\\[\\[(\\d+\\.?\\d*)\\]\\]`, else `\\[(\\d+\\.?\\d*)\\]`, then ast.literal_eval."""
    readable = {"Rating: [[10]]": 10.0, "[[8.5]]": 8.5, "[[8.]]": 8.0, "Rating: [8]": 8.0, "[1] said; [[7]]": 7.0}
    assert {text: mt_bench.parse_rating(text) for text in readable} == readable
    unscorable = {
        "Rating: [[08]]": r"\[\[08\]\] is no number FastChat reads",  # literal_eval: leading zeros (FastChat crashes)
        "Rating: [[11]]": r"\[\[11\]\] is outside the 1\.\.10 scale",
        "Rating: [[0]]": r"\[\[0\]\] is outside",
        "Rating: [[rating]]": r"no \[\[rating\]\]",
        "Rating: 8/10": r"no \[\[rating\]\]",
    }
    for text, reason in unscorable.items():
        with pytest.raises(Unscorable, match=reason):
            mt_bench.parse_rating(text)


@pytest.mark.parametrize(
    "response, reason",
    [
        (completion("Rating: [[7]] and then the jud", "length"), r"cut short \(finish_reason=length\)"),
        (completion(None), "content is null"),
        ({"choices": []}, r"no choices\[0\]\.message"),
        ({"error": {"message": "overloaded"}}, r"no choices\[0\]\.message"),
    ],
)
def test_a_cut_short_or_empty_mt_bench_judgment_is_unscorable(response, reason):
    with pytest.raises(Unscorable, match=reason):
        mt_bench.read_rating(response)


def top(*entries: dict) -> dict:
    return {"content": [{"token": "m", "logprob": -0.1, "top_logprobs": list(entries)}]}


@pytest.mark.parametrize(
    "choice, reason",
    [
        ({"logprobs": top({"token": "m"}, {"token": "M", "logprob": -1.0})}, "log-probability of m is None"),
        ({"logprobs": top({"token": "M", "logprob": "-0.5"})}, "log-probability of M is '-0.5'"),
        ({"logprobs": top({"token": "m", "logprob": math.nan})}, "log-probability of m is nan"),
        ({"logprobs": top({"token": "m", "logprob": 0.3})}, r"0\.3, not a number in \(-inf, 0\]"),
        ({"logprobs": top({"token": "m", "logprob": -math.inf})}, "log-probability of m is -inf"),
        ({"logprobs": top({"token": "x", "logprob": -0.1})}, "neither m nor M among"),
        ({"logprobs": {"content": [{"token": "m", "logprob": -0.1}]}}, "top log-probabilities are missing"),
        ({"message": {"content": None}}, "content is null"),
        ({"message": {"content": "Both"}}, "answered 'Both', neither m nor M"),
    ],
)
def test_an_alpacaeval_answer_without_a_readable_preference_is_unscorable(choice, reason):
    response = {"choices": [{"message": {"content": "m"}, "finish_reason": "length"} | choice]}
    with pytest.raises(Unscorable, match=reason):
        alpacaeval.first_shown_preference(response)


def test_alpacaeval_reads_one_label_or_far_out_log_probabilities():
    """A single label is certain; two labels far below exp's range still give their ratio (logsumexp)."""
    only_big = {"choices": [{"message": {"content": "M"}, "logprobs": top({"token": "M", "logprob": -0.01})}]}
    assert alpacaeval.first_shown_preference(only_big) == (0.0, "logprobs")
    far = top({"token": "m", "logprob": -1000.0}, {"token": "M", "logprob": -1000.0 - math.log(3)})
    assert alpacaeval.first_shown_preference({"choices": [{"message": {"content": "m"}, "logprobs": far}]}) == (
        pytest.approx(0.75),
        "logprobs",
    )


def test_unscorable_judgments_are_retried_never_cached_and_recorded_as_failed(serve, tmp_path):
    judge, flaky = serve(), iter([completion("No rating yet."), completion("Rating: [[6]]")])
    marked_judge(
        judge,
        {
            "EIGHT": lambda: completion("Good. Rating: [[8]]"),
            "NINE": lambda: completion("Rating: [9]"),
            "FLAKY": lambda: next(flaky),
            "LEADING_ZERO": lambda: completion("Rating: [[08]]"),
            "TRUNCATED": lambda: completion("Rating: [[7]] but", "length"),
            "NULL": lambda: completion(None),
        },
    )
    mt_bench_files(tmp_path, [("EIGHT", "FLAKY"), ("LEADING_ZERO", "TRUNCATED"), ("NULL", "NINE")])
    cache = tmp_path / "cache"
    result = judge_mt_bench(tmp_path, judge, cache)

    by_turn = {(j["question_id"], j["turn"]): j for j in result["judgments"]}
    assert {k: j["score"] for k, j in by_turn.items() if not j["failed"]} == {(81, 1): 8, (81, 2): 6, (131, 2): 9}
    reasons = {k: j["reason"] for k, j in by_turn.items() if j["failed"]}
    assert reasons == {
        (111, 1): "the rating [[08]] is no number FastChat reads (a leading zero?) (after 3 attempts)",
        (111, 2): "the answer was cut short (finish_reason=length) (after 3 attempts)",
        (131, 1): "the answer's content is null, not text (after 3 attempts)",
    }
    assert all(by_turn[k]["score"] is None for k in reasons) and by_turn[(131, 1)]["judgment"] is None
    assert result["metrics"]["mt_bench"] == {"value": pytest.approx(23 / 3), "stderr": pytest.approx(8 / 9), "n": 3}
    assert result["provenance"]["turns_failed"] == 3
    assert len(judge.posts()) == 1 + 2 + 3 * 3 + 1  # FLAKY took two tries; each unscorable one three
    contents = sorted(entry["response"]["choices"][0]["message"]["content"] for entry in cached_responses(cache))
    assert contents == ["Good. Rating: [[8]]", "Rating: [9]", "Rating: [[6]]"]  # only scorable answers

    # downstream: the paired bootstrap reads the rated turns only
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "mt_bench.json").write_text(json.dumps(result))
    with gzip.open(evaluation / ITEMS_FILE, "wt") as stream:
        json.dump({}, stream)
    mt_bench = read_measures(evaluation, worlds.get("paper"))["mt_bench"]
    assert mt_bench.value == pytest.approx(23 / 3)  # the mean over rated turns

    posts = len(judge.posts())
    judge_mt_bench(tmp_path, judge, cache)
    assert len(judge.posts()) - posts == 3 * 3  # a rerun asks the failed ones again, the rest come from the cache


def alpacaeval_setup(tmp_path: Path, judge: FakeJudge, marks: dict[int, str]) -> tuple[Path, Path]:
    """8 instructions, our output GOOD (P = 0.9) except where `marks` gives an unscorable kind of answer."""
    texts = [f"Describe the colour number {i} briefly." for i in range(8)]
    reference = [{"instruction": t, "output": "REF " + "r" * (40 + 7 * i)} for i, t in enumerate(texts)]
    ours = [
        {"instruction": t, "output": f"GOOD {marks.get(i, '')} " + "o" * (30 + 19 * i)} for i, t in enumerate(texts)
    ]
    instructions, outputs = tmp_path / "instructions.json", tmp_path / "outputs.json"
    instructions.write_text(json.dumps(reference))
    outputs.write_text(json.dumps({"outputs": ours}))

    def answer(body: dict) -> dict:
        prompt = body["messages"][-1]["content"]
        p_first = 0.9 if prompt.index("GOOD") < prompt.index("REF") else 0.1
        first = {"NAN": math.nan, "POSITIVE": 0.25}.get(next((m for m in marks.values() if m in prompt), ""))
        logprobs = [
            {"token": "m", "logprob": math.log(p_first) if first is None else first},
            {"token": "M", "logprob": math.log(1 - p_first)},
        ]
        return completion(
            "m", "length", logprobs={"content": [{"token": "m", "logprob": -0.1, "top_logprobs": logprobs}]}
        )

    judge.answer = answer
    return instructions, outputs


def test_alpacaeval_leaves_failed_judgments_out_of_both_win_rates(serve, tmp_path):
    judge = serve()
    instructions, outputs = alpacaeval_setup(tmp_path, judge, {2: "NAN", 5: "POSITIVE"})
    out, cache = tmp_path / "alpacaeval.json", tmp_path / "cache"
    alpacaeval.judge_file(
        str(instructions), outputs, cache, out, glm_name="length_controlled_minimal", limit=8, environ=environ(judge)
    )
    result = json.loads(out.read_text())
    failed = [j for j in result["judgments"] if j["failed"]]
    assert [j["index"] for j in failed] == [2, 5]
    assert all(j["preference"] is None and j["glm_preference"] is None and j["read_from"] is None for j in failed)
    assert failed[0]["reason"] == "the log-probability of m is nan, not a number in (-inf, 0] (after 3 attempts)"
    assert failed[1]["reply"]["top_logprobs"][0] == {"token": "m", "logprob": 0.25}  # kept for audit
    assert result["metrics"]["alpacaeval2_raw"] == {
        "value": pytest.approx(90.0),
        "stderr": pytest.approx(0, abs=1e-9),
        "n": 6,
    }
    assert result["metrics"]["alpacaeval2_lc"]["n"] == 6
    assert result["provenance"]["judgments_failed"] == 2 and result["provenance"]["preferences_from_logprobs"] == 6
    assert len(cached_responses(cache)) == 6 and len(judge.posts()) == 6 + 2 * 3


def test_when_every_judgment_fails_the_run_says_why_and_writes_nothing(serve, tmp_path):
    judge = serve()
    judge.answer = lambda body: completion("I cannot rate this.")
    questions, answers = mt_bench_files(tmp_path, [("A", "B")] * 3)
    out = tmp_path / "mt_bench.json"
    command = ["judge", "mt-bench", "--questions", str(questions), "--answers", str(answers), "--limit", "3"]
    command += ["--cache", str(tmp_path / "cache"), "--out", str(out), "--attempts", "1"]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ(judge).items():
            patch.setenv(name, value)
        with pytest.raises(ValueError, match=r"every one of the 6 judgments failed.*6x no \[\[rating\]\]"):
            main(command)
    assert len(judge.posts()) == 6  # --attempts 1: no retry
    assert not out.exists() and not cached_responses(tmp_path / "cache")


# --- the cache keys the endpoint ---------------------------------------------------------------------------------


def test_request_key_covers_the_endpoint_and_the_model():
    request = {"model": "gpt-4", "messages": [{"role": "user", "content": "x"}], "temperature": 0}
    same = [JudgeEndpoint(url, KEY).normalized_url for url in ("HTTP://LocalHost:80/v1/", "http://localhost/v1")]
    assert same == ["http://localhost/v1"] * 2
    keys = {
        request_key("http://localhost/v1", request),
        request_key("http://localhost:8000/v1", request),
        request_key("https://localhost/v1", request),
        request_key("http://localhost/v1", request | {"model": "gpt-4o"}),
        request_key("http://localhost/v1", request | {"temperature": 1}),
    }
    assert len(keys) == 5


def test_endpoint_b_is_never_served_endpoint_a_judgments(serve, tmp_path):
    a, b = serve(), serve()
    marked_judge(a, {m: (lambda: completion("Rating: [[8]]")) for m in ("X", "Y")})
    marked_judge(b, {m: (lambda: completion("Rating: [[3]]")) for m in ("X", "Y")})
    mt_bench_files(tmp_path, [("X", "Y")] * 3)
    cache = tmp_path / "cache"
    assert judge_mt_bench(tmp_path, a, cache)["metrics"]["mt_bench"]["value"] == 8
    assert judge_mt_bench(tmp_path, b, cache)["metrics"]["mt_bench"]["value"] == 3
    assert len(a.posts()) == len(b.posts()) == 6
    seen_by_a = len(a.seen)
    assert judge_mt_bench(tmp_path, a, cache)["metrics"]["mt_bench"]["value"] == 8
    assert len(a.seen) == seen_by_a  # all from A's cache entries: no preflight, no request
    entries = cached_responses(cache)
    assert sorted({e["endpoint"] for e in entries}) == sorted([a.base_url, b.base_url])  # each names its endpoint
    assert not any(KEY in path.read_text() for path in cache.rglob("*.json"))  # and never the key


def test_a_cache_entry_of_another_endpoint_or_unscorable_is_redone(serve, tmp_path):
    a, b = serve(), serve()
    request = {"model": "gpt-4", "messages": [{"role": "user", "content": "grade"}], "temperature": 0}
    cache = tmp_path / "cache"
    assert client(a, cache).complete(request, mt_bench.read_rating).value == 5.0
    [a_entry] = cached_responses(cache)
    b_client = client(b, cache)
    b_path = b_client._cache_path(request)
    b_path.parent.mkdir(parents=True, exist_ok=True)
    b_path.write_text(json.dumps(a_entry))  # A's entry where B's would be
    b.answer = lambda body: completion("Rating: [[2]]")
    assert b_client.complete(request, mt_bench.read_rating).value == 2.0
    assert len(b.posts()) == 1 and json.loads(b_path.read_text())["endpoint"] == b.base_url
    b_path.write_text(json.dumps(a_entry | {"endpoint": b.base_url, "response": completion("Rating: [[08]]")}))
    assert client(b, cache).complete(request, mt_bench.read_rating).value == 2.0  # an old unscorable entry
    assert len(b.posts()) == 2


# --- the key and a URL's credentials stay home --------------------------------------------------------------------


def redirect(to: str, status: int = 302) -> Route:
    return lambda handler: send(handler, status, {}, {"Location": to})


def authorization(seen: Seen) -> str | None:
    return next((value for name, value in seen.headers.items() if name.lower() == "authorization"), None)


def test_a_redirect_to_another_origin_drops_the_key(serve, tmp_path):
    a, b = serve(), serve()
    a.routes["/v1/models"] = redirect(f"{b.base_url}/models")
    a.routes["/v1/chat/completions"] = redirect(f"{b.url}/elsewhere", 303)
    ours = client(a, tmp_path / "cache", max_tries=1)
    ours.preflight("gpt-4")  # B's model list, fetched without the key
    with pytest.raises(JudgeEndpointError, match="HTTP 404") as error:
        ours.complete({"model": "gpt-4", "messages": []}, mt_bench.read_rating)
    assert [authorization(s) for s in a.seen] == [f"Bearer {KEY}"] * 2
    assert [(s.method, s.path, authorization(s)) for s in b.seen] == [
        ("GET", "/v1/models", None),
        ("GET", "/elsewhere", None),
    ]
    assert KEY not in str(error.value)


def test_a_redirect_within_the_origin_keeps_the_key(serve, tmp_path):
    a = serve()
    a.routes["/v1/models"] = redirect("/v1/moved", 307)
    a.routes["/v1/moved"] = lambda handler: send(handler, 200, MODELS)
    client(a, tmp_path / "cache").preflight("gpt-4")
    assert [(s.path, authorization(s)) for s in a.seen] == [
        ("/v1/models", f"Bearer {KEY}"),
        ("/v1/moved", f"Bearer {KEY}"),
    ]


def test_origins_differ_by_scheme_host_and_port():
    assert origin("http://Example.org/v1") == origin("http://example.org:80/other")
    assert origin("https://example.org/v1") != origin("http://example.org/v1")
    assert origin("https://example.org/v1") != origin("https://example.org:8443/v1")
    assert origin("https://example.org/v1") != origin("https://example.org.evil/v1")


def test_credentials_and_the_key_are_never_printed(serve, tmp_path):
    with pytest.raises(JudgeEndpointError) as error:
        JudgeEndpoint.from_environment({"ONMERGE_JUDGE_BASE_URL": "https://user:s3cret@judge.example/v1"})
    assert "s3cret" not in str(error.value) and "https://***@judge.example/v1" in str(error.value)
    with pytest.raises(JudgeEndpointError, match="holds credentials") as error:
        JudgeEndpoint.from_environment(
            {"ONMERGE_JUDGE_BASE_URL": "https://user:s3cret@judge.example/v1", "OPENAI_API_KEY": KEY}
        )
    assert "s3cret" not in str(error.value)

    echo = serve()  # a server that echoes the request's Authorization header in its error
    echo.routes["/v1/models"] = lambda handler: send(
        handler, 401, {"error": f"bad: {handler.headers['Authorization']}"}
    )
    echo.routes["/v1/chat/completions"] = lambda handler: send(
        handler, 500, f"got {handler.headers['Authorization']}".encode()
    )
    with pytest.raises(
        JudgeEndpointError, match=r"rejected the API key \(HTTP 401 \(\{\"error\": \"bad: Bearer \*\*\*\"\}\)\)"
    ) as error:
        client(echo, tmp_path / "cache").preflight("gpt-4")
    assert KEY not in str(error.value)
    echo.routes["/v1/models"] = lambda handler: send(handler, 200, MODELS)
    with pytest.raises(
        JudgeEndpointError, match=r"gave up after 2 tries; last: HTTP 500 \(got Bearer \*\*\*\)"
    ) as error:
        client(echo, tmp_path / "cache", max_tries=2).complete({"model": "gpt-4", "messages": []}, mt_bench.read_rating)
    assert KEY not in str(error.value)


def test_a_source_url_with_credentials_sends_basic_auth_home_only_and_prints_none(serve, tmp_path):
    home, elsewhere = serve(), serve()
    questions = "".join(json.dumps(q) + "\n" for q in QUESTIONS)
    home.routes["/q.jsonl"] = lambda handler: send(handler, 200, questions.encode())
    home.routes["/moved.jsonl"] = redirect("/q.jsonl")
    home.routes["/away.jsonl"] = redirect(f"{elsewhere.url}/q.jsonl")
    elsewhere.routes["/q.jsonl"] = lambda handler: send(handler, 200, questions.encode())
    secret_url = home.url.replace("http://", "http://reader:s3cret@")
    expected = "Basic " + base64.b64encode(b"reader:s3cret").decode()

    records, text = read_records(f"{secret_url}/moved.jsonl")
    assert len(records) == 3 and text.source == home.url.replace("http://", "http://***@") + "/moved.jsonl"
    assert [authorization(s) for s in home.seen] == [expected, expected]  # the same origin: kept
    read_records(f"{secret_url}/away.jsonl")
    assert [authorization(s) for s in elsewhere.seen] == [None]  # another origin: dropped
    with pytest.raises(
        ValueError, match=r"cannot download http://\*\*\*@127\.0\.0\.1:\d+/absent\.jsonl: HTTP 404"
    ) as error:
        read_records(f"{secret_url}/absent.jsonl")
    assert "s3cret" not in str(error.value)
    _, provenance = mt_bench.load_questions(f"{secret_url}/q.jsonl", limit=3)
    assert "s3cret" not in json.dumps(provenance)


# --- deadline, model list, cache folder ----------------------------------------------------------------------------


TRICKLES = {  # what a slow server sends first, then the byte it sends every 50 ms
    "trickled body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"{"),
    "trickled error body": (b"HTTP/1.1 503 Busy\r\nContent-Length: 100000\r\n\r\n", b"x"),
    "trickled headers": (b"HTTP/1.1 200 OK\r\n", b"X-Slow: y\r\n"),
}


def trickle(start: bytes, chunk: bytes) -> Route:
    """A server that sends `start`, then `chunk` every 50 ms for up to 10 s (until the client hangs up)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(start)
        until = time.monotonic() + 10
        with contextlib.suppress(OSError):
            while time.monotonic() < until:
                handler.wfile.write(chunk)
                handler.wfile.flush()
                time.sleep(0.05)

    return route


@pytest.mark.parametrize("kind", sorted(TRICKLES))
def test_a_trickling_server_fails_by_the_whole_response_deadline(serve, tmp_path, kind):
    judge = serve()
    judge.routes["/v1/chat/completions"] = trickle(*TRICKLES[kind])
    ours = client(judge, tmp_path / "cache", max_tries=2, timeout_s=5.0, deadline_s=0.5)
    started = time.monotonic()
    with pytest.raises(
        JudgeEndpointError, match=r"gave up after 2 tries; last: connection error: no complete response within 0\.5 s"
    ):
        ours.complete({"model": "gpt-4", "messages": []}, mt_bench.read_rating)
    assert time.monotonic() - started < 3.0  # two tries of 0.5 s, not the 5 s per-read timeout, nor forever


@pytest.mark.parametrize("listing", [{"object": "list", "data": None}, {"object": "list"}, {"data": "gpt-4"}])
def test_a_model_list_without_data_names_the_endpoint(serve, tmp_path, listing):
    judge = serve()
    judge.routes["/v1/models"] = lambda handler: send(handler, 200, listing)
    with pytest.raises(JudgeEndpointError, match="answered without a list of models") as error:
        client(judge, tmp_path / "cache").complete({"model": "gpt-4", "messages": []}, mt_bench.read_rating)
    assert f"GET {judge.base_url}/models" in str(error.value) and judge.posts() == []


def test_an_unwritable_cache_fails_before_any_request(serve, tmp_path):
    judge = serve()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be")
    mt_bench_files(tmp_path, [("A", "B")] * 3)
    with pytest.raises(JudgeEndpointError, match=r"the judgment cache folder .*not-a-folder/cache is not writable"):
        judge_mt_bench(tmp_path, judge, blocker / "cache")
    assert judge.seen == []  # not even the model list
    writable = client(judge, tmp_path / "cache")
    writable.preflight("gpt-4")
    assert list((tmp_path / "cache").iterdir()) == []  # the probe is gone
