"""`conflict-events data validate | stats | fetch`, run in-process with Typer's CliRunner."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.corpora import fetch

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
BAD = REPO / "tests" / "resources" / "bad"
CAMEO_CONFIG = str(REPO / "configs" / "cameo.yaml")
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)
runner = CliRunner()

CAMEO_VALIDATE_OUTPUT = """\
warning: cameo_class/train.tsv:353 [text]: exact duplicate of line 289 with the same labels; only line 289 is kept
warning: cameo_class/train.tsv:362 [text]: same sentence (up to spacing/quotes/case) as line 351 with the same labels; only line 351 is kept
warning: cameo_class/train.tsv:364 [text]: exact duplicate of line 150 with the same labels; only line 150 is kept
warning: cameo_class/train.tsv:737 [text]: exact duplicate of line 136 with the same labels; only line 136 is kept
warning: cameo_ner/train.txt:17911 [tag]: 'I-S' does not continue a span (it follows 'B-T'); read as 'B-S'
warning: cameo_ner/train.txt:17938 [tag]: 'I-S' does not continue a span (it follows 'B-T'); read as 'B-S'
warning: cameo_ner/train.txt:26328 [tag]: 'I-S' does not continue a span (it follows 'B-T'); read as 'B-S'
warning: cameo_ner/train.txt:9359 [text]: exact duplicate of line 9182 with the same labels; only line 9182 is kept
warning: cameo_ner/train.txt:9398 [text]: exact duplicate of line 3987 with the same labels; only line 3987 is kept
train merge: cameo_class/train.tsv (1345 distinct sentences) + cameo_ner/train.txt (1151): 923 matched, 422 class-only, 228 actors-only (224 of these pairs are reworded in the actor file and kept apart)
splits: train 1337, dev 236 (carved from train (fraction 0.15, seed 13)), test not present
0 errors, 9 warnings
"""


def run(*args: str):
    return runner.invoke(app, list(args))


def bad_data_config(tmp_path: Path) -> str:
    raw = yaml.safe_load(Path(CAMEO_CONFIG).read_text(encoding="utf-8"))
    raw["data"] = {
        "root": str(BAD),
        "train": {"events": "class_unknown_label.tsv", "actors": "ner_bad_bio.txt"},
        "test": {"events": "class_crlf.tsv"},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


@needs_shared_data
def test_validate_cameo_exits_0_and_prints_the_merge_counts():
    result = run("data", "validate", "--config", CAMEO_CONFIG, "--data-root", str(CONFLIBERT))
    assert result.exit_code == 0, result.output
    assert result.output == CAMEO_VALIDATE_OUTPUT


@needs_shared_data
def test_validate_can_list_what_did_not_pair():
    result = run("data", "validate", "-c", CAMEO_CONFIG, "--data-root", str(CONFLIBERT), "--show-unpaired")
    assert result.exit_code == 0
    assert "  reworded pairs (224):" in result.output
    assert "  only in cameo_class/train.tsv (198):" in result.output
    assert "  only in cameo_ner/train.txt (4):" in result.output


@needs_shared_data
def test_validate_with_set_override_reports_data_errors_with_exit_1():
    result = run("data", "validate", "-c", CAMEO_CONFIG, "--data-root", str(CONFLIBERT), "--set", "data.repair_bio=false")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "3 errors, 6 warnings"


def test_validate_bad_files_prints_every_issue_and_exits_1(tmp_path):
    result = run("data", "validate", "--config", bad_data_config(tmp_path))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: class_unknown_label.tsv:1 [label]: unknown event label '7' (known codes: 0, 1, 2, 3, 4)",
        "error: class_unknown_label.tsv:2 [label]: unknown event label 'war' (known names: neutral, "
        "verbal_cooperation, material_cooperation, verbal_conflict, material_conflict)",
        "error: class_unknown_label.tsv:3 [label]: empty event label",
        "error: ner_bad_bio.txt:4 [tag]: 'I-T' does not continue a span (it follows 'O'); "
        "fix the file or set data.repair_bio: true to read it as 'B-T'",
        "train merge: class_unknown_label.tsv (0 distinct sentences) + ner_bad_bio.txt (1): "
        "0 matched, 0 class-only, 1 actors-only (0 of these pairs are reworded in the actor file and kept apart)",
        "splits: train 1, dev 0 (carved from train (fraction 0.15, seed 13)), test 2",
        "4 errors, 0 warnings",
    ]


def test_config_errors_exit_2_without_a_traceback():
    result = run("data", "validate", "-c", CAMEO_CONFIG, "--set", "data.trian.events=x.tsv")
    assert result.exit_code == 2
    assert result.output == "error: --set data.trian.events=x.tsv: unknown key 'data.trian' (did you mean 'data.train'?)\n"
    result = run("data", "validate", "-c", "configs/absent.yaml")
    assert (result.exit_code, result.output) == (2, "error: config file not found: configs/absent.yaml\n")


@needs_shared_data
def test_stats_prints_tables_and_json():
    result = run("data", "stats", "-c", CAMEO_CONFIG, "--data-root", str(CONFLIBERT))
    assert result.exit_code == 0, result.output
    assert "Event classes\ncode  name                  train  dev\n" in result.output
    assert "   4  material_conflict       187   34" in result.output
    assert "S    source        923  172" in result.output
    result = run("data", "stats", "-c", CAMEO_CONFIG, "--data-root", str(CONFLIBERT), "--json")
    stats = json.loads(result.output)
    assert stats["merges"]["train"]["matched"] == 923
    assert stats["splits"]["dev"]["examples"] == 236


def test_stats_exits_1_on_data_errors(tmp_path):
    result = run("data", "stats", "-c", bad_data_config(tmp_path), "--json")
    assert result.exit_code == 1
    assert result.output.endswith("4 data errors: run `conflict-events data validate` for details\n")


@needs_shared_data
def test_fetch_from_a_mirror(tmp_path):
    result = run("data", "fetch", "cameo", "--dest", str(tmp_path), "--from", str(CONFLIBERT))
    assert result.exit_code == 0, result.output
    assert "cameo_ner/train.txt: sha256 8e69a77e8e68ffb5adf137a7aa89fe53b91d86ec31f69a2d1f466f51e0eb60be (checksum verified)" in result.output
    assert result.output.endswith(f"wrote 2 files under {tmp_path}\n")


def test_fetch_offline_fails_fast_and_points_to_from(tmp_path, monkeypatch):
    def unreachable(url, timeout):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(fetch.urllib.request, "urlopen", unreachable)
    result = run("data", "fetch", "cameo", "--dest", str(tmp_path))
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot download {fetch.UPSTREAM_BASE_URL}cameo_class/train.tsv (offline).")
    assert "--from MIRROR" in result.output


def test_fetch_unknown_corpus(tmp_path):
    result = run("data", "fetch", "acled", "--dest", str(tmp_path))
    assert (result.exit_code, result.output) == (1, "error: unknown corpus 'acled' (known: cameo)\n")


# --- data.policy ---------------------------------------------------------------------------------
SATP_CONFIG = str(REPO / "configs" / "satp.yaml")
RE3D_CONFIG = str(REPO / "configs" / "re3d.yaml")


@needs_shared_data
@pytest.mark.parametrize(
    ("config", "summary"),
    [
        (SATP_CONFIG, "policy dropped: 6 from train (leakage with dev), 4 conflicting duplicates from train (drop)"),
        (RE3D_CONFIG, "policy dropped: 2 from train (leakage with dev), 17 conflicting duplicates from train (drop)"),
    ],
    ids=["satp", "re3d"],
)
def test_validate_upstream_benchmarks_as_downloaded_exits_0_and_says_what_the_policy_dropped(config, summary):
    result = run("data", "validate", "-c", config, "--data-root", str(CONFLIBERT))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-3] == summary
    assert lines[-2].endswith("test not present")
    assert lines[-1].startswith("0 errors, ")
    # Without the policy the same files are refused, as before.
    refusing = ["--set", "data.policy.leakage=error", "--set", "data.policy.conflicting_duplicates=error"]
    result = run("data", "validate", "-c", config, "--data-root", str(CONFLIBERT), *refusing)
    assert result.exit_code == 1
    assert not any(line.startswith("policy dropped") for line in result.output.splitlines())


@needs_shared_data
def test_validate_satp_with_its_test_file_present_keeps_test_as_published(tmp_path):
    test_file = "satp_relevant/test.tsv"
    upstream = CONFLIBERT / "satp_relevant"
    (tmp_path / "satp_relevant").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (tmp_path / "satp_relevant" / name).write_bytes((upstream / name).read_bytes())
    train_lines = (upstream / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    dev_lines = (upstream / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    # A stand-in for the held-back test file: one report also in train (line 2), one also in dev (line 2),
    # and one in neither.
    test_lines = [train_lines[1], dev_lines[1], "Militants torched a school in the district.\t0\t0\t0\t1\n"]
    (tmp_path / "satp_relevant" / "test.tsv").write_text("".join(test_lines), encoding="utf-8")
    result = run("data", "validate", "-c", SATP_CONFIG, "--data-root", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    policy = "(data.policy.leakage: drop_from_earlier_split)"
    dropped = [line for line in lines if line.endswith(policy) and f"of test sentence {test_file}" in line]
    assert dropped == [
        f"warning: satp_relevant/train.tsv:2 [text]: dropped from train: an exact duplicate of test sentence {test_file}:1 {policy}",
        f"warning: satp_relevant/dev.tsv:2 [text]: dropped from dev: an exact duplicate of test sentence {test_file}:2 {policy}",
    ]
    assert lines[-3] == (
        "policy dropped: 7 from train (leakage with dev/test), 1 from dev (leakage with test), "
        "4 conflicting duplicates from train (drop)"
    )
    assert lines[-2] == "splits: train 1065, dev 230 (configured), test 3"


def test_validate_with_a_policy_set_on_the_command_line_prints_each_drop(tmp_path):
    raw = yaml.safe_load(Path(CAMEO_CONFIG).read_text(encoding="utf-8"))
    train = "Rebels attacked a convoy.\t4\nTalks resumed.\t0\nRebels attacked a convoy.\t0\n"
    (tmp_path / "train.tsv").write_text(train, encoding="utf-8")
    raw["data"] = {"root": str(tmp_path), "train": {"events": "train.tsv"}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert run("data", "validate", "-c", str(path)).exit_code == 1
    result = run("data", "validate", "-c", str(path), "--set", "data.policy.conflicting_duplicates=keep_first")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "warning: train.tsv:3 [text]: exact duplicate of line 1 but with different labels (event neutral, actors unlabeled "
        "vs event material_conflict, actors unlabeled); dropped, line 1 is kept (data.policy.conflicting_duplicates: keep_first)",
        "policy dropped: 1 conflicting duplicates from train (keep_first)",
        "splits: train 2, dev 0 (carved from train (fraction 0.15, seed 13)), test not present",
        "0 errors, 1 warnings",
    ]
