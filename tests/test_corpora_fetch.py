"""Fetching the CAMEO files: mirror copies, checksum verification, fast offline failure (no network used)."""

from __future__ import annotations

import hashlib
import io
import urllib.error
from pathlib import Path

import pytest

from conflict_events.corpora import fetch
from conflict_events.corpora.fetch import UPSTREAM_BASE_URL, FetchError, fetch_corpus

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)


def make_mirror(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for relative, payload in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(payload)
    return root


@needs_shared_data
def test_copies_from_a_mirror_and_verifies_pinned_checksums(tmp_path):
    fetched = fetch_corpus("cameo", tmp_path / "dest", mirror=CONFLIBERT)
    assert [item.describe() for item in fetched] == [
        "cameo_class/train.tsv: sha256 556c5a91ea278517b6f1595d2a55c04ca98219f255c95a617783decd179fd5fb "
        "(checksum verified)",
        "cameo_class/dev.tsv: not found at the source (optional, skipped)",
        "cameo_class/test.tsv: not found at the source (optional, skipped)",
        "cameo_ner/train.txt: sha256 8e69a77e8e68ffb5adf137a7aa89fe53b91d86ec31f69a2d1f466f51e0eb60be "
        "(checksum verified)",
        "cameo_ner/test.txt: not found at the source (optional, skipped)",
    ]
    copied = tmp_path / "dest" / "cameo_class" / "train.tsv"
    assert copied.read_bytes() == (CONFLIBERT / "cameo_class" / "train.tsv").read_bytes()


def test_checksum_mismatch_is_an_error_and_nothing_is_written(tmp_path):
    mirror = make_mirror(tmp_path / "mirror", {"cameo_class/train.tsv": b"tampered\t0\n", "cameo_ner/train.txt": b"x O\n"})
    with pytest.raises(FetchError) as raised:
        fetch_corpus("cameo", tmp_path / "dest", mirror=mirror)
    digest = hashlib.sha256(b"tampered\t0\n").hexdigest()
    assert str(raised.value) == (
        f"{mirror / 'cameo_class/train.tsv'}: checksum mismatch (expected sha256 "
        f"556c5a91ea278517b6f1595d2a55c04ca98219f255c95a617783decd179fd5fb, got {digest}); the file was not written"
    )
    assert not (tmp_path / "dest" / "cameo_class" / "train.tsv").exists()


def test_missing_required_file_in_mirror_is_an_error(tmp_path):
    with pytest.raises(FetchError, match=r"cameo_class/train.tsv: required file not found in the mirror"):
        fetch_corpus("cameo", tmp_path / "dest", mirror=make_mirror(tmp_path / "mirror", {}))


def test_mirror_must_be_a_directory(tmp_path):
    with pytest.raises(FetchError, match=r"^--from .*absent: not a directory$"):
        fetch_corpus("cameo", tmp_path / "dest", mirror=tmp_path / "absent")


def test_unknown_corpus(tmp_path):
    with pytest.raises(FetchError, match=r"^unknown corpus 'acled' \(known: cameo\)$"):
        fetch_corpus("acled", tmp_path)


def test_offline_download_fails_fast_with_a_hint(tmp_path, monkeypatch):
    calls = []

    def unreachable(url, timeout):
        calls.append((url, timeout))
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", unreachable)
    with pytest.raises(FetchError) as raised:
        fetch_corpus("cameo", tmp_path)
    assert calls == [(UPSTREAM_BASE_URL + "cameo_class/train.tsv", 5.0)]
    assert str(raised.value) == (
        f"cannot download {UPSTREAM_BASE_URL}cameo_class/train.tsv ([Errno -2] Name or service not known). "
        "Without internet access, copy the files from a mirror laid out like the upstream data/ folder: "
        "conflict-events data fetch cameo --dest DIR --from MIRROR"
    )


@needs_shared_data
def test_download_reports_the_sha256_of_unpinned_files(tmp_path, monkeypatch):
    def fake_upstream(url, timeout):
        relative = url.removeprefix(UPSTREAM_BASE_URL)
        if relative.endswith("dev.tsv"):
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        if relative.endswith("test.tsv") or relative.endswith("test.txt"):
            return io.BytesIO(b"held-out " + relative.encode())
        return io.BytesIO((CONFLIBERT / relative).read_bytes())

    monkeypatch.setattr(fetch.urllib.request, "urlopen", fake_upstream)
    fetched = {item.path: item for item in fetch_corpus("cameo", tmp_path)}
    assert fetched["cameo_class/dev.tsv"].status == "absent"
    test_file = fetched["cameo_class/test.tsv"]
    assert test_file.describe() == (
        f"cameo_class/test.tsv: sha256 {hashlib.sha256(b'held-out cameo_class/test.tsv').hexdigest()} "
        "(no checksum pinned)"
    )
    assert (tmp_path / "cameo_ner" / "test.txt").read_bytes() == b"held-out cameo_ner/test.txt"
