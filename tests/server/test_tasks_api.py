"""`/api/tasks` and `/api/history` on a real `localloom serve` with the tiny model."""

from __future__ import annotations

import json
import time
from typing import Any

import psutil
from server_harness import MODEL, LiveServer

TEXT = ("Volcanoes on Iceland erupt often. The island sits on a ridge where two plates "
        "drift apart, so magma rises through the cracks.")


def _events(raw: str) -> list[tuple[str, Any]]:
    out = []
    for block in raw.strip().split("\n\n"):
        lines = block.splitlines()
        event = next((ln[6:].strip() for ln in lines if ln.startswith("event:")), "message")
        data = "\n".join(ln[5:].strip() for ln in lines if ln.startswith("data:"))
        out.append((event, json.loads(data)))
    return out


def _summarize(server: LiveServer, **extra: Any) -> list[tuple[str, Any]]:
    body = {"text": TEXT, "model": MODEL, "save": True, "max_tokens": 24, "seed": 7, **extra}
    with server.http() as http, http.stream("POST", "/api/tasks/summarize", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return _events(r.read().decode())


def test_task_list_names_the_builtin_tasks(server: LiveServer) -> None:
    with server.http() as http:
        names = [t["name"] for t in http.get("/api/tasks").json()["tasks"]]
    assert {"summarize", "rewrite", "counter", "question", "translate"} <= set(names)


def test_summarize_streams_saves_and_the_history_finds_exports_and_deletes_it(
        server: LiveServer) -> None:
    events = _summarize(server)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done", events
    done = events[-1][1]
    deltas = "".join(data["text"] for kind, data in events if kind == "delta")
    assert deltas.strip() and deltas.strip() == done["text"]
    assert done["task"] == "summarize" and done["model"] == MODEL
    assert done["usage"]["prompt_tokens"] > 0
    saved_id = done["saved_id"]
    assert saved_id

    with server.http() as http:
        listed = http.get("/api/history").json()
        assert saved_id in [r["id"] for r in listed["results"]]
        found = http.get("/api/history", params={"q": "volcanoes"}).json()["results"]
        assert [r["id"] for r in found] == [saved_id]
        assert http.get("/api/history", params={"q": "zebra"}).json()["results"] == []
        record = http.get(f"/api/history/{saved_id}").json()
        assert record["original"] == TEXT and record["result"] == done["text"]

        exported = http.get("/api/history/export", params={"format": "json"})
        assert exported.status_code == 200 and saved_id in exported.text
        assert "attachment" in exported.headers["content-disposition"]
        csv = http.get("/api/history/export", params={"format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv") and saved_id in csv.text
        markdown = http.get("/api/history/export", params={"format": "md"})
        assert "Volcanoes" in markdown.text

        assert http.delete(f"/api/history/{saved_id}").json() == {"id": saved_id,
                                                                  "deleted": True}
        assert http.get(f"/api/history/{saved_id}").status_code == 404
        assert http.delete(f"/api/history/{saved_id}").status_code == 404
        assert saved_id not in http.get("/api/history/export").text


def test_a_task_run_without_save_is_not_in_the_history(server: LiveServer) -> None:
    done = _summarize(server, save=False)[-1][1]
    assert done["saved_id"] is None
    with server.http() as http:
        assert http.get("/api/history", params={"q": "volcanoes"}).json()["results"] == []


def test_an_unknown_task_is_a_404_with_an_openai_error(server: LiveServer) -> None:
    with server.http() as http:
        r = http.post("/api/tasks/juggle", json={"text": TEXT})
    assert r.status_code == 404
    error = r.json()["error"]
    assert "juggle" in error["message"] and "summarize" in error["message"]


def test_translate_without_a_target_language_says_how_to_give_one(server: LiveServer) -> None:
    with server.http() as http:
        r = http.post("/api/tasks/translate", json={"text": TEXT, "model": MODEL})
    assert r.status_code == 400
    assert '"to"' in r.json()["error"]["message"]


def test_an_unknown_export_format_is_a_400(server: LiveServer) -> None:
    with server.http() as http:
        r = http.get("/api/history/export", params={"format": "xml"})
    assert r.status_code == 400 and "csv" in r.json()["error"]["message"]


def test_a_history_offset_beyond_64_bits_is_a_400_not_a_500(server: LiveServer) -> None:
    """Found by schemathesis: SQLite raised OverflowError for OFFSET 18757941792554561536."""
    with server.http() as http:
        huge = http.get("/api/history", params={"offset": "18757941792554561536"})
        edge = http.get("/api/history", params={"offset": str(2**63 - 1)})
    assert huge.status_code == 400
    assert edge.status_code == 200 and edge.json()["results"] == []


def test_tasks_and_history_need_the_token(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        assert http.post("/api/tasks/summarize", json={"text": TEXT}).status_code == 401
        assert http.get("/api/history").status_code == 401
        assert http.get("/api/history/export").status_code == 401


def _running(server: LiveServer) -> int:
    with server.http() as http:
        runtime = http.get("/api/status").json()["runtime"]
    return int(runtime.get(MODEL, {}).get("requests_running", 0))


def test_a_client_that_leaves_mid_task_stops_it_and_frees_the_slot(server: LiveServer) -> None:
    body = {"text": TEXT, "model": MODEL, "save": True, "max_tokens": 1000, "seed": 7}
    with server.http() as http, http.stream("POST", "/api/tasks/rewrite", json=body) as r:
        seen = ""
        for chunk in r.iter_text():
            seen += chunk
            if seen.count("event: delta") >= 3:
                break
        assert "event: delta" in seen
    left = time.monotonic()
    while _running(server) and time.monotonic() - left < 2.0:
        time.sleep(0.05)
    assert _running(server) == 0
    with server.http() as http:  # the server goes on serving
        assert http.get("/api/history").status_code == 200


def test_a_task_whose_answer_cannot_fit_the_context_is_a_400(server: LiveServer) -> None:
    body = {"text": TEXT, "model": MODEL, "max_tokens": 2040}
    with server.http() as http:
        r = http.post("/api/tasks/summarize", json=body)
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]


def _map_reduce_threads(server: LiveServer, process: psutil.Process) -> list[int]:
    """The server's thread count at each progress event of a long summarize (map calls
    are pending or running at each)."""
    body = {"text": " ".join([TEXT] * 150), "model": MODEL, "max_tokens": 24, "seed": 7}
    counts = []
    with server.http() as http, http.stream("POST", "/api/tasks/summarize", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line == "event: progress":
                counts.append(process.num_threads())
    return counts


def test_a_streamed_task_runs_on_the_loop_without_a_thread_of_its_own(
        server: LiveServer) -> None:
    # Before, each task ran in a thread of its own and its map calls in a pool of their own
    # (4 threads idle, 13 at the first progress event). Now a task adds none: only the
    # loop's shared worker pool grows, once, to its bound; warm it up first.
    process = psutil.Process(server.process.pid)
    for _ in range(8):
        idle = process.num_threads()
        if max(_map_reduce_threads(server, process)) <= idle == process.num_threads():
            break
    idle = process.num_threads()
    counts = _map_reduce_threads(server, process)
    assert len(counts) >= 3 and max(counts) <= idle, (idle, counts)
