"""data.policy: what loading does with leakage between splits and with duplicates whose labels disagree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conflict_events.config import Config, config_from_mapping, load_config
from conflict_events.corpora import load_corpus, load_split
from conflict_events.errors import DataError

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)
LABELS = {"event_classes": [{"code": 0, "name": "neutral"}, {"code": 4, "name": "material_conflict"}]}
LEAKAGE_POLICY = "data.policy.leakage: drop_from_earlier_split"


def write_split(root: Path, name: str, sentences: list[str | tuple[str, str]]) -> None:
    """``name.jsonl`` with one record per sentence; a ``(text, event)`` pair gives the event (else neutral)."""
    lines = []
    for number, sentence in enumerate(sentences, start=1):
        text, event = sentence if isinstance(sentence, tuple) else (sentence, "neutral")
        lines.append(json.dumps({"id": f"{name}{number}", "text": text, "event": event}) + "\n")
    (root / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")


def policy_config(root: Path, splits: tuple[str, ...] = ("train", "dev", "test"), **policy: str) -> Config:
    files = {name: {"jsonl": f"{name}.jsonl"} for name in splits}
    return config_from_mapping({"data": {"root": str(root), **files, "policy": policy}, "labels": LABELS})


def texts(examples) -> list[str]:
    return [example.text for example in examples]


@pytest.fixture()
def leaky_corpus(tmp_path: Path) -> Path:
    """Train shares one sentence with dev and one (near-duplicate) with test; dev shares one with test."""
    write_split(tmp_path, "train", ["Rebels attacked a convoy.", "Talks resumed in Geneva.", "Troops shelled the town."])
    write_split(tmp_path, "dev", ["Rebels attacked a convoy.", "Police arrested two men.", "A bomb hit the market."])
    write_split(tmp_path, "test", ["talks resumed in GENEVA", "A bomb hit the market.", "Aid reached the camp."])
    return tmp_path


# --- leakage -------------------------------------------------------------------------------------
def test_by_default_leakage_is_an_error_naming_both_lines(leaky_corpus):
    corpus = load_corpus(policy_config(leaky_corpus), strict=False)
    assert [str(issue) for issue in corpus.errors] == [
        "error: dev.jsonl:1 [text]: dev sentence is an exact duplicate of train sentence train.jsonl:1 (leakage)",
        "error: test.jsonl:1 [text]: test sentence is a near-duplicate (same words) of train sentence train.jsonl:2 (leakage)",
        "error: test.jsonl:2 [text]: test sentence is an exact duplicate of dev sentence dev.jsonl:3 (leakage)",
    ]
    assert corpus.policy_report.drops == [] and not corpus.policy_report.active
    with pytest.raises(DataError):
        load_corpus(policy_config(leaky_corpus))


def test_drop_from_earlier_split_removes_from_train_and_dev_and_keeps_test_as_published(leaky_corpus):
    corpus = load_corpus(policy_config(leaky_corpus, leakage="drop_from_earlier_split"))
    assert texts(corpus.train) == ["Troops shelled the town."]
    assert texts(corpus.dev) == ["Rebels attacked a convoy.", "Police arrested two men."]
    assert texts(corpus.test) == ["talks resumed in GENEVA", "A bomb hit the market.", "Aid reached the camp."]
    assert [str(issue) for issue in corpus.issues] == [
        f"warning: train.jsonl:1 [text]: dropped from train: an exact duplicate of dev sentence dev.jsonl:1 ({LEAKAGE_POLICY})",
        "warning: train.jsonl:2 [text]: dropped from train: a near-duplicate (same words) of test sentence "
        f"test.jsonl:1 ({LEAKAGE_POLICY})",
        f"warning: dev.jsonl:3 [text]: dropped from dev: an exact duplicate of test sentence test.jsonl:2 ({LEAKAGE_POLICY})",
    ]


def test_a_sentence_in_every_split_leaves_train_and_dev_and_names_each_later_split(tmp_path):
    for name in ("train", "dev", "test"):
        write_split(tmp_path, name, ["Rebels attacked a convoy.", f"Only in {name}."])
    corpus = load_corpus(policy_config(tmp_path, leakage="drop_from_earlier_split"))
    assert (texts(corpus.train), texts(corpus.dev)) == (["Only in train."], ["Only in dev."])
    assert texts(corpus.test) == ["Rebels attacked a convoy.", "Only in test."]
    assert str(corpus.warnings[0]) == (
        "warning: train.jsonl:1 [text]: dropped from train: an exact duplicate of dev sentence dev.jsonl:1; "
        f"an exact duplicate of test sentence test.jsonl:1 ({LEAKAGE_POLICY})"
    )
    assert (
        corpus.policy_report.summary() == "policy dropped: 1 from train (leakage with dev/test), 1 from dev (leakage with test)"
    )


def test_leakage_is_dropped_before_dev_is_carved_so_carved_dev_never_holds_a_test_sentence(tmp_path):
    write_split(tmp_path, "train", [f"Report number {i} from the front." for i in range(20)])
    write_split(tmp_path, "test", [f"Report number {i} from the front." for i in range(0, 20, 2)])
    config = policy_config(tmp_path, ("train", "test"), leakage="drop_from_earlier_split")
    corpus = load_corpus(config)
    assert len(corpus.train) + len(corpus.dev) == 10 and len(corpus.test) == 10
    assert not set(texts(corpus.train) + texts(corpus.dev)) & set(texts(corpus.test))
    assert corpus.policy_report.counts()["leakage"] == {"train": 10, "dev": 0, "test": 0}


def test_an_absent_test_split_is_fine_under_the_policy(tmp_path):
    write_split(tmp_path, "train", ["Rebels attacked a convoy.", "Talks resumed."])
    write_split(tmp_path, "dev", ["Talks resumed."])
    corpus = load_corpus(policy_config(tmp_path, leakage="drop_from_earlier_split"))
    assert (texts(corpus.train), corpus.test) == (["Rebels attacked a convoy."], None)
    assert corpus.policy_report.summary() == "policy dropped: 1 from train (leakage with dev)"


# --- conflicting duplicates ----------------------------------------------------------------------
@pytest.fixture()
def conflicting_train(tmp_path: Path) -> Path:
    """Line 1 and 3 disagree; line 4 repeats line 1 with its labels; line 5 repeats line 2 with its labels."""
    write_split(
        tmp_path,
        "train",
        [
            "Rebels attacked a convoy.",
            "Talks resumed.",
            ("Rebels attacked a convoy.", "material_conflict"),
            "Rebels  attacked a convoy.",
            "Talks resumed.",
        ],
    )
    return tmp_path


def test_by_default_a_conflicting_duplicate_is_an_error_naming_both_lines(conflicting_train):
    corpus = load_corpus(policy_config(conflicting_train, ("train",)), strict=False)
    assert [str(issue) for issue in corpus.errors] == [
        "error: train.jsonl:3 [text]: exact duplicate of line 1 but with different labels "
        "(event material_conflict, actors unlabeled vs event neutral, actors unlabeled)"
    ]


def test_keep_first_keeps_the_first_copy_and_collapses_the_agreeing_ones(conflicting_train):
    corpus = load_corpus(policy_config(conflicting_train, ("train",), conflicting_duplicates="keep_first"))
    assert [(example.id, example.event) for example in corpus.train + corpus.dev] == [
        ("train1", "neutral"),
        ("train2", "neutral"),
    ]
    assert [str(issue) for issue in corpus.issues] == [
        "warning: train.jsonl:3 [text]: exact duplicate of line 1 but with different labels "
        "(event material_conflict, actors unlabeled vs event neutral, actors unlabeled); dropped, line 1 is kept "
        "(data.policy.conflicting_duplicates: keep_first)",
        "warning: train.jsonl:4 [text]: same sentence (up to spacing/quotes/case) as line 1 with the same labels; "
        "only line 1 is kept",
        "warning: train.jsonl:5 [text]: exact duplicate of line 2 with the same labels; only line 2 is kept",
    ]
    assert corpus.policy_report.counts()["conflicting_duplicates"] == {"train": 1, "dev": 0, "test": 0}


def test_drop_removes_every_copy_of_a_sentence_whose_copies_disagree(conflicting_train):
    corpus = load_corpus(policy_config(conflicting_train, ("train",), conflicting_duplicates="drop"))
    assert texts(corpus.train + corpus.dev) == ["Talks resumed."]
    drop = "(data.policy.conflicting_duplicates: drop)"
    assert [str(issue) for issue in corpus.issues] == [
        "warning: train.jsonl:1 [text]: copies at line 1, line 3, line 4 disagree on labels; every copy is dropped, "
        f"this one had event neutral, actors unlabeled {drop}",
        "warning: train.jsonl:3 [text]: copies at line 1, line 3, line 4 disagree on labels; every copy is dropped, "
        f"this one had event material_conflict, actors unlabeled {drop}",
        "warning: train.jsonl:4 [text]: copies at line 1, line 3, line 4 disagree on labels; every copy is dropped, "
        f"this one had event neutral, actors unlabeled {drop}",
        "warning: train.jsonl:5 [text]: exact duplicate of line 2 with the same labels; only line 2 is kept",
    ]
    assert corpus.policy_report.summary() == "policy dropped: 3 conflicting duplicates from train (drop)"


def test_the_conflicting_duplicates_policy_applies_to_one_split_read_alone(conflicting_train):
    config = policy_config(conflicting_train, ("train",), conflicting_duplicates="drop")
    assert texts(load_split(config, "train")) == ["Talks resumed."]


# --- the report ----------------------------------------------------------------------------------
def test_the_report_counts_every_kind_and_split_with_stable_keys(leaky_corpus):
    write_split(leaky_corpus, "train", ["Rebels attacked a convoy.", "Shots fired.", ("Shots fired.", "material_conflict")])
    corpus = load_corpus(policy_config(leaky_corpus, leakage="drop_from_earlier_split", conflicting_duplicates="drop"))
    report = corpus.policy_report
    assert report.active
    assert report.counts() == {
        "leakage": {"train": 1, "dev": 1, "test": 0},
        "conflicting_duplicates": {"train": 2, "dev": 0, "test": 0},
    }
    assert report.flat() == {
        "leakage.train": 1,
        "leakage.dev": 1,
        "leakage.test": 0,
        "conflicting_duplicates.train": 2,
        "conflicting_duplicates.dev": 0,
        "conflicting_duplicates.test": 0,
    }
    assert [drop.issue for drop in report.drops] == corpus.warnings
    assert report.summary() == (
        "policy dropped: 1 from train (leakage with dev), 1 from dev (leakage with test), "
        "2 conflicting duplicates from train (drop)"
    )


def test_nothing_to_drop_is_said_so(tmp_path):
    write_split(tmp_path, "train", ["Rebels attacked a convoy."])
    corpus = load_corpus(policy_config(tmp_path, ("train",), leakage="drop_from_earlier_split"))
    assert corpus.policy_report.summary() == "policy dropped: nothing"


# --- the upstream benchmarks -----------------------------------------------------------------------
@needs_shared_data
@pytest.mark.parametrize(
    ("name", "sizes", "counts"),
    [
        (
            "satp",
            (1066, 231),
            {"leakage": {"train": 6, "dev": 0, "test": 0}, "conflicting_duplicates": {"train": 4, "dev": 0, "test": 0}},
        ),
        (
            "re3d",
            (553, 190),
            {"leakage": {"train": 2, "dev": 0, "test": 0}, "conflicting_duplicates": {"train": 17, "dev": 0, "test": 0}},
        ),
    ],
)
def test_upstream_benchmarks_load_as_downloaded(name, sizes, counts):
    config = load_config(REPO / "configs" / f"{name}.yaml", data_root=str(CONFLIBERT))
    corpus = load_corpus(config)
    assert (len(corpus.train), len(corpus.dev), corpus.test) == (*sizes, None)
    assert corpus.policy_report.counts() == counts
