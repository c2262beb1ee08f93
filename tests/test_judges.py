"""The judged reward benchmarks against a scripted OpenAI-compatible server on 127.0.0.1: MT-Bench grading, AlpacaEval
2.0 pairwise judging and its length-controlled win rate, the judgment cache, retries and the endpoint's errors; and
answer generation with a tiny model."""

import hashlib
import json
import math
import socket
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onmerge.cli import main
from onmerge.judges import alpacaeval, mt_bench
from onmerge.judges.answers import ChatGenerator, parse_generation, write_mt_bench_answers
from onmerge.judges.endpoint import ChatClient, JudgeEndpoint, JudgeEndpointError, Unscorable, request_key
from onmerge.judges.sources import read_records

from tiny import save_base_and_sft

SERVED_MODELS = ["gpt-4", "gpt-4-1106-preview"]
ENDPOINT_VARIABLES = (
    "ONMERGE_JUDGE_BASE_URL",
    "ONMERGE_JUDGE_API_KEY",
    "ONMERGE_JUDGE_MODEL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
)


class ScriptedJudge:
    """What the server received, the failures it answers the next POSTs with, and files it serves by path."""

    def __init__(self) -> None:
        self.base_url = ""
        self.received: list[tuple[str, str, dict | None]] = []
        self.failures: list[tuple[int, dict[str, str]]] = []
        self.files: dict[str, str] = {}

    def posts(self) -> list[dict]:
        return [body for method, _, body in self.received if method == "POST"]


def scripted_completion(body: dict) -> dict:
    """MT-Bench: the rating is the last `SCORE=n` in the prompt (the graded answer comes last), none for `NORATING`.
    AlpacaEval: P(ours better) is 0.9 for a `GOOD` output and 0.2 for a `BAD` one, given as log-probabilities of the
    labels of whichever output is shown first (`m`) and second (`M`)."""
    prompt = body["messages"][-1]["content"]
    if not body.get("logprobs"):
        scores = [part.split()[0] for part in prompt.split("SCORE=")[1:]]
        text = "The answer never says." if "NORATING" in prompt else f"Fine. Rating: [[{scores[-1]}]]"
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    ours = "GOOD" if "GOOD" in prompt else "BAD"
    p_ours = 0.9 if ours == "GOOD" else 0.2
    p_first = p_ours if prompt.index(ours) < prompt.index("REF") else 1 - p_ours
    top = [{"token": "m", "logprob": math.log(p_first)}, {"token": "M", "logprob": math.log(1 - p_first)}]
    answer = "m" if p_first >= 0.5 else "M"
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": {
                    "content": [{"token": answer, "logprob": max(t["logprob"] for t in top), "top_logprobs": top}]
                },
            }
        ]
    }


