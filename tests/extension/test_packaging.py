"""`localloom extension path|pack`: the folder to load unpacked, and the zip for the stores."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from localloom.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]


def test_extension_path_prints_the_folder_chrome_loads_unpacked() -> None:
    result = CliRunner().invoke(cli_app, ["extension", "path"])
    assert result.exit_code == 0, result.output
    folder = Path(result.output.strip())
    assert folder == ROOT / "extension"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3


def test_extension_pack_writes_a_store_zip_without_the_development_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["extension", "pack", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path.parent == tmp_path and path.name == "localloom-extension-0.1.0.zip"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert "key" not in manifest  # the stores assign the id
    assert {"background.js", "content.js", "popup.html", "sidepanel.html", "lib/server.js",
            "icons/icon128.png"} <= names
    assert not any(n.startswith("tools/") for n in names)


def test_the_manifest_asks_only_for_the_local_server_and_runs_no_remote_code() -> None:
    manifest = json.loads((ROOT / "extension" / "manifest.json").read_text())
    assert manifest["host_permissions"] == ["http://127.0.0.1:8765/*"]
    assert "<all_urls>" not in json.dumps(manifest)
    assert "content_scripts" not in manifest  # injected on demand or on allowed pages
    assert "externally_connectable" not in manifest  # no web page can message it
    assert {"activeTab", "scripting"} <= set(manifest["permissions"])
    csp = manifest["content_security_policy"]["extension_pages"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    for path in (ROOT / "extension").rglob("*.js"):
        code = path.read_text()
        markup = r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|\beval\("
        assert not re.search(markup, code), path
        assert not re.search(r"import\s.*https?://|importScripts\(", code), path
