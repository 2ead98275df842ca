"""The batch job's input side (inference/producer.py): a producer process gives exactly the records, errors,
shards and events of the in-process path and of the predictor called chunk by chunk; either side's failure,
or Ctrl-C, ends both; the time breakdown and the progress total."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conflict_events.cli import app
from conflict_events.config import InferenceConfig, StoriesConfig
from conflict_events.inference.batch import (
    PAUSE_ENV,
    PAUSE_MARKER_ENV,
    STAGES,
    PredictJob,
    read_errors,
    read_events,
    read_records,
    run_predict_job,
)
from conflict_events.inference.predictor import ModelIdentity, Predictor
from conflict_events.inference import producer
from conflict_events.inference.producer import (
    PRODUCING_STAGES,
    PreparedShard,
    ProducerError,
    ShardPlan,
    ShardStories,
    SplitChunk,
    model_calls,
    prepared_items,
    producer_mode,
    shard_stories,
    shards_of,
    split_chunks,
)
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.model import load_joint_model
from conflict_events.schema import Document
from conflict_events.sentences import SentenceSplitter
from conflict_events.sources import ReaderSettings, count_records, read_documents
from conflict_events.stories import StoryAssignment, StoryIndex
from conftest import REPO_ROOT, SAMPLE_DATA

RESOURCES = REPO_ROOT / "tests" / "resources"


@pytest.fixture(scope="module")
def model_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "model", max_length=32)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The sample articles and the resources' unlabeled news (one line of it without text), with bad records
    between them and a copy of an article (a second story member): 3 files, 10 documents, 4 bad records; the
    last shard holds a bad record only."""
    folder = tmp_path_factory.mktemp("producer") / "archive"
    folder.mkdir()
    articles = [json.loads(line) for line in (SAMPLE_DATA / "articles.jsonl").read_text(encoding="utf-8").splitlines()]
    lines = [json.dumps(articles[0]), json.dumps(articles[1]), '{"id": "broken", "text": "unterminated',
             json.dumps({"id": "empty", "text": "  "}), json.dumps(articles[2]),
             json.dumps({"id": "copy", "text": articles[0]["text"]}), json.dumps(articles[3])]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "b.tsv").write_text((RESOURCES / "unlabeled_news.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "c.jsonl").write_text(json.dumps(articles[4]) + "\n[1]\n", encoding="utf-8")
    return folder


def settings(producer: str, **changes) -> InferenceConfig:
    # Two documents a shard, one a model call: several shards, several calls per shard.
    return InferenceConfig(producer=producer, shard_size=2, batch_size=1, backend="torch", **changes)


def tiny_predictor(model_dir: Path, inference: InferenceConfig, splitter=None) -> Predictor:
    return Predictor(load_joint_model(model_dir), inference, ModelIdentity(str(model_dir), "tiny"), splitter)


def run_job(model_dir: Path, inputs: Path, output: Path, producer: str, predictor=None, **changes):
    job = PredictJob.create(str(model_dir), [str(inputs)], settings(producer, **changes), output_format="jsonl")
    return run_predict_job(job, output, progress=False, predictor=predictor)


def producers_of(pid: int | None = None) -> list[psutil.Process]:
    """The producer processes among a process's children (not multiprocessing's resource tracker)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def wait_gone(processes: list[psutil.Process], seconds: float = 15.0) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    return alive


def test_the_producer_process_gives_the_records_errors_shards_and_events_of_the_in_process_path(model_dir, archive, tmp_path):
    inline = run_job(model_dir, archive, tmp_path / "none", "none")
    produced = run_job(model_dir, archive, tmp_path / "process", "process")
    assert (inline.producer, produced.producer) == ("none", "process")
    assert (produced.documents, produced.errors, produced.shards) == (10, 4, 6)
    records = read_records(tmp_path / "process")
    assert records == read_records(tmp_path / "none") and len(records) == produced.sentences > produced.documents
    assert read_errors(tmp_path / "process") == read_errors(tmp_path / "none")
    assert [e["id"] for e in read_errors(tmp_path / "process")] == [None, "empty", "b-4", None]
    assert read_events(tmp_path / "process") == read_events(tmp_path / "none")
    manifests = [json.loads((tmp_path / name / "manifest.json").read_text(encoding="utf-8")) for name in ("none", "process")]
    assert manifests[0]["shards"] == manifests[1]["shards"]
    assert {r["doc_id"]: r["story_id"] for r in records}["copy"] == "geneva_prisoner_exchange"
    assert not producers_of(), "the producer process outlived its job"


def test_the_in_process_path_gives_what_the_predictor_gives_one_model_call_at_a_time(model_dir, archive, tmp_path):
    """The reference is the batch job as it was before the producer: shards of good documents, each cut into
    calls of batch_size documents, each call predicted by predict_by_document."""
    inference = settings("none", stories=StoriesConfig(enabled=False))
    predictor = tiny_predictor(model_dir, inference)
    run_job(model_dir, archive, tmp_path / "out", "none", predictor=predictor, stories=StoriesConfig(enabled=False))
    documents = [item for item in read_documents([archive]) if isinstance(item, Document)]
    expected = []
    for shard in shards_of(documents, inference.shard_size):
        for start in range(0, len(shard.documents), inference.batch_size):
            for records in predictor.predict_by_document(shard.documents[start : start + inference.batch_size]):
                expected += [json.loads(json.dumps(record.to_json())) for record in records]  # as JSONL gives them back
    assert read_records(tmp_path / "out") == expected


def test_a_job_killed_with_its_producer_resumes_to_the_uninterrupted_output_and_the_producer_dies_with_it(
    model_dir, archive, tmp_path
):
    uninterrupted = tmp_path / "uninterrupted"
    run_job(model_dir, archive, uninterrupted, "none")
    config = tmp_path / "inference.yaml"
    config.write_text((REPO_ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    killed = tmp_path / "killed"
    arguments = ["predict", "-m", str(model_dir), "-i", str(archive), "-o", str(killed), "--format", "jsonl",
                 "--no-progress", "-c", str(config), "--set", "inference.shard_size=2", "--batch-size", "1",
                 "--set", "inference.backend=torch", "--set", "inference.producer=process"]
    marker = tmp_path / "paused"
    environment = {**os.environ, PAUSE_ENV: "after-commit:2", PAUSE_MARKER_ENV: str(marker)}
    process = subprocess.Popen([sys.executable, "-c", "from conflict_events.cli import app; app()", *arguments],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the job did not reach after-commit:2 in 120 s"
            time.sleep(0.02)
        producers = producers_of(process.pid)
        assert len(producers) == 1, producers
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert not wait_gone(producers), "the producer outlived its killed parent"
    resumed = CliRunner().invoke(app, [*arguments, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "(3 already done, skipped)" in resumed.output
    assert read_records(killed) == read_records(uninterrupted)
    assert read_errors(killed) == read_errors(uninterrupted)
    assert read_events(killed) == read_events(uninterrupted)


class FailingSplitter(SentenceSplitter):
    """Splits like the real one and fails on one document (picklable: it reaches the producer process)."""

    def split(self, document: str):
        if document.startswith("Rebel fighters"):
            raise ValueError("splitter failed on purpose")
        return super().split(document)


@pytest.mark.parametrize("producer", ["none", "process"])
def test_an_exception_on_the_input_side_fails_the_job_as_in_process_and_ends_the_producer(model_dir, archive, tmp_path, producer):
    predictor = tiny_predictor(model_dir, settings(producer), FailingSplitter())
    with pytest.raises(ValueError, match="splitter failed on purpose") as raised:
        run_job(model_dir, archive, tmp_path / "out", producer, predictor=predictor)
    if producer == "process":  # the producer's own traceback comes along
        assert isinstance(raised.value.__cause__, ProducerError) and ", in split\n" in str(raised.value.__cause__)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "failed" and manifest["failure"] == "ValueError: splitter failed on purpose"
    assert not producers_of()


class FailingPredictor(Predictor):
    def predict_split(self, documents, spans, identity=None, timings=None):
        if any(document.id == "b-2" for document in documents):
            raise KeyboardInterrupt  # what Ctrl-C raises on the model side
        return super().predict_split(documents, spans, identity, timings)


def test_an_interrupt_on_the_model_side_stops_the_producer(model_dir, archive, tmp_path):
    predictor = FailingPredictor(load_joint_model(model_dir), settings("process"), ModelIdentity("tiny", "0"))
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_job(model_dir, archive, tmp_path / "out", "process", predictor=predictor)
    assert time.monotonic() - started < 60
    assert not producers_of()
    assert json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))["status"] == "failed"


def test_ctrl_c_in_a_terminal_ends_the_job_and_its_producer(model_dir, archive, tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the producer ignores it, the job stops it."""
    marker = tmp_path / "paused"
    arguments = ["predict", "-m", str(model_dir), "-i", str(archive), "-o", str(tmp_path / "out"), "--format", "jsonl",
                 "--no-progress", "--batch-size", "1", "--set", "inference.producer=process", "--set", "inference.shard_size=2", "-c",
                 str(REPO_ROOT / "configs" / "quickstart.yaml"), "--set", "inference.backend=torch"]
    environment = {**os.environ, PAUSE_ENV: "before-commit:0", PAUSE_MARKER_ENV: str(marker)}
    process = subprocess.Popen([sys.executable, "-c", "from conflict_events.cli import app; app()", *arguments],
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        producers = producers_of(process.pid)
        assert len(producers) == 1, producers
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode != 0
    assert not wait_gone(producers)
    assert "inference/producer.py" not in process.stderr.read().decode(), "the producer printed a traceback"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))["status"] == "failed"


@pytest.mark.parametrize("producer", ["none", "process"])
def test_the_time_breakdown_names_every_stage_and_adds_up_to_no_more_than_the_wall_time(model_dir, archive, tmp_path, producer):
    summary = run_job(model_dir, archive, tmp_path / "out", producer)
    stages = summary.seconds_by_stage
    assert list(stages) == list(STAGES) and all(seconds >= 0 for seconds in stages.values())
    assert summary.stages_in_producer == (PRODUCING_STAGES if producer == "process" else ())
    here = sum(seconds for name, seconds in stages.items() if name not in summary.stages_in_producer and name != "other")
    assert here <= summary.seconds
    assert here + stages["other"] == pytest.approx(summary.seconds)
    for name in ("read", "split", "stories", "tokenise", "model", "decode", "write"):
        assert 0 < stages[name] <= summary.seconds, name
    assert stages["load"] > 0  # the job loaded the model
    last_run = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))["last_run"]
    assert last_run == summary.timing_json() and last_run["producer"] == producer
    assert last_run["sentences_predicted"] == summary.sentences
    assert any(line.startswith("stages:    scan ") for line in summary.lines())


