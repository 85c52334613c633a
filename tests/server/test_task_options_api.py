"""Task options over HTTP: `GET /api/tasks` describes them, `POST /api/tasks/{task}` takes
them (a live `localloom serve` with the tiny model)."""

from __future__ import annotations

import json
from typing import Any

from server_harness import MODEL, LiveServer

TEXT = ("Volcanoes on Iceland erupt often. The island sits on a ridge where two plates "
        "drift apart, so magma rises through the cracks.")


def _run(server: LiveServer, task: str, body: dict[str, Any]) -> dict[str, Any]:
    request = {"model": MODEL, "seed": 3, **body}
    with server.http() as http, http.stream("POST", f"/api/tasks/{task}", json=request) as r:
        assert r.status_code == 200, r.read()
        raw = r.read().decode()
    events = []
    for block in raw.strip().split("\n\n"):
        lines = block.splitlines()
        kind = next(ln[6:].strip() for ln in lines if ln.startswith("event:"))
        events.append((kind, json.loads("".join(ln[5:].strip() for ln in lines
                                                if ln.startswith("data:")))))
    assert events[-1][0] == "done", events
    done: dict[str, Any] = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "delta").strip() == done["text"]
    return done


def test_the_task_list_describes_each_option_for_a_ui(server: LiveServer) -> None:
    with server.http() as http:
        tasks = {t["name"]: t for t in http.get("/api/tasks").json()["tasks"]}
    assert {"write", "proofread"} <= set(tasks)
    summarize = {o["name"]: o for o in tasks["summarize"]["options"]}
    assert summarize["type"]["choices"] == ["key-points", "tldr", "teaser", "headline"]
    assert summarize["type"]["default"] == "tldr" and summarize["type"]["kind"] == "choice"
    assert summarize["length"]["choices"] == ["short", "medium", "long"]
    assert summarize["format"]["choices"] == ["markdown", "plain-text"]
    rewrite = {o["name"]: o for o in tasks["rewrite"]["options"]}
    assert rewrite["tone"]["choices"] == ["more-formal", "as-is", "more-casual"]
    [count] = tasks["question"]["options"]
    assert (count["kind"], count["minimum"], count["maximum"], count["default"]) == (
        "count", 1, 5, 1)
    [source] = tasks["translate"]["options"]
    assert (source["name"], source["kind"], source["default"]) == ("from", "language", "auto")
    assert tasks["proofread"]["options"] == []


def test_options_and_context_shape_the_answer_and_come_back(server: LiveServer) -> None:
    done = _run(server, "summarize", {"text": TEXT, "context": "For schoolchildren.",
                                      "options": {"type": "key-points", "length": "short",
                                                  "format": "plain-text"}})
    assert done["options"] == {"type": "key-points", "length": "short", "format": "plain-text"}
    lines = done["text"].splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("• ") for line in lines)
    headline = _run(server, "summarize", {"text": TEXT, "options": {"type": "headline"}})
    assert "\n" not in headline["text"] and len(headline["text"].split()) <= 12


def test_proofread_returns_corrections_with_positions(server: LiveServer) -> None:
    original = "Teh volcano erupt often."
    done = _run(server, "proofread", {"text": original})
    assert isinstance(done["corrections"], list)
    rebuilt, at = [], 0
    for fix in done["corrections"]:
        assert original[fix["start"]:fix["end"]] == fix["original"]
        rebuilt += [original[at:fix["start"]], fix["correction"]]
        at = fix["end"]
    assert "".join([*rebuilt, original[at:]]) == done["text"]


def test_a_bad_option_is_a_400_that_names_the_allowed_values(server: LiveServer) -> None:
    with server.http() as http:
        bad = http.post("/api/tasks/summarize",
                        json={"text": TEXT, "model": MODEL, "options": {"length": "huge"}})
        unknown = http.post("/api/tasks/question",
                            json={"text": TEXT, "model": MODEL, "options": {"tone": "x"}})
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert "short, medium, long" in error["message"] and error["param"] == "length"
    assert unknown.status_code == 400 and "Its options: count" in unknown.json()["error"][
        "message"]
