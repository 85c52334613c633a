"""Hub references (``hf.co/ORG/REPO[:QUANT]``, as llama-server's ``-hf`` and Ollama take them):
parse one, list the repo's GGUF files, and pick the requested or a sensible 4-bit file.

Example::

    ref = parse_hub_reference("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")
    files = list_gguf_files(ref, endpoint=hub_endpoint(), timeout=30)
    print(pick_gguf(ref, files).path)      # qwen2.5-0.5b-instruct-q4_k_m.gguf
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from huggingface_hub import get_token
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from localloom.errors import DownloadError, HubAuthError, InvalidRequestError, UnsafePathError
from localloom.store._paths import check_file, check_repo

__all__ = [
    "HubGGUF",
    "HubReference",
    "is_hub_reference",
    "list_gguf_files",
    "parse_hub_reference",
    "pick_gguf",
    "quant_of",
]

_PREFIXES = ("https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/")
_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q[1-8](?:_[A-Z0-9]{1,2}){0,2}|BF16|F16|F32|MXFP4)"
                    r"(?![A-Za-z0-9])", re.IGNORECASE)
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)
# "A sensible 4-bit": the quantizations llama.cpp's own docs and Ollama default to, best first.
_DEFAULT_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_0", "IQ4_XS", "IQ4_NL", "Q4_1")
_EXAMPLE = "hf.co/ORG/REPO or hf.co/ORG/REPO:Q4_K_M"


@dataclass(frozen=True)
class HubReference:
    """``hf.co/ORG/REPO[:QUANT]``: a repo of GGUF files and, optionally, the quantization."""

    repo: str
    quant: str | None = None
    revision: str = "main"

    def text(self, quant: str | None = None) -> str:
        """The reference as users write it, with ``quant`` (or the requested one)."""
        chosen = quant or self.quant
        return f"hf.co/{self.repo}" + (f":{chosen}" if chosen else "")


@dataclass(frozen=True)
class HubGGUF:
    """One GGUF file of a repo: its path, size and (for LFS files) sha256."""

    path: str
    size: int
    sha256: str | None = None

    @property
    def quant(self) -> str | None:
        """The quantization named in the file name (``Q4_K_M``), upper-cased."""
        return quant_of(self.path)


def is_hub_reference(text: str) -> bool:
    """True for ``hf.co/...``, ``huggingface.co/...`` and their https URLs."""
    return text.lower().startswith(_PREFIXES)


def quant_of(file_name: str) -> str | None:
    """The last quantization tag in a GGUF file name, upper-cased (None if it names none)."""
    found = _QUANT.findall(file_name.rsplit("/", 1)[-1])
    return found[-1].upper() if found else None


def parse_hub_reference(text: str) -> HubReference:
    """Parse ``hf.co/ORG/REPO[:QUANT]``; raises InvalidRequestError saying the right shape."""
    lowered = text.lower()
    prefix = next((p for p in _PREFIXES if lowered.startswith(p)), None)
    if prefix is None:
        raise InvalidRequestError(f"'{text}' is not a Hub reference. Write {_EXAMPLE}.")
    rest = text[len(prefix):].strip("/")
    repo, _, quant = rest.partition(":")
    try:
        check_repo(repo)
    except UnsafePathError:
        raise InvalidRequestError(
            f"'{text}' does not name a Hub repo as ORG/REPO. Write {_EXAMPLE}.") from None
    if repo.count("/") != 1:
        raise InvalidRequestError(f"'{text}' needs both the owner and the repo: {_EXAMPLE}.")
    if quant and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,40}", quant):
        raise InvalidRequestError(
            f"'{quant}' is not a quantization name. Write {_EXAMPLE} (Q8_0, IQ4_XS, ...).")
    return HubReference(repo=repo, quant=quant.upper() or None)


def _tree_error(ref: HubReference, status: int) -> DownloadError:
    if status in (401, 403, 404):
        token = "HF_TOKEN is set but was refused" if get_token() else "no HF_TOKEN is set"
        return HubAuthError(
            f"The Hub has no repo {ref.repo} that this machine may read (HTTP {status}; "
            f"{token}). Check the name at https://huggingface.co/{ref.repo}; if the repo is "
            "gated, accept its terms there, set HF_TOKEN to a read token and run "
            f"`localloom pull {ref.text()}` again.")
    return DownloadError(f"The Hub answered HTTP {status} when listing {ref.repo}. Try "
                         f"`localloom pull {ref.text()}` again later.")


def list_gguf_files(ref: HubReference, *, endpoint: str, timeout: float) -> list[HubGGUF]:
    """The repo's ``.gguf`` files (the Hub's tree API, following its pagination)."""
    url: str | None = f"{endpoint}/api/models/{ref.repo}/tree/{ref.revision}?recursive=true"
    files: list[HubGGUF] = []
    headers = build_hf_headers()
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client:
            while url is not None:
                response = client.get(url)
                if response.status_code != 200:
                    raise _tree_error(ref, response.status_code)
                files.extend(_gguf_items(response.json()))
                url = response.links.get("next", {}).get("url")
    except (httpx.HTTPError, ValueError) as exc:
        raise DownloadError(
            f"Could not list the files of {ref.repo} at {endpoint} ({exc}). Check the network "
            f"(or HF_ENDPOINT) and run `localloom pull {ref.text()}` again.") from exc
    return files


def _gguf_items(payload: object) -> list[HubGGUF]:
    out = []
    for item in payload if isinstance(payload, list) else []:
        path = item.get("path") if isinstance(item, dict) else None
        if item.get("type", "file") != "file" or not isinstance(path, str) \
                or not path.lower().endswith(".gguf"):
            continue
        try:
            check_file(path)
        except UnsafePathError:
            continue  # a name the store would refuse is no candidate
        lfs = item.get("lfs") if isinstance(item.get("lfs"), dict) else {}
        sha = lfs.get("oid") if isinstance(lfs.get("oid"), str) else None
        size = lfs.get("size", item.get("size", 0))
        out.append(HubGGUF(path=path, size=int(size or 0),
                           sha256=sha if sha and re.fullmatch(r"[0-9a-f]{64}", sha) else None))
    return out


def _usable(files: list[HubGGUF]) -> list[HubGGUF]:
    # Vision projectors and imatrix data are GGUF files too, but not language models.
    return [f for f in files if not re.search(r"mmproj|imatrix", f.path, re.IGNORECASE)]


def pick_gguf(ref: HubReference, files: list[HubGGUF]) -> HubGGUF:
    """The file for ``ref.quant``, or the best 4-bit one; errors list what the repo has."""
    usable = _usable(files)
    single = [f for f in usable if not _SPLIT.search(f.path)]
    quants = sorted({q for f in usable if (q := f.quant)})
    have = ", ".join(quants) or "none named"
    if ref.quant is not None:
        matches = [f for f in single if f.quant == ref.quant]
        if not matches:
            split = any(f.quant == ref.quant for f in usable)
            why = ("is split into several files, which LocalLoom cannot load yet" if split
                   else "is not in the repo")
            raise InvalidRequestError(
                f"{ref.text()}: the quantization {ref.quant} {why}. The repo has: {have}. "
                f"Pick one, e.g. `localloom pull {ref.text(_suggest(quants))}`.")
        return min(matches, key=lambda f: (len(f.path), f.path))
    if not single:
        what = "only split GGUF files, which LocalLoom cannot load yet" if usable else \
            "no GGUF model files"
        raise InvalidRequestError(
            f"{ref.repo} has {what}. Look for a repo with single-file GGUF quantizations "
            "(names ending in -GGUF usually have them).")
    for wanted in _DEFAULT_QUANTS:
        matches = [f for f in single if f.quant == wanted]
        if matches:
            return min(matches, key=lambda f: (len(f.path), f.path))
    if len(single) == 1:
        return single[0]
    raise InvalidRequestError(
        f"{ref.repo} has no 4-bit file to choose by default; it has: {have}. Name one, e.g. "
        f"`localloom pull {ref.text(_suggest(quants))}`.")


def _suggest(quants: list[str]) -> str:
    for wanted in (*_DEFAULT_QUANTS, "Q5_K_M", "Q8_0"):
        if wanted in quants:
            return wanted
    return quants[0] if quants else "Q4_K_M"
