"""docs/RELIABILITY.md's section for issue 11: requests that crashed or froze the server."""

from __future__ import annotations

from reliability_figures import Row, Section

R_REPEAT = "Huge repetition bounds, however spelled (`{0,30_000}`, `{0,+30000}`, `{,30000}`)"
R_FIELDS = "A schema of thousands of bounded fields"
R_ENUM = "A grammar too slow to sample beside other streams (an enum of 1,000 strings)"
R_FUZZ = "Random response_format schemas, stop lists and logit_bias maps"
R_TOKENS = "A prompt llama.cpp's tokenizer is quadratic on (`\"a\\n\" * N`)"
R_MESSAGES = "400,000 one-character messages (13 MB)"
R_COOKIE = "A process on another local port collecting the sign-in credential"
R_FILES = "Saved history readable by other local users"
R_DROP = "A client leaving a long map-reduce task"
R_SIGTERM = "SIGTERM during a long task"
R_BODY = "Slow request bodies filling the in-flight places"
R_HEADERS = "Slowloris headers and idle sockets"
R_LOGS = "Log amplification by a request"
R_SMALL = "Smaller items (503 text, disk full, search totals, short delete prefixes, " \
          "malformed request lines, a flipped byte in a cached model)"

REQUESTS = Section(
    "requests", "## Requests that crashed or froze the server",
    "Issue 11: an adversarial pass with probes written afresh. Each row's test sends the "
    "attack to a live `localloom serve` while a thread asks `/health` every 50 ms: the server "
    "must refuse or survive the request, answer `/health` within 1 s throughout and stay "
    "alive. The tests rewrite this table when they run.",
    (
        Row(R_REPEAT, "the converter's GBNF output is bounded (512 KiB, 1,200 nested groups, "
            "GBNF repetitions up to 1,000) whatever the schema's text says; each new grammar "
            "is compiled first in a child process that holds only the vocabulary",
            "`tests/adversarial/test_request_attacks.py::"
            "test_huge_repetitions_however_spelled_are_refused_and_the_server_lives`"),
        Row(R_FIELDS, "the schema's length and count bounds may add up to 20,000",
            "`test_a_schema_of_thousands_of_bounded_fields_is_refused_at_once`"),
        Row(R_ENUM, "the child times one full-vocabulary constraint; over 0.5 s is a 400; "
            "in the engine the sampler chain picks first and the grammar checks only that "
            "token (filtering the vocabulary only when it is refused), as llama.cpp's server "
            "does", "`tests/engine/test_grammar_guard.py`"),
        Row(R_FUZZ, "all of the above", "`test_fuzzed_schemas_stop_lists_and_logit_bias_get_200_"
            "or_400` (hypothesis, 60 examples, derandomized)"),
        Row(R_TOKENS, "a prompt longer than n_ctx times the vocabulary's longest token is "
            "refused by its length; a long one is counted in linear-time 4 KB chunks first; "
            "parsing, templates and tokenizing run in a worker thread",
            "`test_a_prompt_the_tokenizer_is_quadratic_on_is_refused_quickly`"),
        Row(R_MESSAGES, "at most 10,000 messages (checked before validation, which holds the "
            "interpreter lock); more messages than n_ctx are refused by count; FastAPI no "
            "longer validates OpenAI bodies on the event loop",
            "`test_400_000_one_character_messages_are_refused_without_freezing`"),
        Row(R_COOKIE, "no cookie is a credential; the UI's token comes in the sign-in URL's "
            "fragment and lives in the tab's sessionStorage", "`tests/server/test_web_ui.py::"
            "test_another_local_port_receives_no_credential_the_api_accepts`"),
        Row(R_FILES, "config, cache and data folders 0700, the database 0600 (its -wal too)",
            "`tests/history/test_history_store.py::"
            "test_data_folders_and_the_database_are_private_to_the_user`"),
        Row(R_DROP, "one Cancellation per task aborts every engine stream in flight",
            "`tests/adversarial/test_task_cancel.py::"
            "test_a_client_leaving_a_map_reduce_frees_every_slot_at_once`"),
        Row(R_SIGTERM, "the drain's cancellation reaches the task's calls before the worker "
            "is joined", "`test_sigterm_during_a_task_ends_its_stream_with_the_shutdown_event`"),
        Row(R_BODY, "bodies are read (30 s, pauses under 10 s) before a request counts as in "
            "flight; slower ones get 408 and are closed",
            "`test_slow_bodies_do_not_take_the_in_flight_places_and_are_cut_off`"),
        Row(R_HEADERS, "connections that do not finish their headers within 15 s are closed",
            "`test_slowloris_headers_are_closed_after_the_header_timeout`"),
        Row(R_LOGS, "every log line, argument and traceback cut to a few KB; failing grammars "
            "are compiled in the child, whose output is discarded",
            "`test_log_lines_from_a_request_are_cut_short`"),
        Row(R_SMALL, "503 names the queue's fill; `DatabaseFullError` is 507 "
            "`insufficient_storage`; search totals count matches; DELETE needs the full id or "
            "8 characters; uvicorn's plain-text 400 is OpenAI's JSON; each load checks a "
            "sampled digest", "`test_requests_that_do_not_parse_get_openai_json_errors`, "
            "`tests/history/test_history_store.py`, `tests/store/test_store_cache.py::"
            "test_a_flipped_byte_is_found_when_the_model_is_next_used_not_only_by_verify`"),
    ),
)
