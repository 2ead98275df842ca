"""The batch job's input side: read the input files, cut them into shards, assign story ids and split each
model call's documents into sentences, either in the model's own process, in turn with the model
(``inference.producer: none``), or in a producer process that works ahead of it (``process``).

Both run one generator, :func:`prepared_items`, over the same :class:`ShardPlan`, so the stream the model
side consumes is the same item for item, and so are the records. The stream: for each shard in order a
:class:`PreparedShard` (its documents and bad records), then, unless the shard is already committed, one
:class:`SplitChunk` per model call (:func:`model_calls`: the sentence spans of each of its documents) and
the shard's :class:`ShardStories` (its documents' story ids); a :class:`ProducerDone` with the seconds of
the producing stages (``read``, ``split``, ``stories``) ends it.

Story ids, which are needed only when the shard is written, come after the shard's splits, so the first
model call does not wait for them (the story index, the first time, imports datasketch: most of a second).

Why a process and not a thread: sentence splitting (pysbd) is pure Python and holds the GIL, which the
model side needs between its torch calls (batching, decoding, records); a thread would take turns with
the model instead of running beside it. Tokenisation stays on the model side: the fast tokenizer is a
small share of the time (docs/INFERENCE.md, "Producer"), is already in the predictor's own figure, and
would need transformers, hence torch, imported in the producer.

The producer process (:class:`ProducerProcess`):

- is started with ``spawn``: it imports this module's dependencies only (no torch, so no torch threads)
  and inherits nothing of the model process (threads, open files, locks held by other threads, which
  ``fork`` would copy). Unlike a plain spawned process it does not import the caller's main module
  (Python's rule, so that objects defined there can be unpickled): a script calling the batch job without
  an ``if __name__ == "__main__":`` guard would run again in it. So what the plan holds (the splitter)
  must come from an importable module;
- sends items through a queue of :data:`PREFETCH_ITEMS`, so it is never more than a few model calls ahead
  (memory stays bounded by a few shards);
- ends with the model process: it is a daemon (ended at a normal exit), on Linux the kernel kills it
  when its parent dies (``PR_SET_PDEATHSIG``), and anywhere it exits once its parent pid changes (checked
  while it waits on the full queue). It ignores SIGINT: Ctrl-C in a terminal reaches both processes, and
  the model process stops it on the way out, as it does on any exception;
- never writes to the output directory, so one that outlives a ``kill -9`` of its parent leaves nothing;
- reports its own failure: the exception is raised in the model process (the producer's traceback as its
  cause), and a producer that dies without a word (killed, out of memory) is a :class:`ProducerError`
  naming its exit code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from conflict_events.config import StoriesConfig
from conflict_events.errors import ConflictEventsError
from conflict_events.timing import StageTimes
from conflict_events.schema import Document
from conflict_events.sentences import SentenceSpan, SentenceSplitter
from conflict_events.sources import BadRecord, ReaderSettings, read_file
from conflict_events.stories import StoryAssignment, StoryIndex

# Items the producer may be ahead of the model (a shard and its model calls): enough to have the next call
# split while the model runs this one, few enough that memory stays a few shards'.
PREFETCH_ITEMS = 4
# How often a waiting side looks whether the other is still there.
_POLL_SECONDS = 0.2
# Seconds the producer gets to stop on its own before it is terminated.
_STOP_SECONDS = 5.0
PRODUCING_STAGES = ("read", "split", "stories")
MODES = ("process", "none")


class ProducerError(ConflictEventsError):
    """The producer process failed or vanished; its traceback, where it sent one, is in the message."""


@dataclass(frozen=True)
class ShardPlan:
    """What the input side reads and how it cuts it: everything :func:`prepared_items` needs (picklable)."""

    segments: tuple[tuple[str, ...], ...]  # the input files of each segment, in reading order
    reader: ReaderSettings
    shard_size: int
    batch_size: int  # documents per model call (model_calls)
    stories: StoriesConfig | None  # None: story ids are off
    committed: frozenset[int]  # shards already committed: read (for story ids) but not split
    # The predictor's splitter; None: the predictor splits itself (test doubles without a split step).
    splitter: SentenceSplitter | None


@dataclass
class Shard:
    index: int
    documents: list[Document] = field(default_factory=list)
    errors: list[BadRecord] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        """The input files the shard's documents and errors come from, in reading order."""
        names = [document.source.path for document in self.documents] + [error.source for error in self.errors]
        return list(dict.fromkeys(names))


def shards_of(items: Iterable[Document | BadRecord], shard_size: int, first_index: int = 0) -> Iterator[Shard]:
    """Consecutive shards of ``shard_size`` documents, numbered from ``first_index``; a bad record belongs
    to the shard being filled when it is read. Bad records after the last full shard make a final shard
    without documents."""
    shard = Shard(first_index)
    for item in items:
        if isinstance(item, BadRecord):
            shard.errors.append(item)
            continue
        shard.documents.append(item)
        if len(shard.documents) == shard_size:
            yield shard
            shard = Shard(shard.index + 1)
    if shard.documents or shard.errors:
        yield shard


