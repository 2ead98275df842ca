"""``conflict-events bench``: sentences per second of the project's predictor against what a user would
do by hand with transformers, on the same trained model and the same sentences, in one process.

Input: the articles of ``<data-root>/IndiaPoliceEvents_docs/dev.tsv`` (first column; lower-cased news),
or the bundled ``data/sample/articles/*.txt`` when that file is absent, split into sentences with the
predictor's own :class:`~conflict_events.sentences.SentenceSplitter`.

Phases (each timed as the median of ``repetitions`` runs over all sentences, after a warm-up on a few):

- ``baseline``: a ``text-classification`` pipeline and a ``token-classification`` pipeline
  (``aggregation_strategy="simple"``), default batching, each over every sentence, on the two heads
  exported as standard HF models (:mod:`conflict_events.inference.hf_export`).
- ``peers`` (``--no-peers`` leaves them out): stronger versions of the baseline, the same two pipelines
  with each model's forward run by ONNX Runtime instead of torch (the tokenization, batching and
  aggregation stay the pipelines'): ``ort-fp32`` on the models exported to ONNX
  (:func:`~conflict_events.inference.hf_export.export_hf_onnx`) and fused by ORT's transformer optimizer,
  ``ort-int8`` on that export dynamically quantized with the ``onnx-int8`` backend's recipe
  (:func:`~conflict_events.backends.quantize_onnx`, classifier and pooler in fp32). Each reports its
  agreement with the baseline's outputs (top event label; entity groups and offsets).
- ``ours``: :class:`~conflict_events.inference.predictor.Predictor` as ``predict`` runs it (windows,
  records and all; the default ``inference.backend``, ``auto``, resolved for this machine), with sentence
  splitting turned into a pass-through since the input is already split.
- ``fp32``: the same predictor on the ``torch`` backend (the plain fp32 path), always timed.
- ``compare`` (optional, ``--compare int8`` by default): further backends, each with its agreement with
  the fp32 predictions.

Also reported: the machine's fp32 (and, where the CPU has native bf16, bf16) matmul rate (``2048x2048``
``torch.mm``, median of several) and the rate the fp32 path achieves, counted as
``2 * non-embedding parameters * real tokens / seconds`` (real tokens: sub-words including
``[CLS]``/``[SEP]``, excluding padding, truncated at ``max_length``; attention-score FLOPs are not
counted, so this is a lower bound). From the same count, ``fp32 ceiling``: the sentences/s of a path whose
matmuls all ran at that rate and whose other work took no time, and its ratio to the baseline: the most an
fp32 path can reach on this machine (an estimate: another library's GEMMs, at the model's shapes, may run
somewhat faster than this ``torch.mm``).

Memory: per phase, a thread samples the process RSS every few milliseconds from just before the phase
loads its models to the end of its last run. ``rss_peak_mb`` is the highest sample, ``rss_added_mb`` that
peak minus the RSS at the start of the phase. Phases run in one process, so memory freed by an earlier
phase and kept by the allocator can be reused by a later one: the later phase's ``rss_added_mb`` is a lower
bound. ``process_max_rss_mb`` is ``ru_maxrss`` at the end (the high-water mark of the whole run).

The backend ``ours`` ran, and why (:func:`~conflict_events.backends.resolve_backend`), is printed in the
``ours = ...`` line. The last three printed lines are ``ours = ...``, ``ratio_vs_best_peer <ours/fastest of
baseline and peers>`` and ``ratio <ours/baseline>``.
"""

from __future__ import annotations

import csv
import gc
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import psutil
import torch

from conflict_events.backends import (
    BACKENDS,
    configure_threads,
    native_bf16,
    onnx_session,
    optimize_onnx,
    quantize_onnx,
    resolve_backend,
)
from conflict_events.config import DEFAULT_INFERENCE_BACKEND, InferenceConfig
from conflict_events.errors import ConflictEventsError
from conflict_events.inference.hf_export import SEQUENCE_DIR, TOKEN_DIR, export_hf_models, export_hf_onnx
from conflict_events.inference.predictor import ModelIdentity, Predictor
from conflict_events.model import LoadedModel, load_joint_model
from conflict_events.records import SentenceRecord
from conflict_events.schema import Document
from conflict_events.sentences import SentenceSpan, SentenceSplitter

