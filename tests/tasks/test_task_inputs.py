"""Task input: web pages over real HTTP, files and streams."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from localloom.errors import TaskError
from localloom.tasks import fetch_url, read_file, read_stream


def test_web_page_gives_its_article_text_without_menus_or_footer(web: str) -> None:
    doc = fetch_url(f"{web}/article.html")
    assert doc.source == f"{web}/article.html"
    assert "grey heron stands motionless" in doc.text
    assert "nests every spring" in doc.text
    assert "Log in" not in doc.text and "Cookie settings" not in doc.text


def test_page_in_a_declared_charset_is_decoded_correctly(web: str) -> None:
    assert "garza real, la canción" in fetch_url(f"{web}/latin1.html").text


def test_plain_text_page_is_used_as_is(web: str) -> None:
    text = fetch_url(f"{web}/notes.txt").text
    assert text == "Plain notes about herons.\n\nThey nest in colonies."


def test_redirects_are_followed(web: str) -> None:
    assert "grey heron" in fetch_url(f"{web}/moved").text


@pytest.mark.parametrize(("path", "what"), [("/photo.png", "image/png"),
                                            ("/paper.pdf", "a PDF document")])
def test_non_text_pages_are_refused_with_the_type_and_what_to_do(web: str, path: str,
                                                                 what: str) -> None:
    with pytest.raises(TaskError) as info:
        fetch_url(web + path)
    assert what in str(info.value)
    assert "--file" in str(info.value)


def test_page_announcing_more_than_the_size_limit_is_refused(web: str) -> None:
    with pytest.raises(TaskError, match="50,000,000 bytes; the limit is 1,000,000"):
        fetch_url(f"{web}/declared-huge.html", max_bytes=1_000_000)


def test_page_streaming_past_the_size_limit_is_cut_off_with_an_error(web: str) -> None:
    with pytest.raises(TaskError, match="more than 100,000 bytes"):
        fetch_url(f"{web}/endless.txt", max_bytes=100_000)


def test_slow_server_times_out_with_a_clear_message(web: str) -> None:
    with pytest.raises(TaskError, match=r"did not answer within 0\.5 s"):
        fetch_url(f"{web}/slow.html", timeout=0.5)


def test_missing_page_reports_the_http_status(web: str) -> None:
    with pytest.raises(TaskError, match="HTTP 404"):
        fetch_url(f"{web}/nope")


def test_page_without_main_text_says_so(web: str) -> None:
    with pytest.raises(TaskError, match="no main text"):
        fetch_url(f"{web}/empty.html")


def test_unreachable_server_is_a_task_error() -> None:
    with pytest.raises(TaskError, match="Could not fetch"):
        fetch_url("http://127.0.0.1:9/article", timeout=2)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "example.org"])
def test_only_http_addresses_are_fetched(url: str) -> None:
    with pytest.raises(TaskError, match="not an http"):
        fetch_url(url)


def test_text_file_is_read_and_its_path_kept_as_source(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Notas\n\nLa garza espera.", encoding="utf-8")
    doc = read_file(path)
    assert doc.text == "# Notas\n\nLa garza espera."
    assert doc.source == str(path)


def test_html_file_is_reduced_to_its_main_text(tmp_path: Path, article_html: str) -> None:
    path = tmp_path / "saved.html"
    path.write_text(article_html, encoding="utf-8")
    text = read_file(path).text
    assert "grey heron" in text and "Log in" not in text


def test_binary_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01")
    with pytest.raises(TaskError, match="binary"):
        read_file(binary)
    with pytest.raises(TaskError, match="no file"):
        read_file(tmp_path / "missing.txt")


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 1000)
    with pytest.raises(TaskError, match="the limit is 100"):
        read_file(path, max_bytes=100)


def test_stdin_text_is_read_with_a_limit() -> None:
    assert read_stream(io.StringIO("hola mundo")).text == "hola mundo"
    with pytest.raises(TaskError, match="longer than 5"):
        read_stream(io.StringIO("abcdefgh"), max_bytes=5)