def model_calls(documents: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each model call over a shard's ``documents``: ``batch_size`` at a time.

    The one definition of the calls, for the producer and the model side. Which sentences share a call
    decides their batches and padding, hence the last bits of their scores: the calls must depend on the
    shard alone, never on the run, or a resumed run's records would differ from an uninterrupted run's.
    A smaller first call (the model would start sooner) changes the scores of the first shard in those
    last bits, and its batches pad more (docs/INFERENCE.md, "Producer, progress and where the time goes")."""
    return [(start, min(documents, start + batch_size)) for start in range(0, documents, batch_size)]


@dataclass(frozen=True)
class PreparedShard:
    index: int
    segment: int
    documents: list[Document]
    errors: list[BadRecord]
    committed: bool
    sources: list[str]


@dataclass(frozen=True)
class SplitChunk:
    """The sentences of one model call's documents: ``documents[start:stop]`` of a shard (model_calls)."""

    shard: int
    start: int
    stop: int
    spans: list[list[SentenceSpan]] | None  # None: no splitter in the plan, the predictor splits


@dataclass(frozen=True)
class ShardStories:
    """The story ids of a shard's documents, sent after its model calls (needed only to write the shard)."""

    shard: int
    assigned: list[StoryAssignment] | None  # one per document; None: story ids are off


@dataclass(frozen=True)
class ProducerDone:
    seconds_by_stage: dict[str, float]


StreamItem = PreparedShard | SplitChunk | ShardStories | ProducerDone


def prepared_items(plan: ShardPlan) -> Iterator[StreamItem]:
    """The stream of the module docstring; the same whichever process runs it."""
    timings = StageTimes()
    stories: StoryIndex | None = None  # built with the first shard's story ids, after its splits
    next_index = 0
    for number, files in enumerate(plan.segments):
        items = _timed((item for path in files for item in read_file(Path(path), plan.reader)), timings, "read")
        for shard in shards_of(items, plan.shard_size, first_index=next_index):
            committed = shard.index in plan.committed
            yield PreparedShard(shard.index, number, shard.documents, shard.errors, committed, shard.sources)
            if not committed:
                for start, stop in model_calls(len(shard.documents), plan.batch_size):
                    spans = None
                    if plan.splitter is not None:
                        with timings.stage("split"):
                            spans = [plan.splitter.split(d.text) for d in shard.documents[start:stop]]
                    yield SplitChunk(shard.index, start, stop, spans)
            # Every document gets its story id, committed shards' too: ids depend on all earlier documents.
            assigned = None
            if plan.stories is not None:
                with timings.stage("stories"):
                    if stories is None:
                        stories = StoryIndex(plan.stories)
                    assigned = [stories.assign(d.id, d.text) for d in shard.documents]
            if not committed:
                yield ShardStories(shard.index, assigned)
            next_index = shard.index + 1
    yield ProducerDone(dict(timings.seconds))


def split_chunks(
    shard: PreparedShard, items: Iterator[StreamItem], batch_size: int
) -> Iterator[tuple[list[Document], SplitChunk]]:
    """The model calls of ``shard`` (:func:`model_calls`), each with the chunk the stream sends for it
    (checked to be that one: a record of one document must never carry another's sentences)."""
    for start, stop in model_calls(len(shard.documents), batch_size):
        chunk = next(items, None)
        if not (isinstance(chunk, SplitChunk) and (chunk.shard, chunk.start, chunk.stop) == (shard.index, start, stop)):
            raise ProducerError(
                f"the input stream is out of order: expected documents {start}-{stop - 1} of shard {shard.index}, got {chunk!r:.200}"
            )
        yield shard.documents[start:stop], chunk


def shard_stories(shard: PreparedShard, items: Iterator[StreamItem]) -> list[StoryAssignment] | None:
    """The story ids the stream sends after ``shard``'s model calls (checked to be that shard's)."""
    stories = next(items, None)
    if not (isinstance(stories, ShardStories) and stories.shard == shard.index):
        raise ProducerError(f"the input stream is out of order: expected the story ids of shard {shard.index}, got {stories!r:.200}")
    if stories.assigned is not None and len(stories.assigned) != len(shard.documents):
        raise ProducerError(f"shard {shard.index} has {len(shard.documents)} documents but {len(stories.assigned)} story ids")
    return stories.assigned


def _timed(items: Iterator[Any], timings: StageTimes, stage: str) -> Iterator[Any]:
    """``items``, with the time spent producing each added to ``stage``."""
    while True:
        started = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            timings.add(stage, time.perf_counter() - started)
            return
        timings.add(stage, time.perf_counter() - started)
        yield item


# --- choosing ----------------------------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform says, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# `auto` runs a producer process from this many CPUs up. On 2 CPUs it costs more than it hides: with the
# faster splitter the input side is ~8 % of predict's time there, and the producer's process takes CPU from
# the model's two threads, which spin-wait for each other (ONNX Runtime's and OpenMP's pools): bench-e2e on the
# 2-core development machine gave 0.83 of the predictor's rate without the producer and 0.73 with it
# (docs/BENCHMARKS.md, "End to end"). Not measured on more CPUs; 3 is the smallest count with a CPU to spare
# beyond two model threads.
AUTO_PRODUCER_MIN_CPUS = 3


def producer_mode(setting: str, records: int | None, batch_size: int, cpus: int | None = None) -> str:
    """``process`` or ``none`` for ``inference.producer``: ``auto`` is ``process`` unless there are at most
    :data:`AUTO_PRODUCER_MIN_CPUS` - 1 CPUs or the input is counted at no more than one model call's
    documents (nothing to overlap, and starting the process would cost more than it saves)."""
    if setting != "auto":
        return setting
    if (cpus if cpus is not None else available_cpus()) < AUTO_PRODUCER_MIN_CPUS:
        return "none"
    if records is not None and records <= batch_size:
        return "none"
    return "process"


# --- the two sources ---------------------------------------------------------------------------------
class InProcessStream:
    """The stream produced in the model's own process, item by item as the model side asks."""

    mode = "none"
    stages_in_producer: tuple[str, ...] = ()

    def __init__(self, plan: ShardPlan):
        self._plan = plan
        self.wait_seconds = 0.0  # nothing waits: producing is in the stages it times

    def __iter__(self) -> Iterator[StreamItem]:
        return prepared_items(self._plan)


class ProducerProcess:
    """The stream produced by a producer process (module docstring); a context manager that starts it and,
    on the way out however that happens, stops it."""

    mode = "process"
    stages_in_producer = PRODUCING_STAGES

    def __init__(self, plan: ShardPlan, prefetch: int = PREFETCH_ITEMS):
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue(maxsize=prefetch)
        self._stop = context.Event()
        self._process = context.Process(
            target=_produce, args=(plan, self._queue, self._stop, os.getpid()), name="conflict-events-producer", daemon=True
        )
        self.wait_seconds = 0.0  # the model side's time blocked on the queue (the producer was behind)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def __enter__(self) -> "ProducerProcess":
        with _sigint_ignored(), _main_module_hidden():
            self._process.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._process.join(_STOP_SECONDS)
        if self._process.is_alive():  # busy splitting a long document: it would see the stop only after it
            self._process.terminate()
            self._process.join(_STOP_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._queue.close()

    def __iter__(self) -> Iterator[StreamItem]:
        while True:
            item = self._get()
            if isinstance(item, _Failure):
                raise item.error from ProducerError(f"the producer process failed:\n{item.traceback}")
            yield item
            if isinstance(item, ProducerDone):
                return

    def _get(self) -> StreamItem | _Failure:
        started = time.perf_counter()
        try:
            while True:
                try:
                    return self._queue.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    if self._process.is_alive():
                        continue
                try:  # it may have sent its last items just before it exited
                    return self._queue.get(timeout=1.0)
                except queue.Empty:
                    raise ProducerError(
                        f"the producer process (pid {self._process.pid}) exited with code {self._process.exitcode} "
                        "before the end of the input"
                    ) from None
        finally:
            self.wait_seconds += time.perf_counter() - started


@contextmanager
def prepared_stream(plan: ShardPlan, mode: str) -> Iterator[InProcessStream | ProducerProcess]:
    """The stream of ``plan`` from a producer process (``process``) or from this process (``none``)."""
    if mode not in MODES:
        raise ValueError(f"producer mode must be one of {', '.join(MODES)}; got '{mode}'")
    if mode == "none":
        yield InProcessStream(plan)
        return
    with ProducerProcess(plan) as producer:
        yield producer


# --- inside the producer process ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Failure:
    error: BaseException
    traceback: str

    @classmethod
    def of(cls, error: BaseException) -> "_Failure":
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            error = pickle.loads(pickle.dumps(error))
        except Exception:  # one that does not survive pickling (required arguments, say) is sent as its text
            error = RuntimeError(f"{type(error).__name__}: {error}")
        return cls(error, text)


def _produce(plan: ShardPlan, items: Any, stop: Any, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    try:
        for item in prepared_items(plan):
            if not _put(items, item, stop, parent):
                break
    except BaseException as error:  # sent to the model process, which raises it
        _put(items, _Failure.of(error), stop, parent)
    if stop.is_set() or os.getppid() != parent:
        # Nobody reads what is still buffered: exit without waiting for it to be flushed into the pipe.
        items.cancel_join_thread()


def _put(items: Any, item: Any, stop: Any, parent: int) -> bool:
    """Put ``item`` once the queue has room; False when the model process stopped us or is gone."""
    while not stop.is_set() and os.getppid() == parent:
        try:
            items.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the parent-pid checks in _put still end it
    if os.getppid() != parent:  # the parent died before the kernel was told to watch it
        os._exit(0)


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """``spawn`` records the main module for the child to import (by name or path) when it starts; an
    empty stand-in, for the time of the start, records nothing."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the producer starts: an ignored signal stays ignored through exec, so a Ctrl-C
    during its start-up does not reach it either (it ignores SIGINT itself from its first line on)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
