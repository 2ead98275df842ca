"""``conflict-events bench-e2e``: ``predict`` over files end to end against the predictor alone, on the same
sentences, with the batch job's own time breakdown.

Input: the articles ``conflict-events bench`` reads (``<data-root>/IndiaPoliceEvents_docs/dev.tsv``, else
the bundled sample articles), written as a JSONL archive (``{"id", "text"}`` per line) in a temporary
directory.

Phases, in one process, on the model resolved once (a registry model is downloaded once):

- ``predictor``: :class:`~conflict_events.inference.predictor.Predictor` over the articles' sentences,
  split beforehand with the predictor's own splitter, the splitter then a pass-through: ``bench``'s
  ``ours`` phase (median of ``repetitions``, after a warm-up; the model load is not timed).
- ``predict`` with each ``inference.producer`` asked for (``none`` and ``process`` by default): the batch
  job (:func:`~conflict_events.inference.batch.run_predict_job`) from the JSONL archive to Parquet shards in
  a fresh directory, as the CLI runs it (the job loads the model; with a producer, the first documents are
  split meanwhile), after one untimed job on a few articles (one-off imports). Timed whole: hashing and
  counting the input, loading, reading, splitting, the model, writing the shards and the events table;
  its sentences/s leave the ``load`` stage out, as the predictor's do. The run whose wall time is the
  median is reported, with its stage breakdown (the job's ``seconds_by_stage``).

The phases run in rounds, each round the predictor then every ``predict`` variant, ``repetitions`` rounds:
on a shared machine whose speed drifts over minutes, a variant timed after the other's runs would see another
machine. Besides the ratio of the median rates, each round's ratio (its job against its predictor run) is
printed.

The report checks that every variant predicted the same number of sentences as the predictor phase and
wrote the same records. The last lines are ``end_to_end_vs_predictor <ratio> (producer <mode>)``, one per
variant: end-to-end sentences/s over the predictor's.
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from conflict_events.backends import configure_threads
from conflict_events.config import DEFAULT_INFERENCE_BACKEND, InferenceConfig
from conflict_events.errors import ConflictEventsError
from conflict_events.inference.batch import STAGES, JobSummary, PredictJob, read_records, run_predict_job
from conflict_events.inference.bench import (
    WARMUP_SENTENCES,
    PresplitSentences,
    load_articles,
    split_sentences,
)
from conflict_events.inference.predictor import ModelIdentity, PinnedModel, Predictor
from conflict_events.inference.producer import MODES
from conflict_events.model import load_joint_model
from conflict_events.schema import Document

Echo = Callable[[str], None]
WARMUP_DOCUMENTS = 2


def write_jsonl_archive(articles: Sequence[str], path: Path) -> Path:
    """The articles as ``predict`` input: one ``{"id": "article-<n>", "text": ...}`` per line."""
    with path.open("w", encoding="utf-8") as out:
        for number, article in enumerate(articles, start=1):
            out.write(json.dumps({"id": f"article-{number}", "text": article}, ensure_ascii=False) + "\n")
    return path


def run_end_to_end(
    model_uri: str,
    data_root: str | Path | None = None,
    max_documents: int | None = None,
    repetitions: int = 1,
    batch_size: int = 64,
    num_threads: int | None = None,
    backend: str | None = None,
    producers: Sequence[str] = MODES[::-1],
    echo: Echo = print,
) -> dict[str, Any]:
    """Time the phases of the module docstring, print the breakdown table through ``echo`` and return the
    report: ``source``, ``documents``, ``sentences``, ``threads``, ``backend``, ``predictor``
    (``sentences_per_second``, ``seconds``, ``median_seconds``), and under ``end_to_end`` one dict per
    producer mode with ``seconds`` (each run), ``median_seconds``, ``seconds_without_load``, ``sentences``,
    ``sentences_per_second``, ``seconds_by_stage``, ``stages_in_producer``, ``end_to_end_vs_predictor`` and ``by_round`` (each round's ratio)."""
    if repetitions < 1:
        raise ConflictEventsError(f"repetitions must be at least 1 (got {repetitions})")
    for mode in producers:
        if mode not in MODES:
            raise ConflictEventsError(f"unknown producer '{mode}' (expected one of: {', '.join(MODES)})")
    threads = configure_threads(num_threads)
    articles, source = load_articles(data_root)
    articles = articles[:max_documents] if max_documents is not None else articles
    sentences = split_sentences(articles)
    if not sentences:
        raise ConflictEventsError(f"no sentences in {source}")
    settings = InferenceConfig(batch_size=batch_size, backend=backend or DEFAULT_INFERENCE_BACKEND)
    model = str(PinnedModel.resolve(model_uri).directory)
    echo(f"input: {len(articles)} articles, {len(sentences)} sentences ({source}); torch threads: {threads}")

    # The warm-up job gets this predictor as is, the predictor phase a copy whose splitter passes the
    # pre-split sentences through, as `bench` runs it.
    predictor = Predictor(load_joint_model(model), settings, ModelIdentity(model, "bench"))
    presplit = copy.copy(predictor)
    presplit.splitter = PresplitSentences()

    def run(texts: Sequence[str]) -> Any:
        return presplit.predict_documents([Document(f"s{index}", text) for index, text in enumerate(texts)])

    report: dict[str, Any] = {
        "source": source, "documents": len(articles), "sentences": len(sentences), "threads": threads,
        "backend": predictor.backend.to_json(), "end_to_end": {},
    }
    predictor_seconds: list[float] = []
    runs: dict[str, list[tuple[JobSummary, Path]]] = {mode: [] for mode in producers}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as workdir:
        archive = write_jsonl_archive(articles, Path(workdir) / "articles.jsonl")
        run(sentences[:WARMUP_SENTENCES])
        # Untimed: the first job pays one-off imports (the Parquet writer, the story index) that the first
        # variant would otherwise carry alone.
        warmup = write_jsonl_archive(articles[:WARMUP_DOCUMENTS], Path(workdir) / "warmup.jsonl")
        warmup_job = PredictJob.create(model, [str(warmup)], settings.model_copy(update={"producer": "none"}), "parquet")
        run_predict_job(warmup_job, Path(workdir) / "out-warmup", progress=False, predictor=predictor)
        jobs = {
            mode: PredictJob.create(model, [str(archive)], settings.model_copy(update={"producer": mode}), "parquet")
            for mode in producers
        }
        # Round after round of every variant in turn, not one variant's runs after another's: on a shared
        # machine whose speed drifts over minutes, the variants of one round see the same machine.
        for repetition in range(repetitions):
            started = time.perf_counter()
            run(sentences)
            predictor_seconds.append(time.perf_counter() - started)
            for mode, job in jobs.items():
                output = Path(workdir) / f"out-{mode}-{repetition}"
                runs[mode].append((run_predict_job(job, output, progress=False), output))
        report["predictor"] = predictor_phase = {
            "seconds": predictor_seconds, "median_seconds": statistics.median(predictor_seconds),
            "sentences_per_second": len(sentences) / statistics.median(predictor_seconds),
        }
        echo(f"predictor (pre-split sentences, {predictor.backend.name}, batch {batch_size}): "
             f"{predictor_phase['sentences_per_second']:.1f} sentences/s")
        reference: list[dict[str, Any]] | None = None
        for mode in producers:
            summary, output = sorted(runs[mode], key=lambda pair: pair[0].seconds)[(repetitions - 1) // 2]
            records = read_records(output)
            if summary.sentences != len(sentences):
                raise ConflictEventsError(
                    f"predict (producer {mode}) predicted {summary.sentences} sentences, the predictor phase {len(sentences)}"
                )
            if reference is not None and records != reference:
                raise ConflictEventsError(f"predict with producer {mode} wrote other records than with {producers[0]}")
            reference = records if reference is None else reference
            without_load = _seconds_without_load(summary)
            e2e_rate = summary.sentences / without_load
            report["end_to_end"][mode] = {
                "seconds": [pair[0].seconds for pair in runs[mode]],
                "median_seconds": summary.seconds,
                "seconds_without_load": without_load,
                "sentences": summary.sentences,
                "sentences_per_second": e2e_rate,
                "seconds_by_stage": summary.seconds_by_stage,
                "stages_in_producer": list(summary.stages_in_producer),
                "end_to_end_vs_predictor": e2e_rate / predictor_phase["sentences_per_second"],
                # Each round's job against that round's predictor run (same sentences: a ratio of times).
                "by_round": [
                    predictor_run / _seconds_without_load(job_run)
                    for (job_run, _), predictor_run in zip(runs[mode], predictor_seconds)
                ],
            }
    for line in breakdown_table(report):
        echo(line)
    for mode, phase in report["end_to_end"].items():
        echo(f"by round (producer {mode}): " + ", ".join(f"{ratio:.2f}" for ratio in phase["by_round"]))
    for mode, phase in report["end_to_end"].items():
        echo(f"end_to_end_vs_predictor {phase['end_to_end_vs_predictor']:.2f} (producer {mode})")
    return report


def _seconds_without_load(summary: JobSummary) -> float:
    """A job's wall time less its model load, which the predictor's figure leaves out too."""
    return summary.seconds - summary.seconds_by_stage["load"]


def breakdown_table(report: dict[str, Any]) -> list[str]:
    """Seconds per stage, one column per producer mode; ``*``: ran in the producer, beside the model."""
    phases = report["end_to_end"]
    width = 18
    lines = ["stage      " + "".join(f"{'producer ' + mode:>{width}}" for mode in phases)]
    for stage in STAGES:
        cells = []
        for phase in phases.values():
            mark = "*" if stage in phase["stages_in_producer"] else " "
            cells.append(f"{phase['seconds_by_stage'][stage]:>{width - 2}.2f}s{mark}")
        lines.append(f"{stage:<11}" + "".join(cells))
    lines.append(f"{'wall':<11}" + "".join(f"{phase['median_seconds']:>{width - 2}.2f}s " for phase in phases.values()))
    lines.append(f"{'wall-load':<11}" + "".join(f"{phase['seconds_without_load']:>{width - 2}.2f}s " for phase in phases.values()))
    lines.append(f"{'sent/s':<11}" + "".join(f"{phase['sentences_per_second']:>{width - 1}.1f} " for phase in phases.values()))
    lines.append(f"(sent/s: sentences / (wall - load); predictor alone: {report['predictor']['sentences_per_second']:.1f} "
                 "sentences/s; * ran in the producer process, beside the model: not in the wall time's sum)")
    return lines