def test_resuming_with_another_producer_setting_is_allowed(model_dir, archive, tmp_path):
    run_job(model_dir, archive, tmp_path / "out", "none")
    summary = run_predict_job(
        PredictJob.create(str(model_dir), [str(archive)], settings("process"), output_format="jsonl"),
        tmp_path / "out", resume=True, progress=False,
    )
    assert summary.shards_skipped == 6 and summary.documents_predicted == 0


def test_auto_runs_the_producer_from_three_cpus_unless_the_input_is_one_model_call():
    assert producer_mode("auto", None, 64, cpus=3) == "process"
    assert producer_mode("auto", 65, 64, cpus=8) == "process"
    assert producer_mode("auto", 64, 64, cpus=8) == "none"
    # On two CPUs the producer takes CPU from the model's two threads (measured: 0.73 of the predictor's rate
    # with it, 0.83 without), on one there is nothing to run beside the model.
    assert producer_mode("auto", 1000, 64, cpus=2) == "none"
    assert producer_mode("auto", 1000, 64, cpus=1) == "none"
    assert producer_mode("process", 1, 64, cpus=1) == "process"
    assert producer_mode("none", None, 64, cpus=8) == "none"


def test_input_records_are_counted_where_it_is_cheap(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"}', encoding="utf-8")  # no final newline
    (tmp_path / "b.tsv").write_text("one\t1\ntwo\t0\n", encoding="utf-8")
    pq.write_table(pa.table({"text": ["x", "y", "z", "w"]}), tmp_path / "c.parquet")
    (tmp_path / "d.txt").write_text("A document.", encoding="utf-8")
    (tmp_path / "e.csv").write_text('id,text\n1,"two\nlines"\n', encoding="utf-8")
    with gzip.open(tmp_path / "f.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write('{"text": "g"}\n')
    (tmp_path / "g.parquet").write_bytes(b"not parquet")
    counted = [tmp_path / name for name in ("a.jsonl", "b.tsv", "c.parquet", "d.txt")]
    assert count_records(counted) == 3 + 2 + 4 + 1
    assert count_records(counted, max_bytes=10) is None
    for uncounted in ("e.csv", "f.jsonl.gz", "g.parquet"):
        assert count_records([*counted, tmp_path / uncounted]) is None, uncounted


def test_the_progress_bar_shows_records_done_of_the_counted_total_and_sentences_per_second(model_dir, archive, tmp_path):
    result = CliRunner().invoke(
        app, ["predict", "-m", str(model_dir), "-i", str(archive), "-o", str(tmp_path / "out"), "--format", "jsonl",
              "--backend", "torch", "--progress"],
    )
    assert result.exit_code == 0, result.output
    # 7 + 5 + 2 lines: every document and bad record is a step of the bar.
    assert "14/14" in result.output and "sentences/s" in result.output


def test_the_config_offers_auto_and_every_producer_mode():
    from typing import get_args

    from conflict_events.inference.producer import MODES

    assert get_args(InferenceConfig.model_fields["producer"].annotation) == ("auto", *MODES)
    assert InferenceConfig().producer == "auto"


def test_the_producer_side_imports_no_torch():
    """What the producer process imports: its own module, and the classes the plan holds (settings, splitter)."""
    script = ("import sys, conflict_events.inference.producer, conflict_events.config, conflict_events.sentences; "
              "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_model_calls_take_a_shards_documents_once_in_order_batch_size_at_a_time():
    assert model_calls(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert model_calls(8, 4) == [(0, 4), (4, 8)]
    assert model_calls(3, 64) == [(0, 3)]
    assert model_calls(0, 4) == []


def stream_of(archive: Path, committed: frozenset[int] = frozenset(), stories: StoriesConfig | None = StoriesConfig(), monkeypatch=None):
    """The item types prepared_items sends for a.jsonl (5 documents, 2 bad records) in shards of 2, one
    document a model call; with ``monkeypatch``, "index" where the story index is built."""
    stream: list[str] = []
    if monkeypatch is not None:
        class RecordedIndex(StoryIndex):
            def __init__(self, settings):
                stream.append("index")
                super().__init__(settings)

        monkeypatch.setattr(producer, "StoryIndex", RecordedIndex)
    plan = ShardPlan(((str(archive / "a.jsonl"),),), ReaderSettings(), shard_size=2, batch_size=1, stories=stories,
                     committed=committed, splitter=SentenceSplitter())
    for item in prepared_items(plan):
        stream.append(type(item).__name__)
    return stream


def test_story_ids_come_after_a_shards_model_calls_so_the_first_call_does_not_wait_for_the_story_index(archive, monkeypatch):
    shard = ["PreparedShard", "SplitChunk", "SplitChunk", "ShardStories"]
    assert stream_of(archive, monkeypatch=monkeypatch) == [
        "PreparedShard", "SplitChunk", "SplitChunk", "index", "ShardStories", *shard,
        "PreparedShard", "SplitChunk", "ShardStories", "ProducerDone",
    ]


def test_a_committed_shard_sends_neither_splits_nor_story_ids_but_its_documents_still_join_the_index(archive, monkeypatch):
    # The index is built on the committed shard's documents, before the next shard is read.
    assert stream_of(archive, committed=frozenset({0, 2}), monkeypatch=monkeypatch) == [
        "PreparedShard", "index", "PreparedShard", "SplitChunk", "SplitChunk", "ShardStories", "PreparedShard", "ProducerDone"
    ]
    assert stream_of(archive, stories=None)[:4] == ["PreparedShard", "SplitChunk", "SplitChunk", "ShardStories"]


def test_a_stream_out_of_order_is_an_error_not_records_of_another_document():
    documents = [Document(f"d{n}", "Text.") for n in range(3)]
    shard = PreparedShard(0, 0, documents, [], False, ["a.jsonl"])
    wrong_stop = iter([SplitChunk(0, 0, 3, None)])
    with pytest.raises(ProducerError, match="expected documents 0-1 of shard 0"):
        list(split_chunks(shard, wrong_stop, 2))
    with pytest.raises(ProducerError, match="expected the story ids of shard 0"):
        shard_stories(shard, iter([SplitChunk(0, 2, 3, None)]))
    with pytest.raises(ProducerError, match="shard 0 has 3 documents but 2 story ids"):
        shard_stories(shard, iter([ShardStories(0, [StoryAssignment("d0", None)] * 2)]))
    assert shard_stories(shard, iter([ShardStories(0, None)])) is None
