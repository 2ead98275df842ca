"""The Predictor: sentence splitting with exact document offsets, windowing of long sentences, one record
shape for every input."""

from __future__ import annotations

import pytest

from conflict_events.config import InferenceConfig
from conflict_events.prediction import text_windows, window_size
from conflict_events.inference.predictor import ModelIdentity, Predictor
from conflict_events.sentences import SentenceSplitter
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.records import SentenceRecord
from conflict_events.schema import Document
from conftest import SAMPLE_DATA, SHARED_DATA, assert_offsets_hold

DERNA = SHARED_DATA / "examples" / "derna_airstrikes.txt"


@pytest.fixture(scope="module")
def predictor(tiny_encoder_dir, tmp_path_factory) -> Predictor:
    # max_length 16 forces most sentences through the windowing path.
    directory = save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "m16", max_length=16)
    return Predictor.from_uri(directory, InferenceConfig(batch_size=8, window_overlap=4))


@pytest.fixture(scope="module")
def multilabel_predictor(tiny_encoder_dir, tmp_path_factory) -> Predictor:
    directory = save_random_joint_model(
        tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "ml", max_length=64, multilabel=True
    )
    return Predictor.from_uri(directory, InferenceConfig())


def sample_documents() -> list[Document]:
    documents = []
    if DERNA.is_file():
        documents.append(Document("derna", DERNA.read_text(encoding="utf-8")))
    articles = SAMPLE_DATA / "articles"
    if articles.is_dir():
        documents += [Document(p.stem, p.read_text(encoding="utf-8")) for p in sorted(articles.glob("*.txt"))]
    return documents


@pytest.mark.skipif(not sample_documents(), reason="no example articles (derna_airstrikes.txt, data/sample/articles)")
def test_offsets_hold_on_the_bundled_articles(predictor):
    documents = sample_documents()
    records = predictor.predict_documents(documents)
    for document in documents:
        assert_offsets_hold(document, [r for r in records if r.doc_id == document.id])
    assert {r.doc_id for r in records} == {d.id for d in documents}


@pytest.mark.parametrize(
    "text",
    [
        "  Leading spaces.   Two  spaces between.\tA tab.\n\nNew paragraph!  \n",
        "Headline without a full stop\n\nBody text. Dr. Smith met Gen. Haftar on Jan. 5 in Benghazi.",
        "No terminal punctuation at all just one long run of words " * 6,
        "Quotes: \"We will fight,\" he said. 'Really?' asked she… Then—silence.\r\n\r\nEnd.",
        "Unicode – Libya’s east (Derna) … ٢٠١٨ attacks; 😀 emoji. Zero\u200bwidth space.",
    ],
)
def test_offsets_hold_on_awkward_whitespace_and_punctuation(predictor, text):
    document = Document("d", text)
    assert_offsets_hold(document, predictor.predict_documents([document]))


def test_sentence_splitter_offsets_are_exact():
    text = "First one.   Second  one?\n\n\n  Third one!  "
    spans = SentenceSplitter().split(text)
    assert [text[s.char_start : s.char_end] for s in spans] == ["First one.", "Second  one?", "Third one!"]


def test_long_sentences_are_windowed_and_merged(predictor):
    text = "The rebels attacked the garrison " + " ".join(f"near village number {i}" for i in range(40)) + "."
    loaded = predictor.loaded
    pieces = text_windows(loaded.tokenizer, text, window_size(loaded), predictor.settings.window_overlap)
    assert len(pieces) > 1
    # Owned regions tile the sentence exactly, so every actor is kept by exactly one window.
    assert pieces[0].own_start == 0 and pieces[-1].own_end == len(text)
    assert all(a.own_end == b.own_start for a, b in zip(pieces, pieces[1:]))
    records = predictor.predict_documents([Document("x", text)])
    assert len(records) == 1
    assert abs(sum(records[0].event_scores.values()) - 1.0) < 1e-5
    assert_offsets_hold(Document("x", text), records)


def test_empty_and_whitespace_documents_give_no_records(predictor):
    assert predictor.predict_documents([]) == []
    assert predictor.predict_documents([Document("a", ""), Document("b", " \n\t ")]) == []


def test_batched_equals_one_by_one(predictor):
    documents = [Document("a", "Police fired on protesters. Two died."), Document("b", "Talks resumed in Geneva.")]
    together = predictor.predict_documents(documents)
    alone = [record for document in documents for record in predictor.predict_documents([document])]
    assert [r.text for r in together] == [r.text for r in alone]
    for a, b in zip(together, alone):
        assert a.event_scores == pytest.approx(b.event_scores, abs=1e-5)
        assert [(x.char_start, x.char_end, x.role) for x in a.actors] == [
            (x.char_start, x.char_end, x.role) for x in b.actors
        ]


def test_one_record_shape_for_multiclass_and_multilabel(predictor, multilabel_predictor):
    document = Document("a", "Police fired on protesters. Two died.")
    for model in (predictor, multilabel_predictor):
        for record in model.predict_documents([document]):
            assert isinstance(record, SentenceRecord)
            if record.event_types:
                assert record.event_type == record.event_types[0]
                assert record.event_code == model.loaded.label_schema.event_code(record.event_type)
            else:
                assert record.event_type is None and record.event_code is None
            assert set(record.event_scores) == set(model.loaded.label_schema.event_names)
    multiclass = predictor.predict_documents([document])
    assert all(len(record.event_types) == 1 for record in multiclass)


def test_records_name_the_model_identity_of_the_call_else_the_predictors_own(predictor):
    document = Document("a", "Police fired on protesters. Two died.")
    own = predictor.identity
    assert {(r.model_uri, r.model_version) for r in predictor.predict_documents([document])} == {(own.uri, own.version)}
    asked = ModelIdentity("models:/x@champion", "7")
    (records,) = predictor.predict_by_document([document], asked)
    assert {(r.model_uri, r.model_version) for r in records} == {("models:/x@champion", "7")}
    assert predictor.identity == own


def test_a_giant_paragraph_is_cut_before_pysbd_and_keeps_exact_offsets():
    text = "Rebels attacked the base near the town. " * 1500 + "word " * 3000  # 60k chars, no line break
    spans = SentenceSplitter().split(text)
    assert len(spans) >= 1500
    assert all(text[s.char_start : s.char_end] == text[s.char_start : s.char_end].strip() for s in spans)
    covered = sum(s.char_end - s.char_start for s in spans)
    assert covered >= len(text.strip()) - text.count(" ")
    assert all(a.char_end <= b.char_start for a, b in zip(spans, spans[1:]))