def make_handler(judge: ScriptedJudge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def reply(self, status: int, payload: dict | str, headers: dict[str, str] | None = None) -> None:
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            judge.received.append(("GET", self.path, None))
            if self.path == "/v1/models":
                self.reply(200, {"object": "list", "data": [{"id": name} for name in SERVED_MODELS]})
            elif self.path in judge.files:
                self.reply(200, judge.files[self.path])
            else:
                self.reply(404, {"error": "no such path"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            judge.received.append(("POST", self.path, body))
            if judge.failures:
                status, headers = judge.failures.pop(0)
                self.reply(status, {"error": {"message": f"scripted {status}"}}, headers)
            else:
                self.reply(200, scripted_completion(body))

    return Handler


@pytest.fixture
def judge_server(monkeypatch):
    """A scripted judge on a free port, configured through the environment as a user would."""
    judge = ScriptedJudge()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(judge))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    judge.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    monkeypatch.setenv("ONMERGE_JUDGE_BASE_URL", judge.base_url)
    monkeypatch.setenv("ONMERGE_JUDGE_API_KEY", "test-key")
    yield judge
    server.shutdown()
    server.server_close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- MT-Bench ----------------------------------------------------------------------------------------------------

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now in French."]},
    {
        "question_id": 111,
        "category": "math",
        "turns": ["What is 2+2?", "And 3+3?"],
        "reference": ["4", "6"],
    },
    {"question_id": 131, "category": "extraction", "turns": ["Extract the year.", "And the month."]},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def mt_bench_answers(path: Path, scores: dict[int, tuple[str, str]]) -> Path:
    """An answers file as `onmerge answers mt-bench` writes it; each answer carries the score the judge will give."""
    rows = [
        {"question_id": q["question_id"], "prompts": q["turns"], "turns": [f"answer SCORE={s}" for s in scores[i]]}
        for i, q in enumerate(QUESTIONS)
    ]
    path.write_text(json.dumps({"benchmark": "mt_bench", "model": "m", "answers": rows}))
    return path


def test_parse_rating_follows_fastchat_patterns_and_the_1_to_10_scale():
    assert mt_bench.parse_rating("Good.\n\nRating: [[8]]") == 8.0
    assert mt_bench.parse_rating("Rating: [[7.5]]") == 7.5
    assert mt_bench.parse_rating("Rating: [9]") == 9.0  # FastChat's backup pattern
    assert mt_bench.parse_rating("list [3] ... Rating: [[6]]") == 6.0  # [[x]] wins over an earlier [x]
    for unscorable in ("no rating here", "Rating: [[0]]", "Rating: [[11]]"):
        with pytest.raises(Unscorable):
            mt_bench.parse_rating(unscorable)


def test_questions_are_validated_before_judging(tmp_path):
    source = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    with pytest.raises(ValueError, match="holds 3 questions; MT-Bench has 80"):
        mt_bench.load_questions(str(source))
    with pytest.raises(ValueError, match=r"limit 4 is outside 1\.\.3"):
        mt_bench.load_questions(str(source), limit=4)
    no_reference = write_jsonl(
        tmp_path / "nr.jsonl", [{k: v for k, v in q.items() if k != "reference"} for q in QUESTIONS]
    )
    with pytest.raises(ValueError, match=r"questions \['111'\] .* need reference answers"):
        mt_bench.load_questions(str(no_reference), limit=3)
    one_turn = write_jsonl(tmp_path / "t.jsonl", [QUESTIONS[0] | {"turns": ["only one"]}])
    with pytest.raises(ValueError, match="turns must be 2 strings"):
        mt_bench.load_questions(str(one_turn), limit=1)
    twice = write_jsonl(tmp_path / "d.jsonl", [QUESTIONS[0], QUESTIONS[0]])
    with pytest.raises(ValueError, match=r"question ids \['81'\] appear more than once"):
        mt_bench.load_questions(str(twice), limit=2)


def test_reference_answers_file_takes_precedence_like_fastchat(tmp_path):
    source = write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    references = write_jsonl(
        tmp_path / "gpt-4.jsonl", [{"question_id": 111, "model_id": "gpt-4", "choices": [{"turns": ["four", "six"]}]}]
    )
    questions, provenance = mt_bench.load_questions(str(source), limit=3, references=str(references))
    assert questions[1].reference == ("four", "six")
    assert provenance["references"] == str(references)
    name, request = mt_bench.judge_request(questions[1], ["a", "b"], 2, "gpt-4")
    assert name == "single-math-v1-multi-turn"
    assert "### Reference answer:\nfour" in request["messages"][1]["content"]


def test_mt_bench_scores_both_turns_and_a_rerun_is_served_from_the_cache(judge_server, tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", QUESTIONS)
    answers = mt_bench_answers(tmp_path / "answers.json", {0: ("8", "6"), 1: ("10", "4"), 2: ("9", "5")})
    out, cache = tmp_path / "mt_bench.json", tmp_path / "cache"
    command = ["judge", "mt-bench", "--questions", str(questions), "--answers", str(answers)]
    command += ["--cache", str(cache), "--out", str(out), "--limit", "3", "--workers", "2"]
    main(command)

    result = json.loads(out.read_text())
    metrics = result["metrics"]
    assert metrics["mt_bench"]["value"] == pytest.approx(7.0) and metrics["mt_bench"]["n"] == 6
    assert metrics["mt_bench_turn1"] == {"value": 9.0, "stderr": pytest.approx(1 / math.sqrt(3)), "n": 3}
    assert metrics["mt_bench_turn2"]["value"] == pytest.approx(5.0)
    # clustered by question: residuals per question (8-7)+(6-7)=0, (10-7)+(4-7)=0, (9-7)+(5-7)=0
    assert metrics["mt_bench"]["stderr"] == pytest.approx(0.0)
    assert result["provenance"]["judge_model"] == "gpt-4"
    assert result["provenance"]["judge_base_url_host"] == judge_server.base_url.split("/")[2]
    record = json.loads((tmp_path / "mt_bench.provenance.json").read_text())
    assert record["step"] == "judge" and record["settings"]["limit"] == 3
    assert record["inputs"]["answers"]["sha256"] == {"answers.json": hashlib.sha256(answers.read_bytes()).hexdigest()}
    prompts = {(j["question_id"], j["turn"]): j["prompt"] for j in result["judgments"]}
    assert prompts == {
        (81, 1): "single-v1",
        (81, 2): "single-v1-multi-turn",
        (111, 1): "single-math-v1",
        (111, 2): "single-math-v1-multi-turn",
        (131, 1): "single-v1",
        (131, 2): "single-v1-multi-turn",
    }
    posts = judge_server.posts()
    assert len(posts) == 6 and all(p["model"] == "gpt-4" and p["temperature"] == 0 for p in posts)
    math_turn1 = next(
        p
        for p in posts
        if "What is 2+2?" in p["messages"][1]["content"] and "### User" not in p["messages"][1]["content"]
    )
    assert "[The Start of Reference Answer]\n4\n[The End of Reference Answer]" in math_turn1["messages"][1]["content"]

    first_bytes, requests_so_far = out.read_bytes(), len(judge_server.received)
    out.unlink()
    main(command)
    assert len(judge_server.received) == requests_so_far  # no preflight, no judgment: all cached
    assert out.read_bytes() == first_bytes


def test_a_judgment_without_rating_is_asked_again_then_recorded_as_failed(judge_server, tmp_path):
    questions = write_jsonl(tmp_path / "question.jsonl", QUESTIONS)
    answers = mt_bench_answers(tmp_path / "answers.json", {0: ("8", "6"), 1: ("10", "4"), 2: ("9", "NORATING")})
    out = tmp_path / "mt_bench.json"
    mt_bench.judge_file(str(questions), answers, tmp_path / "cache", out, limit=3)
    result = json.loads(out.read_text())
    failed = [j for j in result["judgments"] if j["failed"]]
    assert [(j["question_id"], j["turn"], j["score"]) for j in failed] == [(131, 2, None)]
    assert failed[0]["reason"] == "no [[rating]] (nor [rating]) in the judgment (after 3 attempts)"
    assert result["metrics"]["mt_bench"]["n"] == 5
    assert result["metrics"]["mt_bench"]["value"] == pytest.approx((8 + 6 + 10 + 4 + 9) / 5)  # never scored 0
    assert result["provenance"]["turns_failed"] == 1 and result["provenance"]["scoring_attempts"] == 3
    assert len(judge_server.posts()) == 5 + 3


def test_answers_must_belong_to_the_questions(tmp_path):
    questions, _ = mt_bench.load_questions(str(write_jsonl(tmp_path / "q.jsonl", QUESTIONS)), limit=3)
    rows = [{"question_id": 81, "prompts": ["Write a haiku.", "Now in French."], "turns": ["a", "b"]}]
    with pytest.raises(ValueError, match=r"no answers for questions \['111', '131'\]"):
        mt_bench.answers_by_question(rows, questions, "answers.json")
    rows = [{"question_id": q.question_id, "prompts": ["other", "turns"], "turns": ["a", "b"]} for q in questions]
    with pytest.raises(ValueError, match="generated for other turns"):
        mt_bench.answers_by_question(rows, questions, "answers.json")


# --- the endpoint ------------------------------------------------------------------------------------------------


def test_retries_back_off_and_honour_retry_after(judge_server, tmp_path):
    judge_server.failures = [(500, {}), (429, {"Retry-After": "7"}), (503, {})]
    sleeps = []
    client = ChatClient(JudgeEndpoint.from_environment(), tmp_path / "cache", sleep=sleeps.append, backoff_s=2.0)
    request = {"model": "gpt-4", "messages": [{"role": "user", "content": "SCORE=3"}], "temperature": 0}
    assert client.complete(request, mt_bench.read_rating).value == 3.0
    assert len(judge_server.posts()) == 4
    assert 1.0 <= sleeps[0] <= 2.0  # try 1: between half and all of the 2 s back-off
    assert sleeps[1] == 7.0  # the server's Retry-After
    assert 4.0 <= sleeps[2] <= 8.0  # try 3: doubled
    assert (client.cache_hits, client.cache_misses) == (0, 1)


def test_gives_up_after_bounded_tries_naming_url_and_status(judge_server, tmp_path):
    judge_server.failures = [(503, {})] * 5
    client = ChatClient(JudgeEndpoint.from_environment(), tmp_path / "cache", max_tries=3, sleep=lambda s: None)
    request = {"model": "gpt-4", "messages": [{"role": "user", "content": "SCORE=3"}]}
    with pytest.raises(JudgeEndpointError) as error:
        client.complete(request, mt_bench.read_rating)
    message = str(error.value)
    assert f"{judge_server.base_url}/chat/completions" in message
    assert "gave up after 3 tries" in message and "HTTP 503" in message
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_client_errors_are_not_retried(judge_server, tmp_path):
    judge_server.failures = [(400, {})]
    client = ChatClient(JudgeEndpoint.from_environment(), tmp_path / "cache", sleep=lambda s: None)
    with pytest.raises(JudgeEndpointError, match="HTTP 400"):
        client.complete({"model": "gpt-4", "messages": []}, mt_bench.read_rating)
    assert len(judge_server.posts()) == 1


def test_unreachable_endpoint_fails_before_any_judging(judge_server, tmp_path, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("ONMERGE_JUDGE_BASE_URL", url)
    questions = write_jsonl(tmp_path / "question.jsonl", QUESTIONS)
    answers = mt_bench_answers(tmp_path / "answers.json", {0: ("8", "6"), 1: ("10", "4"), 2: ("9", "5")})
    out, cache = tmp_path / "mt_bench.json", tmp_path / "cache"
    command = ["judge", "mt-bench", "--questions", str(questions), "--answers", str(answers)]
    with pytest.raises(JudgeEndpointError) as error:
        main([*command, "--cache", str(cache), "--out", str(out), "--limit", "3"])
    assert url in str(error.value) and "unreachable" in str(error.value)
    assert "ONMERGE_JUDGE_BASE_URL" in str(error.value)
    assert not out.exists() and not list(cache.rglob("*.json"))


def test_missing_api_key_names_the_variables(judge_server, tmp_path, monkeypatch):
    monkeypatch.delenv("ONMERGE_JUDGE_API_KEY")
    questions = write_jsonl(tmp_path / "question.jsonl", QUESTIONS)
    answers = mt_bench_answers(tmp_path / "answers.json", {0: ("8", "6"), 1: ("10", "4"), 2: ("9", "5")})
    with pytest.raises(JudgeEndpointError, match="set ONMERGE_JUDGE_API_KEY \\(or OPENAI_API_KEY\\)"):
        mt_bench.judge_file(str(questions), answers, tmp_path / "cache", tmp_path / "out.json", limit=3)
    assert judge_server.received == []


def test_a_model_the_endpoint_does_not_serve_is_named(judge_server, tmp_path):
    client = ChatClient(JudgeEndpoint.from_environment(), tmp_path / "cache")
    with pytest.raises(JudgeEndpointError, match="does not serve the model 'gpt-5'"):
        client.complete({"model": "gpt-5", "messages": []}, mt_bench.read_rating)
    assert judge_server.posts() == []


def test_corrupt_or_foreign_cache_entries_are_redone(judge_server, tmp_path):
    client = ChatClient(JudgeEndpoint.from_environment(), tmp_path / "cache")
    request = {"model": "gpt-4", "messages": [{"role": "user", "content": "SCORE=4"}]}
    key = request_key(client.endpoint.normalized_url, request)
    path = tmp_path / "cache" / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"request": {"model": "gpt-4", "messa')  # a partial write
    assert client.complete(request, mt_bench.read_rating).value == 4.0
    entry = json.loads(path.read_text())
    path.write_text(json.dumps(entry | {"request": {"model": "other"}}))
    client.complete(request, mt_bench.read_rating)
    assert len(judge_server.posts()) == 2
    assert json.loads(path.read_text())["request"] == request
    client.complete(request, mt_bench.read_rating)
    assert (client.cache_hits, len(judge_server.posts())) == (1, 2)


def test_sources_read_urls_and_reject_unknown_paths(judge_server, tmp_path):
    judge_server.files["/data/question.jsonl"] = "".join(json.dumps(q) + "\n" for q in QUESTIONS)
    records, text = read_records(judge_server.base_url.removesuffix("/v1") + "/data/question.jsonl")
    assert [r["question_id"] for r in records] == [81, 111, 131] and len(text.sha256) == 64
    with pytest.raises(ValueError, match="is not a file"):
        read_records(str(tmp_path / "absent.jsonl"))
    with pytest.raises(ValueError, match="expected hf://datasets/<owner>/<name>"):
        read_records("hf://datasets/only-owner")


# --- AlpacaEval 2.0 ----------------------------------------------------------------------------------------------

INSTRUCTIONS = [f"Describe the colour number {i} briefly." for i in range(8)]


def alpacaeval_files(tmp_path: Path, identical: tuple[int, ...] = ()) -> tuple[Path, Path, Path, list[float]]:
    """Instructions with reference outputs, our outputs (GOOD or BAD, of varying lengths, the GOOD ones longer so
    that the judge seems to like length; the reference's own at the positions `identical`), df_gamed.csv data, and
    the preference each of our outputs gets (0.5 for a tie)."""
    reference = [
        {"instruction": text, "output": "REF " + "r" * (40 + 7 * i), "generator": "gpt4_turbo"}
        for i, text in enumerate(INSTRUCTIONS)
    ]
    instructions = tmp_path / "alpaca_eval_gpt4_baseline.json"
    instructions.write_text(json.dumps(reference))
    ours = [("GOOD " if i % 3 else "BAD ") + "o" * ((90 if i % 3 else 20) + 13 * i) for i in range(len(INSTRUCTIONS))]
    for i in identical:
        ours[i] = reference[i]["output"]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps({"outputs": [{"instruction": t, "output": o} for t, o in zip(INSTRUCTIONS, ours, strict=True)]})
    )
    rows = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model, sign in (("gamed_verbose", -1), ("gamed_concise", 1)):
        rows += [
            f"{model},{i},{0.5 - 0.3 * sign * (i % 2)},{sign * (0.5 + i / 10)},{(i - 4) / 4},False" for i in range(8)
        ]
    gamed = tmp_path / "df_gamed.csv"
    gamed.write_text("\n".join(rows) + "\n")
    preferences = [0.9 if o.startswith("GOOD") else 0.2 for o in ours]
    return instructions, outputs, gamed, [0.5 if i in identical else p for i, p in enumerate(preferences)]


def test_alpacaeval_judges_pairwise_in_a_seeded_order_and_scores_lc(judge_server, tmp_path):
    instructions, outputs, gamed, expected = alpacaeval_files(tmp_path)
    out, cache = tmp_path / "alpacaeval.json", tmp_path / "cache"
    command = ["judge", "alpacaeval", "--instructions", str(instructions), "--answers", str(outputs)]
    command += ["--cache", str(cache), "--out", str(out), "--gamed-annotations", str(gamed), "--limit", "8"]
    main(command)

    result = json.loads(out.read_text())
    switched = [j["switched"] for j in result["judgments"]]
    assert any(switched) and not all(switched)  # both orders occur, so the position correction is tested
    assert switched == [alpacaeval.is_switched(text) for text in INSTRUCTIONS]
    assert [j["preference"] for j in result["judgments"]] == pytest.approx(expected)
    # each judgment keeps the judge's reply it was read from: the answered token and its top log-probabilities
    first = result["judgments"][0]
    assert first["reply"]["content"] in ("m", "M") and {e["token"] for e in first["reply"]["top_logprobs"]} >= {"m"}
    raw = result["metrics"]["alpacaeval2_raw"]
    assert raw["value"] == pytest.approx(100 * sum(expected) / len(expected)) and raw["n"] == 8
    assert raw["stderr"] == pytest.approx(12.808688457449493, rel=1e-9)  # alpaca_eval 0.6.6's get_winrate
    # alpaca_eval 0.6.6's get_length_controlled_winrate on these outputs, preferences and df_gamed.csv
    lc = result["metrics"]["alpacaeval2_lc"]
    assert lc == {
        "value": pytest.approx(33.963741074509315, rel=1e-6),
        "stderr": pytest.approx(2.001929191900777, rel=1e-6),
        "n": 8,
    }
    weights = result["provenance"]["glm_weights"]
    assert set(weights) == {"np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)"}
    assert weights["np.tanh(std_delta_len)"] < -1  # the length bias the GLM takes out
    assert result["provenance"]["preferences_from_logprobs"] == 8
    posts = judge_server.posts()
    assert all(p["model"] == "gpt-4-1106-preview" and p["logprobs"] and p["max_tokens"] == 1 for p in posts)
    prompts = [p["messages"][1]["content"] for p in posts]
    assert sum(f'"instruction": """{INSTRUCTIONS[0]}"""' in prompt for prompt in prompts) == 1
    assert all('"model_identifier": "m"' in prompt and '"model_identifier": "M"' in prompt for prompt in prompts)

    first_bytes, requests_so_far = out.read_bytes(), len(judge_server.received)
    main(command)
    assert len(judge_server.received) == requests_so_far and out.read_bytes() == first_bytes


def test_an_output_identical_to_the_reference_is_a_tie_the_judge_never_sees(judge_server, tmp_path):
    """alpaca_eval's PairwiseAnnotatorLocal._preprocess: output_1 == output_2 is preference 1.5 (0.5 here), never
    annotated, and counted in both win rates."""
    instructions, outputs, gamed, expected = alpacaeval_files(tmp_path, identical=(0,))
    out, cache = tmp_path / "alpacaeval.json", tmp_path / "cache"
    alpacaeval.judge_file(str(instructions), outputs, cache, out, gamed_source=str(gamed), limit=8)

    posts = judge_server.posts()
    assert len(posts) == 7 and not any(INSTRUCTIONS[0] in p["messages"][1]["content"] for p in posts)
    assert len(list(cache.rglob("*.json"))) == 7  # nothing cached for the tie
    result = json.loads(out.read_text())
    tie = result["judgments"][0]
    assert (tie["preference"], tie["read_from"], tie["switched"]) == (0.5, "identical", None)
    assert tie["output_length"] == tie["reference_length"] and 0 < tie["glm_preference"] < 1
    assert [j["preference"] for j in result["judgments"]] == pytest.approx(expected)
    raw = result["metrics"]["alpacaeval2_raw"]
    assert raw == {"value": pytest.approx(67.5), "stderr": pytest.approx(11.4564392373896, rel=1e-9), "n": 8}
    # alpaca_eval 0.6.6's get_length_controlled_winrate with output_2 == output_1 and preference 1.5 for the tie
    lc = result["metrics"]["alpacaeval2_lc"]
    assert lc == {
        "value": pytest.approx(31.987690573276595, rel=1e-6),
        "stderr": pytest.approx(3.1928175079888153, rel=1e-6),
        "n": 8,
    }
    assert result["provenance"]["ties_for_identical_outputs"] == 1
    assert result["provenance"]["preferences_from_logprobs"] == 7

    requests_so_far = len(judge_server.received)
    alpacaeval.judge_file(str(instructions), outputs, cache, out, gamed_source=str(gamed), limit=8)
    assert len(judge_server.received) == requests_so_far  # the tie needs no preflight either


def test_alpacaeval_inputs_are_checked_before_judging(judge_server, tmp_path):
    instructions, outputs, _, _ = alpacaeval_files(tmp_path)
    with pytest.raises(ValueError, match="holds 8 instructions; AlpacaEval has 805"):
        alpacaeval.judge_file(str(instructions), outputs, tmp_path / "c", tmp_path / "o.json")
    with pytest.raises(ValueError, match=r"length_controlled_v1 needs alpaca_eval's df_gamed\.csv"):
        alpacaeval.judge_file(str(instructions), outputs, tmp_path / "c", tmp_path / "o.json", limit=8)
    with pytest.raises(ValueError, match="unknown GLM 'length'"):
        alpacaeval.judge_file(
            str(instructions), outputs, tmp_path / "c", tmp_path / "o.json", limit=8, glm_name="length"
        )
    assert judge_server.received == []


def constructed_comparisons(theta: float, length_effect: float) -> list[alpacaeval.Comparison]:
    """Soft preferences drawn from the GLM itself: P(ours) = sigmoid(theta - length_effect * tanh(std_delta_len)),
    where our outputs are mostly longer than the reference's (std_delta_len < 0), so a judge that likes length
    (length_effect > 0) inflates the raw win rate."""
    comparisons, deltas = [], [(-600 + (i * 37) % 800) for i in range(200)]
    spread = math.sqrt(sum((d - sum(deltas) / len(deltas)) ** 2 for d in deltas) / (len(deltas) - 1))
    for i, delta in enumerate(deltas):
        preference = 1 / (1 + math.exp(-(theta - length_effect * math.tanh(delta / spread))))
        comparisons.append(alpacaeval.Comparison(i, False, preference, "logprobs", 1000 - delta, 1000))
    return comparisons


@pytest.mark.parametrize("theta", [0.0, 1.0])
def test_length_control_removes_a_known_length_bias(theta):
    comparisons = constructed_comparisons(theta, length_effect=2.0)
    raw = alpacaeval.raw_win_rate([c.preference for c in comparisons])["value"]
    lc, weights, _ = alpacaeval.length_controlled_win_rate(comparisons, "length_controlled_minimal")
    unbiased = 100 / (1 + math.exp(-theta))
    assert raw > unbiased + 8  # the length bias the judge adds
    assert lc["value"] == pytest.approx(unbiased, abs=1.0)
    assert weights["np.tanh(std_delta_len)"] == pytest.approx(-2.0, abs=0.1)


def noise(i: int, salt: int) -> float:
    """A fixed pseudo-random number in [-0.5, 0.5), so the fit is not exact."""
    return ((i * 7919 + salt) % 101) / 101 - 0.5


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def glm_fixture(tmp_path: Path) -> tuple[list[alpacaeval.Comparison], Path]:
    """60 judged instructions whose preference falls with our output's extra length and with the instruction's
    difficulty (two of them ties, our output being the reference's), and df_gamed.csv rows for the verbose and
    concise baselines whose preference also depends on both, so that every GLM weight is clearly non-zero."""
    n, identical = 60, (7, 31)
    difficulty = [((i * 37) % n) / 15 - 2 for i in range(n)]
    reference = [800 + (i * 53) % 400 for i in range(n)]
    ours = [r if i in identical else r + 600 - (i * 211) % 1000 for i, r in enumerate(reference)]
    delta = [r - o for r, o in zip(reference, ours, strict=True)]
    spread = statistics.stdev(delta)
    comparisons = [
        alpacaeval.Comparison(i, None, 0.5, "identical", ours[i], reference[i])
        if i in identical
        else alpacaeval.Comparison(
            i,
            False,
            sigmoid(0.4 - 0.8 * difficulty[i] - 1.5 * math.tanh(delta[i] / spread) + noise(i, 0)),
            "logprobs",
            ours[i],
            reference[i],
        )
        for i in range(n)
    ]
    rows = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model, sign in (("gamed_verbose", -1), ("gamed_concise", 1)):
        for i in range(n):
            std_delta_len = sign * (0.3 + ((i * 17) % 10) / 10)
            preference = sigmoid(-0.6 * difficulty[i] - 1.5 * math.tanh(std_delta_len) + noise(i, 50 + sign))
            rows.append(f"{model},{i},{preference!r},{std_delta_len!r},{difficulty[i]!r},False")
    gamed = tmp_path / "df_gamed.csv"
    gamed.write_text("\n".join(rows) + "\n")
    return comparisons, gamed


# alpaca_eval 0.6.6's own code on glm_fixture, run in a scratch environment (scikit-learn 1.5.2, setuptools < 81,
# hf_hub_download pointed at the fixture's df_gamed.csv; annotations with output_1/output_2 of the lengths above, the
# ties as output_2 == output_1 with preference 1.5, the others 1 + P): per GLM, get_length_controlled_winrate's
# length_controlled_winrate and lc_standard_error, and the coef_ of fit_LogisticRegressionCV on its
# _get_featurized_data; and get_winrate's win_rate and standard_error.
ALPACA_EVAL_LC = {
    "length_controlled_v1": (
        57.83974948586893,
        2.30248644702711,
        {
            "np.tanh(std_delta_len)": -1.47144110581659,
            "instruction_difficulty": -0.6837601712763668,
            "not_gamed_baseline.astype(float)": 0.3407761013298766,
        },
    ),
    "length_controlled_noreg": (
        57.85584564767222,
        2.373430395208459,
        {
            "np.tanh(std_delta_len)": -1.4733740408803926,
            "instruction_difficulty": -0.7090077462925813,
            "not_gamed_baseline.astype(float)": 0.3441470311786468,
        },
    ),
    "length_controlled_minimal": (
        57.83413899465,
        1.445387265217855e-15,
        {"np.tanh(std_delta_len)": -1.2933582721712094, "not_gamed_baseline.astype(float)": 0.3159683286405576},
    ),
}
ALPACA_EVAL_RAW = (63.10583580769633, 3.223674347033751)


@pytest.mark.parametrize("glm_name", sorted(ALPACA_EVAL_LC))
def test_length_controlled_win_rate_matches_alpaca_eval(glm_name, tmp_path):
    comparisons, gamed = glm_fixture(tmp_path)
    value, stderr, weights = ALPACA_EVAL_LC[glm_name]
    assert min(abs(w) for w in weights.values()) > 0.3  # the fixture pins every weight, not a zero fit
    lc, fitted, predicted = alpacaeval.length_controlled_win_rate(
        comparisons, glm_name, alpacaeval.read_gamed(str(gamed))
    )
    assert lc == {"value": pytest.approx(value, rel=1e-6), "stderr": pytest.approx(stderr, rel=1e-6, abs=1e-9), "n": 60}
    assert fitted == pytest.approx(weights, rel=1e-6) and list(fitted) == list(weights)
    assert sum(predicted) / len(predicted) == pytest.approx(value / 100, rel=1e-6)
    raw = alpacaeval.raw_win_rate([c.preference for c in comparisons])
    assert (raw["value"], raw["stderr"]) == pytest.approx(ALPACA_EVAL_RAW, rel=1e-9)


def test_first_shown_preference_reads_logprobs_or_the_token():
    top = [
        {"token": "M", "logprob": math.log(0.75)},
        {"token": "m", "logprob": math.log(0.25)},
        {"token": "x", "logprob": -9},
    ]
    with_logprobs = {"choices": [{"message": {"content": "M"}, "logprobs": {"content": [{"top_logprobs": top}]}}]}
    assert alpacaeval.first_shown_preference(with_logprobs) == (pytest.approx(0.25), "logprobs")
    assert alpacaeval.first_shown_preference({"choices": [{"message": {"content": " m "}}]}) == (1.0, "token")
    with pytest.raises(Unscorable, match="neither m nor M"):
        alpacaeval.first_shown_preference({"choices": [{"message": {"content": "Both"}}]})


# --- answer generation -------------------------------------------------------------------------------------------


def test_generation_settings_are_checked():
    assert parse_generation('{"do_sample": true, "top_p": 0.8, "top_k": 20}', 64) == {
        "max_new_tokens": 64,
        "do_sample": True,
        "top_p": 0.8,
        "top_k": 20,
    }
    with pytest.raises(ValueError, match=r"unknown generation settings \['beams'\]"):
        parse_generation('{"beams": 2}', 64)
    with pytest.raises(ValueError, match='add "do_sample": true'):
        parse_generation('{"temperature": 0.7}', 64)
    with pytest.raises(ValueError, match="not JSON"):
        parse_generation("{temperature: 0.7}", 64)
    with pytest.raises(ValueError, match="top_k=-1 is not valid"):
        parse_generation('{"do_sample": true, "top_k": -1}', 64)


def test_mt_bench_answers_condition_turn_two_on_the_models_own_answer(tmp_path, monkeypatch):
    _, model_dir = save_base_and_sft(tmp_path)
    questions = write_jsonl(tmp_path / "question.jsonl", QUESTIONS[:2])
    conversations = []
    original = ChatGenerator.answer

    def recording(self, batch):
        conversations.append([list(c) for c in batch])
        return original(self, batch)

    monkeypatch.setattr(ChatGenerator, "answer", recording)
    qwen_sampling = {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05}
    settings = json.dumps(qwen_sampling | {"max_new_tokens": 6})
    out = tmp_path / "answers.json"
    write_mt_bench_answers(model_dir, str(questions), settings, out, limit=2, seed=7, batch_size=2)
    written = json.loads(out.read_text())
    rows = written["answers"]
    assert [r["question_id"] for r in rows] == [81, 111]
    assert all(len(r["turns"]) == 2 and all(isinstance(a, str) for a in r["turns"]) for r in rows)
    first_turns, second_turns = conversations
    assert [c[0]["content"] for c in first_turns] == ["Write a haiku.", "What is 2+2?"]
    for row, conversation in zip(rows, second_turns, strict=True):
        assert [m["role"] for m in conversation] == ["user", "assistant", "user"]
        assert conversation[1]["content"] == row["turns"][0]
    assert written["generation"]["top_k"] == 20 and written["generation"]["max_new_tokens"] == 6

    again = tmp_path / "again.json"
    write_mt_bench_answers(model_dir, str(questions), settings, again, limit=2, seed=7, batch_size=2)
    assert json.loads(again.read_text())["answers"] == rows  # seeded
    questions_for_judge, _ = mt_bench.load_questions(str(questions), limit=2)
    assert set(mt_bench.answers_by_question(rows, questions_for_judge, "answers")) == {81, 111}


def test_alpacaeval_outputs_from_the_command_line_are_what_the_judge_reads(tmp_path):
    _, model_dir = save_base_and_sft(tmp_path)
    instructions, _, _, _ = alpacaeval_files(tmp_path)
    out = tmp_path / "outputs.json"
    settings = json.dumps({"do_sample": False, "max_new_tokens": 5})
    command = ["answers", "alpacaeval", "--model", str(model_dir), "--instructions", str(instructions)]
    main([*command, "--generation", settings, "--out", str(out), "--limit", "2", "--batch-size", "2"])
    written = json.loads(out.read_text())
    assert [row["instruction"] for row in written["outputs"]] == INSTRUCTIONS[:2]
    assert written["generation"]["do_sample"] is False and written["seed"] == 1234
    record = json.loads((tmp_path / "outputs.provenance.json").read_text())
    assert record["step"] == "answers" and record["settings"]["seed"] == 1234 and record["inputs"]["model"]["sha256"]
    items, _ = alpacaeval.read_instructions(str(instructions), limit=2)
    assert alpacaeval.outputs_by_instruction(written["outputs"], items, str(out)) == [
        row["output"] for row in written["outputs"]
    ]