INDIA_POLICE_DEV = Path("IndiaPoliceEvents_docs") / "dev.tsv"
SAMPLE_ARTICLES = Path(__file__).resolve().parents[1] / "data" / "sample" / "articles"
WARMUP_SENTENCES = 16
MATMUL_SIZE = 2048
PEERS = ("ort-fp32", "ort-int8")
# Kept in fp32 by the ort-int8 peer, as the onnx-int8 backend keeps its heads (backends.ONNX_INT8_FP32_NODES).
PEER_FP32_NODES = ("/classifier/*", "/pooler/*")

Echo = Callable[[str], None]


# --- input -------------------------------------------------------------------------------------
def load_articles(data_root: str | Path | None) -> tuple[list[str], str]:
    """Article texts and where they came from: IndiaPoliceEvents dev, else the bundled sample articles."""
    if data_root is not None:
        path = Path(data_root) / INDIA_POLICE_DEV
        if path.is_file():
            # The upstream file is CSV-quoted (articles contain doubled quotes), tab-separated.
            csv.field_size_limit(sys.maxsize)
            with path.open(encoding="utf-8", newline="") as handle:
                articles = [row[0] for row in csv.reader(handle, delimiter="\t") if row and row[0].strip()]
            return articles, str(path)
    files = sorted(SAMPLE_ARTICLES.glob("*.txt"))
    if not files:
        raise ConflictEventsError(f"no benchmark input: neither {INDIA_POLICE_DEV} under the data root nor {SAMPLE_ARTICLES}")
    return [file.read_text(encoding="utf-8") for file in files], str(SAMPLE_ARTICLES)


def split_sentences(articles: Sequence[str], max_sentences: int | None = None) -> list[str]:
    """Sentences of the articles in order, with the predictor's splitter (first ``max_sentences`` only)."""
    splitter = SentenceSplitter()
    sentences: list[str] = []
    for article in articles:
        for span in splitter.split(article):
            sentences.append(article[span.char_start : span.char_end])
            if max_sentences is not None and len(sentences) >= max_sentences:
                return sentences
    return sentences


class PresplitSentences:
    """A splitter for text that is already one sentence: the whole (stripped) text is the sentence."""

    def split(self, document: str) -> list[SentenceSpan]:
        stripped = document.strip()
        if not stripped:
            return []
        start = document.index(stripped)
        return [SentenceSpan(start, start + len(stripped))]


# --- measurement -------------------------------------------------------------------------------
class RssSampler:
    """Highest RSS of this process seen by a background thread between ``start`` and ``stop``."""

    def __init__(self, interval: float = 0.005):
        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_bytes = 0
        self.peak_bytes = 0

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> "RssSampler":
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


@contextmanager
def rss_phase(result: dict[str, Any]) -> Iterator[None]:
    gc.collect()
    sampler = RssSampler().start()
    try:
        yield
    finally:
        sampler.stop()
        result["rss_peak_mb"] = sampler.peak_bytes / 2**20
        result["rss_added_mb"] = (sampler.peak_bytes - sampler.start_bytes) / 2**20


def timed_runs(run: Callable[[], Any], warmup: Callable[[], Any], repetitions: int) -> tuple[list[float], Any]:
    """Seconds of each of ``repetitions`` calls to ``run`` after one call to ``warmup``; and the last output."""
    warmup()
    seconds = []
    output = None
    for _ in range(repetitions):
        started = time.perf_counter()
        output = run()
        seconds.append(time.perf_counter() - started)
    return seconds, output


