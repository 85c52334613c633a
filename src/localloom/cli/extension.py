"""`localloom pair`, `localloom tokens list|revoke`, `localloom extension path|pack`.

The browser extension (``extension/`` in the repository, ``localloom/extension`` in a
wheel) talks to `localloom serve` with a scoped token that `pair` issues for one extension
origin; see :mod:`localloom.server.pairing`.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import typer

from localloom.cli._errors import cli_errors
from localloom.config import Settings
from localloom.errors import ConfigError
from localloom.server.pairing import PairingStore

__all__ = ["extension_dir", "pack_extension", "register"]

# Files a store package never carries (editor and OS droppings, the icon generator).
_SKIP_NAMES = frozenset({".DS_Store", "Thumbs.db"})
_SKIP_DIRS = ("tools/",)


def extension_dir() -> Path:
    """The unpacked extension: inside the installed package, else the repository's folder."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "extension", package.parents[1] / "extension"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise ConfigError(
        "The browser extension's folder is missing from this installation. Reinstall "
        "LocalLoom, or use the extension/ folder of a LocalLoom source checkout.")


def pack_extension(output: Path) -> Path:
    """Zip the extension for the Chrome Web Store / addons.mozilla.org; returns the zip path.

    The manifest's development ``key`` is left out: the stores assign their own id.
    """
    source = extension_dir()
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("key", None)
    if output.is_dir():
        output = output / f"localloom-extension-{manifest.get('version', '0')}.zip"
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source).as_posix()
            if (not path.is_file() or rel == "manifest.json" or path.name in _SKIP_NAMES
                    or rel.startswith(_SKIP_DIRS)):
                continue
            archive.write(path, rel)
    return output


def _store() -> PairingStore:
    return PairingStore(Settings().config_dir)


def pair(
    origin: str = typer.Argument(..., help="The origin the extension's popup shows, e.g. "
                                           "chrome-extension://<id> or moz-extension://<uuid>."),
    allow_pull: bool = typer.Option(False, "--allow-pull",
                                    help="Also let the extension download models."),
) -> None:
    """Pair a browser extension: print a scoped token to paste into it.

    The token can run tasks, list and load models and use the history; it works only from
    that extension's origin. `localloom tokens revoke` withdraws it.
    """
    with cli_errors():
        pairing, token = _store().pair(origin, allow_pull=allow_pull)
    typer.echo(f"Paired {pairing.origin} (id {pairing.id}; may: {', '.join(pairing.scopes)}).")
    typer.echo("Paste this token into the LocalLoom extension's popup (it is shown only once):")
    typer.echo(token)


def tokens_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable.")) -> None:
    """List the paired extensions (their tokens are never shown again)."""
    with cli_errors():
        pairings = _store().list()
    if as_json:
        typer.echo(json.dumps([p.public() for p in pairings], indent=2))
        return
    if not pairings:
        typer.echo("No paired extensions. `localloom pair <origin>` pairs one.")
        return
    for p in pairings:
        typer.echo(f"{p.id}  {p.origin}  {','.join(p.scopes)}  paired {p.created_at}")


def tokens_revoke(key: str = typer.Argument(..., help="A pairing's id or origin.")) -> None:
    """Revoke a paired extension's token; the server refuses it (403) from the next request."""
    with cli_errors():
        gone = _store().revoke(key)
    if not gone:
        typer.echo(f"No pairing has the id or origin '{key}'. `localloom tokens list` shows "
                   "them.", err=True)
        raise typer.Exit(1)
    for p in gone:
        typer.echo(f"Revoked {p.id} ({p.origin}).")


def extension_path() -> None:
    """Print the extension's folder, for chrome://extensions > Load unpacked."""
    with cli_errors():
        typer.echo(str(extension_dir()))


def extension_pack(
    output: Path = typer.Option(Path("."), "--output", "-o",
                                help="A .zip path or a folder (default: here)."),
) -> None:
    """Write the extension as a zip for the browser stores."""
    with cli_errors():
        typer.echo(str(pack_extension(output)))


def register(app: typer.Typer) -> None:
    """Add `pair`, `tokens` and `extension` to the root app."""
    app.command("pair")(pair)
    tokens = typer.Typer(help="Paired browser extensions' tokens: list, revoke.",
                         no_args_is_help=True)
    tokens.command("list")(tokens_list)
    tokens.command("revoke")(tokens_revoke)
    app.add_typer(tokens, name="tokens")
    ext = typer.Typer(help="The LocalLoom browser extension: path, pack.", no_args_is_help=True)
    ext.command("path")(extension_path)
    ext.command("pack")(extension_pack)
    app.add_typer(ext, name="extension")
