"""Fetching upstream corpus files, verified by SHA-256, from GitHub or from a local mirror.

The CAMEO files come from the ``data/`` folder of the public ``eventdata/ConfliBERT`` repository.
Checksums are pinned for the files we could hash (the training files in the shared data folder);
for the others none is pinned yet, and the SHA-256 of what was received is printed so it can be
pinned once checked. Without network access the download fails after a few seconds with a hint to
use ``--from DIR`` (a folder laid out like upstream ``data/``, e.g. a copy of the shared data).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from conflict_events.errors import ConflictEventsError

UPSTREAM_BASE_URL = "https://raw.githubusercontent.com/eventdata/ConfliBERT/main/data/"
DEFAULT_TIMEOUT_S = 5.0


class FetchError(ConflictEventsError):
    """A file could not be fetched or failed verification."""


@dataclass(frozen=True)
class UpstreamFile:
    path: str  # relative to the upstream data/ folder, and to --dest / --from
    sha256: str | None  # None: not pinned yet
    required: bool  # optional files (e.g. a dev split upstream may not have) may be absent


CORPORA: dict[str, tuple[UpstreamFile, ...]] = {
    "cameo": (
        UpstreamFile("cameo_class/train.tsv", "556c5a91ea278517b6f1595d2a55c04ca98219f255c95a617783decd179fd5fb", True),
        UpstreamFile("cameo_class/dev.tsv", None, False),
        UpstreamFile("cameo_class/test.tsv", None, False),
        UpstreamFile("cameo_ner/train.txt", "8e69a77e8e68ffb5adf137a7aa89fe53b91d86ec31f69a2d1f466f51e0eb60be", True),
        UpstreamFile("cameo_ner/test.txt", None, False),
    ),
}


@dataclass(frozen=True)
class FetchedFile:
    path: str
    status: str  # "fetched" or "absent" (optional file not found at the source)
    sha256: str | None = None
    pinned: bool = False

    def describe(self) -> str:
        if self.status == "absent":
            return f"{self.path}: not found at the source (optional, skipped)"
        check = "checksum verified" if self.pinned else "no checksum pinned"
        return f"{self.path}: sha256 {self.sha256} ({check})"


def fetch_corpus(
    name: str, dest: Path, mirror: Path | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[FetchedFile]:
    """Copy (``mirror``) or download the files of corpus ``name`` into ``dest``, verifying checksums."""
    if name not in CORPORA:
        raise FetchError(f"unknown corpus '{name}' (known: {', '.join(sorted(CORPORA))})")
    results = []
    for upstream in CORPORA[name]:
        payload = _read_from_mirror(mirror, upstream) if mirror else _download(upstream, timeout_s)
        if payload is None:
            results.append(FetchedFile(upstream.path, "absent"))
            continue
        digest = hashlib.sha256(payload).hexdigest()
        if upstream.sha256 is not None and digest != upstream.sha256:
            source = mirror / upstream.path if mirror else UPSTREAM_BASE_URL + upstream.path
            raise FetchError(
                f"{source}: checksum mismatch (expected sha256 {upstream.sha256}, got {digest}); "
                "the file was not written"
            )
        _write_atomically(dest / upstream.path, payload)
        results.append(FetchedFile(upstream.path, "fetched", digest, upstream.sha256 is not None))
    return results


def _read_from_mirror(mirror: Path, upstream: UpstreamFile) -> bytes | None:
    if not mirror.is_dir():
        raise FetchError(f"--from {mirror}: not a directory")
    source = mirror / upstream.path
    if not source.is_file():
        if upstream.required:
            raise FetchError(f"{source}: required file not found in the mirror")
        return None
    return source.read_bytes()


def _download(upstream: UpstreamFile, timeout_s: float) -> bytes | None:
    url = UPSTREAM_BASE_URL + upstream.path
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as problem:
        if problem.code == 404 and not upstream.required:
            return None
        raise FetchError(f"{url}: HTTP {problem.code} {problem.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as problem:
        reason = getattr(problem, "reason", problem)
        raise FetchError(
            f"cannot download {url} ({reason}). Without internet access, copy the files from a mirror "
            "laid out like the upstream data/ folder: conflict-events data fetch cameo --dest DIR --from MIRROR"
        ) from None


def _write_atomically(target: Path, payload: bytes) -> None:
    """Write to a temporary file beside ``target`` and rename, so a failure never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