def matmul_gflops(size: int = MATMUL_SIZE, repetitions: int = 7, dtype: torch.dtype = torch.float32) -> float:
    """``torch.mm`` rate of this machine in ``dtype`` with torch's current thread count (median, GFLOP/s)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    torch.mm(a, b)
    seconds = []
    for _ in range(repetitions):
        started = time.perf_counter()
        torch.mm(a, b)
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def non_embedding_parameters(loaded: LoadedModel) -> int:
    """Parameters that cost a multiply-add per token: everything except the embedding tables."""
    embedding_ids = {id(p) for module in loaded.model.modules() if isinstance(module, torch.nn.Embedding) for p in module.parameters()}
    return sum(p.numel() for p in loaded.model.parameters() if id(p) not in embedding_ids)


def real_tokens(loaded: LoadedModel, sentences: Sequence[str]) -> int:
    encoded = loaded.tokenizer(list(sentences), truncation=True, max_length=loaded.settings.max_length)
    return sum(len(ids) for ids in encoded["input_ids"])


# --- the two paths -----------------------------------------------------------------------------
def _documents(sentences: Sequence[str]) -> list[Document]:
    return [Document(f"s{index}", sentence) for index, sentence in enumerate(sentences)]


def ours_runner(
    loaded: LoadedModel, model_uri: str, settings: InferenceConfig
) -> Callable[[Sequence[str]], list[SentenceRecord]]:
    """The predictor on ``settings`` (its backend applied to ``loaded``) over already split sentences."""
    predictor = Predictor(loaded, settings, ModelIdentity(model_uri, "bench"), splitter=PresplitSentences())
    return lambda sentences: predictor.predict_documents(_documents(sentences))


def _pipelines(export_dir: Path) -> tuple[Any, Any]:
    from transformers import pipeline

    events = pipeline("text-classification", model=str(export_dir / SEQUENCE_DIR), device="cpu")
    actors = pipeline(
        "token-classification", model=str(export_dir / TOKEN_DIR), aggregation_strategy="simple", device="cpu"
    )
    return events, actors


def baseline_runner(export_dir: Path) -> Callable[[Sequence[str]], tuple[list, list]]:
    events, actors = _pipelines(export_dir)
    return lambda sentences: (events(list(sentences), truncation=True), actors(list(sentences)))


def export_peer_models(export_dir: Path, target: Path) -> dict[str, dict[str, Path]]:
    """ONNX files of the two HF models under ``export_dir``, per peer (``ort-fp32``: exported and fused;
    ``ort-int8``: that, dynamically quantized), written under ``target``: peer -> model directory -> file."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    files: dict[str, dict[str, Path]] = {peer: {} for peer in PEERS}
    target.mkdir(parents=True, exist_ok=True)
    for directory, auto in ((SEQUENCE_DIR, AutoModelForSequenceClassification), (TOKEN_DIR, AutoModelForTokenClassification)):
        model = auto.from_pretrained(str(export_dir / directory))
        exported, fused, quantized = (target / f"{directory}-{stage}.onnx" for stage in ("exported", "fused", "int8"))
        export_hf_onnx(model, exported)
        optimize_onnx(exported, fused, model.config.num_attention_heads, model.config.hidden_size)
        quantize_onnx(fused, quantized, patterns=PEER_FP32_NODES)
        files["ort-fp32"][directory], files["ort-int8"][directory] = fused, quantized
    return files


def _forward_in_onnx(model: torch.nn.Module, path: Path, output_type: type) -> None:
    """Make ``model`` (an HF classifier inside a pipeline) compute its logits with ONNX Runtime on ``path``."""
    session = onnx_session(path)

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any):  # token_type_ids: all zero
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        (logits,) = session.run(["logits"], feeds)
        return output_type(logits=torch.from_numpy(logits))

    model.forward = forward  # nn.Module.__call__ calls the instance's forward


def peer_runner(export_dir: Path, files: dict[str, Path]) -> Callable[[Sequence[str]], tuple[list, list]]:
    """The baseline's two pipelines with each model's forward in ONNX Runtime on ``files`` (dir -> file)."""
    from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

    events, actors = _pipelines(export_dir)
    _forward_in_onnx(events.model, files[SEQUENCE_DIR], SequenceClassifierOutput)
    _forward_in_onnx(actors.model, files[TOKEN_DIR], TokenClassifierOutput)
    return lambda sentences: (events(list(sentences), truncation=True), actors(list(sentences)))


