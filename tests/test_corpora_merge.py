"""Pairing the CAMEO class file with the CAMEO actor file, and projecting actor spans onto natural text."""

from __future__ import annotations

from pathlib import Path

import pytest

from conflict_events.config import load_config
from conflict_events.corpora.conll import read_conll
from conflict_events.corpora.merge import merge_layers
from conflict_events.corpora.normalise import NormalisedText, match_key, near_duplicate_key
from conflict_events.corpora.tsv import read_event_tsv
from conflict_events.corpora.validation import collapse_duplicates
from conflict_events.schema import ActorSpan, EventExample, SourceRef, Token

REPO = Path(__file__).parents[1]
CONFLIBERT = REPO / ".." / "shared" / "data" / "conflibert"
needs_shared_data = pytest.mark.skipif(
    not CONFLIBERT.is_dir(), reason=f"shared corpora not found at {CONFLIBERT} (expected beside the clone)"
)
CAMEO = load_config(REPO / "configs" / "cameo.yaml").label_schema


def event_example(line: int, text: str, event: str = "verbal_conflict") -> EventExample:
    return EventExample(f"class.tsv:{line}", text, event=event, source=SourceRef("class.tsv", line))


def actor_example(line: int, tagged: list[tuple[str, str]]) -> EventExample:
    """An actors-only example as the CoNLL reader builds it, from (token, tag) pairs."""
    tokens, spans, cursor = [], [], 0
    for text, tag in tagged:
        tokens.append(Token(text, cursor, cursor + len(text)))
        if tag.startswith("B-"):
            spans.append(ActorSpan(tag[2:], cursor, cursor + len(text)))
        elif tag.startswith("I-"):
            spans[-1] = ActorSpan(spans[-1].role, spans[-1].char_start, cursor + len(text))
        cursor += len(text) + 1
    text = " ".join(t for t, _ in tagged)
    return EventExample(f"ner.txt:{line}", text, tokens, None, spans, SourceRef("ner.txt", line))


def test_keys_ignore_typesetting_but_not_words():
    assert match_key("The governmentʼs “plan” – Erdoğan") == match_key('The government \'s " plan " - Erdogan')
    assert match_key("Talks\u202fresumed\u202a.") == match_key("Talks resumed .")
    assert match_key("Talks resumed.") != match_key("Talks resumed again.")
    assert near_duplicate_key("U.S. forces, again!") == near_duplicate_key("US forces again")


def test_normalised_text_maps_key_characters_back_to_the_source():
    normalised = NormalisedText.of("a ʼb")
    assert normalised.key == "a'b"
    assert normalised.origins == (0, 2, 3)
    assert normalised.source_range(*normalised.key_range(2, 4)) == (2, 4)


def test_joint_example_uses_the_class_text_with_projected_spans():
    natural = event_example(7, "Meanwhile, a Swiss court rejected the Croatian governmentʼs request.")
    tokenised = actor_example(
        20,
        [("Meanwhile", "O"), (",", "O"), ("a", "B-S"), ("Swiss", "I-S"), ("court", "I-S"), ("rejected", "O"),
         ("the", "O"), ("Croatian", "B-T"), ("government", "I-T"), ("'s", "I-T"), ("request", "I-T"), (".", "O")],
    )
    result = merge_layers([natural], [tokenised], "class.tsv", "ner.txt")
    assert result.issues == []
    (joint,) = result.examples
    assert joint.id == "class.tsv:7" and joint.text == natural.text and joint.event == "verbal_conflict"
    assert [(s.role, joint.actor_text(s)) for s in joint.actors] == [
        ("S", "a Swiss court"),
        ("T", "Croatian governmentʼs request"),
    ]
    assert [t.text for t in joint.tokens][7:11] == ["Croatian", "government", "ʼs", "request"]
    assert all(joint.text[t.char_start : t.char_end] == t.text for t in joint.tokens)
    report = result.report
    assert (report.matched, report.events_only, report.actors_only) == (1, 0, 0)


def test_sentences_in_one_file_only_keep_their_single_layer():
    only_class = event_example(1, "Protesters burned a flag.", "material_conflict")
    only_actors = actor_example(5, [("Police", "B-S"), ("left", "O"), (".", "O")])
    result = merge_layers([only_class], [only_actors], "class.tsv", "ner.txt")
    assert [(e.id, e.event, e.actors) for e in result.examples] == [
        ("class.tsv:1", "material_conflict", None),
        ("ner.txt:5", None, [ActorSpan("S", 0, 6)]),
    ]
    assert (result.report.matched, result.report.events_only, result.report.actors_only) == (0, 1, 1)
    assert result.report.revised == []


def test_reworded_sentences_are_reported_as_revised_pairs_not_merged():
    natural = event_example(3, "Ingabire was arrested for collaborating with a terrorist organization.")
    reworded = actor_example(
        9,
        [("Ingabire", "B-T"), ("was", "O"), ("arrested", "O"), ("in", "O"), ("Rwanda", "O"), ("for", "O"),
         ("collaborating", "O"), ("with", "O"), ("a", "O"), ("terrorist", "O"), ("organization", "O"), (".", "O")],
    )
    result = merge_layers([natural], [reworded], "class.tsv", "ner.txt")
    assert result.report.matched == 0
    assert [(p.events_id, p.actors_id) for p in result.report.revised] == [("class.tsv:3", "ner.txt:9")]
    assert [e.id for e in result.examples] == ["class.tsv:3", "ner.txt:9"]


@needs_shared_data
def test_real_cameo_train_merge_counts_and_offsets():
    events, _ = read_event_tsv(CONFLIBERT / "cameo_class" / "train.tsv", CAMEO, "cameo_class/train.tsv")
    actors, _ = read_conll(CONFLIBERT / "cameo_ner" / "train.txt", CAMEO, True, "cameo_ner/train.txt")
    events, event_duplicates = collapse_duplicates(events)
    actors, actor_duplicates = collapse_duplicates(actors)
    assert (len(event_duplicates), len(actor_duplicates)) == (4, 2)
    result = merge_layers(events, actors, "cameo_class/train.tsv", "cameo_ner/train.txt")
    report = result.report
    assert result.issues == []
    assert (report.events_read, report.actors_read) == (1345, 1151)
    assert (report.matched, report.events_only, report.actors_only) == (923, 422, 228)
    assert len(report.revised) == 224  # reworded in the actor file; 198 class-only and 4 actors-only remain
    assert len(result.examples) == 923 + 422 + 228
    actors_by_key = {match_key(a.text): a for a in actors}
    for joint in (e for e in result.examples if e.event is not None and e.actors is not None):
        source = actors_by_key[match_key(joint.text)]
        assert [(s.role, match_key(joint.actor_text(s))) for s in joint.actors] == [
            (s.role, match_key(source.actor_text(s))) for s in source.actors
        ]
        for span in joint.actors:
            mention = joint.actor_text(span)
            assert mention == mention.strip() and mention