def peer_agreement(reference: tuple[list, list], other: tuple[list, list]) -> dict[str, float]:
    """Share of sentences whose top event label is equal, and whose entities (group, start, end) are equal."""
    def entities(found: list[dict]) -> list[tuple]:
        return [(entity["entity_group"], entity["start"], entity["end"]) for entity in found]

    total = max(len(reference[0]), 1)
    return {
        "events": sum(r["label"] == o["label"] for r, o in zip(reference[0], other[0])) / total,
        "actors": sum(entities(r) == entities(o) for r, o in zip(reference[1], other[1])) / total,
    }


def agreement(reference: Sequence[SentenceRecord], other: Sequence[SentenceRecord]) -> dict[str, float]:
    """Share of sentences whose decided events are equal, and whose actor spans (role, start, end) are equal."""
    def spans(record: SentenceRecord) -> list[tuple]:
        return [(a.role, a.char_start, a.char_end) for a in record.actors]

    total = max(len(reference), 1)
    return {
        "events": sum(r.event_types == o.event_types for r, o in zip(reference, other)) / total,
        "actors": sum(spans(r) == spans(o) for r, o in zip(reference, other)) / total,
    }


def _phase(name: str, make_runner: Callable[[], Callable], sentences: Sequence[str], repetitions: int) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name}
    with rss_phase(result):
        run = make_runner()
        seconds, output = timed_runs(lambda: run(sentences), lambda: run(sentences[:WARMUP_SENTENCES]), repetitions)
    result["seconds"] = seconds
    result["median_seconds"] = statistics.median(seconds)
    result["sentences_per_second"] = len(sentences) / result["median_seconds"]
    result["output"] = output
    return result


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


# --- the benchmark -----------------------------------------------------------------------------
def _backend_label(backend: str) -> str:
    return {
        "torch": "torch fp32", "bf16": "bf16 autocast", "int8": "dynamic int8", "onnx": "ONNX Runtime fp32",
        "onnx-int8": "ONNX Runtime dynamic int8", "openvino": "OpenVINO fp32", "openvino-int8": "OpenVINO NNCF int8",
        "openvino-w8": "OpenVINO NNCF int8 weights",
    }.get(backend, backend)


_PEER_LABELS = {
    "ort-fp32": "HF pipelines, models in ONNX Runtime, fused fp32",
    "ort-int8": "HF pipelines, models in ONNX Runtime, dynamic int8",
}


def run_benchmark(
    model_uri: str,
    data_root: str | Path | None = None,
    max_sentences: int | None = None,
    repetitions: int = 3,
    batch_size: int = 64,
    compare: Sequence[str] = ("int8",),
    num_threads: int | None = None,
    echo: Echo = print,
    backend: str | None = None,
    peers: bool = True,
) -> dict[str, Any]:
    """Run every phase, print a report through ``echo`` (``ratio <ours/baseline>`` last) and return it.

    ``backend`` is the one ``ours`` runs on (default: ``inference.backend``'s default, i.e. what
    ``predict`` runs), resolved for this machine (``auto``, and ``bf16`` without native bf16); the fp32 path
    is always timed as well (phase ``fp32``; the same dict as ``ours`` when ``torch`` runs), because the
    fraction of the fp32 matmul peak is measured on it. ``compare`` lists further backends to time, each
    with its agreement with fp32 predictions. ``peers`` times the baseline's pipelines on ONNX Runtime too.

    The returned dict holds ``sentences``, ``tokens``, ``source``, ``threads``, ``backend`` (``{requested,
    ran, reason}``), ``matmul_gflops`` (fp32), ``bf16_matmul_gflops``, ``fp32_gflops``, ``peak_fraction``
    (fp32 path / fp32 peak), ``ours_gflops``, ``fp32_ceiling`` (sentences/s with every matmul at the fp32
    peak) and ``fp32_ceiling_ratio`` (that / baseline), ``process_max_rss_mb``, ``load_average``, ``ratio``,
    ``best_peer`` and ``ratio_vs_best_peer`` (ours / the fastest of baseline and peers), and one dict per phase
    under ``baseline``, ``ours``, ``fp32``, ``compare`` (backend as asked for -> phase) and ``peers`` (peer ->
    phase) with ``sentences_per_second``, ``seconds``, ``median_seconds``, ``rss_peak_mb`` and
    ``rss_added_mb`` (non-fp32 phases add ``agreement``; with fp32 for backends, with the baseline for peers).
    """
    if repetitions < 1:
        raise ConflictEventsError(f"repetitions must be at least 1 (got {repetitions})")
    for name in (backend or DEFAULT_INFERENCE_BACKEND, *compare):
        if name not in BACKENDS:
            raise ConflictEventsError(f"unknown backend '{name}' (expected one of: {', '.join(BACKENDS)})")
    choice = resolve_backend(backend or DEFAULT_INFERENCE_BACKEND)
    compared = {name: resolve_backend(name).name for name in compare}
    threads = configure_threads(num_threads)
    articles, source = load_articles(data_root)
    sentences = split_sentences(articles, max_sentences)
    if not sentences:
        raise ConflictEventsError(f"no sentences in {source}")
    echo(f"input: {len(sentences)} sentences from {len(articles)} articles ({source}); torch threads: {threads}")
    peak = matmul_gflops()
    echo(f"matmul peak: {peak:.1f} GFLOP/s (fp32 torch.mm {MATMUL_SIZE}x{MATMUL_SIZE}, median of 7)")
    report: dict[str, Any] = {
        "source": source, "sentences": len(sentences), "threads": threads, "matmul_gflops": peak,
        "backend": choice.to_json(),
    }
    if native_bf16():
        report["bf16_matmul_gflops"] = matmul_gflops(dtype=torch.bfloat16)
        echo(f"bf16 matmul peak: {report['bf16_matmul_gflops']:.1f} GFLOP/s (bf16 torch.mm, fp32 accumulation)")

    loaded = load_joint_model(model_uri)
    report["tokens"] = tokens = real_tokens(loaded, sentences)
    flops = 2 * non_embedding_parameters(loaded) * tokens
    echo(f"tokens: {tokens} real sub-words ({tokens / len(sentences):.1f} per sentence), "
         f"{flops / tokens / 2e6:.1f}M non-embedding parameters")

    def timed(name: str) -> dict[str, Any]:
        # Each phase loads its own model, so its RSS counts the load.
        settings = InferenceConfig(batch_size=batch_size, backend=name)
        return _phase(
            name, lambda: ours_runner(load_joint_model(model_uri), model_uri, settings), sentences, repetitions
        )

    with tempfile.TemporaryDirectory(prefix="bench-hf-export-") as export_dir, _quiet_transformers():
        export_hf_models(loaded, export_dir)
        del loaded
        fp32 = timed("torch")
        report["fp32_gflops"] = flops / fp32["median_seconds"] / 1e9
        report["peak_fraction"] = report["fp32_gflops"] / peak
        echo(_phase_line(f"fp32 (Predictor, torch fp32, batch {batch_size})", fp32, repetitions))
        echo(f"fp32 achieved: {report['fp32_gflops']:.1f} GFLOP/s = {100 * report['peak_fraction']:.0f}% of the fp32 matmul peak")
        phases = {"torch": fp32}
        for name in dict.fromkeys((choice.name, *compared.values())):
            if name in phases:
                continue
            phases[name] = phase = timed(name)
            phase["agreement"] = share = agreement(fp32["output"], phase["output"])
            echo(_phase_line(f"{name} (Predictor, {_backend_label(name)}, batch {batch_size})", phase, repetitions))
            echo(f"{name} agreement with fp32: events {100 * share['events']:.1f}%, "
                 f"actor spans {100 * share['actors']:.1f}% of sentences")
        ours = phases[choice.name]
        report["ours_gflops"] = flops / ours["median_seconds"] / 1e9
        if choice.name == "bf16" and "bf16_matmul_gflops" in report:
            echo(f"bf16 achieved: {report['ours_gflops']:.1f} GFLOP/s = "
                 f"{100 * report['ours_gflops'] / report['bf16_matmul_gflops']:.0f}% of the bf16 matmul peak")
        baseline = _phase("baseline", lambda: baseline_runner(Path(export_dir)), sentences, repetitions)
        echo(_phase_line("baseline (HF text- + token-classification pipelines)", baseline, repetitions))
        peer_phases: dict[str, dict[str, Any]] = {}
        if peers:
            files = export_peer_models(Path(export_dir), Path(export_dir) / "onnx")
            for peer in PEERS:
                peer_phases[peer] = phase = _phase(
                    peer, lambda peer=peer: peer_runner(Path(export_dir), files[peer]), sentences, repetitions
                )
                phase["agreement"] = share = peer_agreement(baseline["output"], phase["output"])
                echo(_phase_line(f"{peer} ({_PEER_LABELS[peer]})", phase, repetitions))
                echo(f"{peer} agreement with the baseline: events {100 * share['events']:.1f}%, "
                     f"entities {100 * share['actors']:.1f}% of sentences")

    for phase in (baseline, *phases.values(), *peer_phases.values()):
        phase.pop("output", None)
    report.update(
        baseline=baseline, ours=ours, fp32=fp32,
        compare={name: phases[ran] for name, ran in compared.items()}, peers=peer_phases,
    )
    report["process_max_rss_mb"] = _max_rss_mb()
    report["ratio"] = ours["sentences_per_second"] / baseline["sentences_per_second"]
    report["best_peer"], best = max(
        {"baseline": baseline, **peer_phases}.items(), key=lambda item: item[1]["sentences_per_second"]
    )
    report["ratio_vs_best_peer"] = ours["sentences_per_second"] / best["sentences_per_second"]
    # About the most an fp32 path can reach here: every matmul at the measured fp32 rate, nothing else costing time.
    report["fp32_ceiling"] = ceiling = peak * 1e9 / (flops / len(sentences))
    report["fp32_ceiling_ratio"] = ceiling / baseline["sentences_per_second"]
    echo(f"fp32 ceiling: {ceiling:.1f} sentences/s at the fp32 matmul peak, ratio {report['fp32_ceiling_ratio']:.2f} "
         "(beyond it only fewer or cheaper multiply-adds go: lower precision, a smaller model)")
    echo(f"process max RSS: {report['process_max_rss_mb']:.0f} MB")
    report["load_average"] = load = os.getloadavg()[0]
    # This process keeps `threads` cores busy through the last phase; more than that is another job.
    if load - threads > 0.5:
        # Oversubscribed OpenMP threads wait on descheduled peers at every barrier; the baseline's many
        # tiny batch-1 ops suffer far more than our batched GEMMs, which inflates the ratio.
        echo(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs: another job shares this machine; "
             "the figures (the baseline's most of all) are unreliable")
    default = ", as `predict` runs it by default" if choice.requested == DEFAULT_INFERENCE_BACKEND else ""
    echo(f"ours = {choice.name} ({_backend_label(choice.name)}){default}; backend {choice.summary()}")
    echo(f"ratio_vs_best_peer {report['ratio_vs_best_peer']:.2f} (best peer: {report['best_peer']})")
    echo(f"ratio {report['ratio']:.2f}")
    return report


def _phase_line(label: str, phase: dict[str, Any], repetitions: int) -> str:
    runs = ", ".join(f"{s:.2f}" for s in phase["seconds"])
    return (
        f"{label}: {phase['sentences_per_second']:.1f} sentences/s "
        f"(median of {repetitions}: {runs} s); peak RSS {phase['rss_peak_mb']:.0f} MB (+{phase['rss_added_mb']:.0f} MB)"
    )


def _max_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux and bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
