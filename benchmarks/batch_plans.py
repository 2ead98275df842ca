"""How the model step's batch plan (which sentences share a padded batch) moves its time, on real news.

For the articles ``conflict-events bench`` reads (IndiaPoliceEvents dev, split with the predictor's splitter),
the sentences are grouped two ways: in one model call (as ``bench`` and ``evaluate`` run them) and in the
calls ``predict`` makes (shards of ``inference.shard_size`` documents, calls of ``batch_size`` documents:
``producer.model_calls``). Each grouping is batched by two plans:

- ``fill``: sorted by length, each batch filled in turn up to ``batch_size`` sentences and 4,096 padded
  sub-words (the plan up to the tenth session);
- ``planned``: :func:`conflict_events.prediction.token_budget_batches` as it is now.

The model's forward pass alone (padded tensors built beforehand) is timed over every batch of a plan,
round after round of all plans in turn, so that a shared machine's drift hits every plan alike. Printed per
plan: batches, padded sub-words, the median seconds; then per grouping the median of the rounds' ratios
``planned / fill``.

    python benchmarks/batch_plans.py --model models:/conflict-events/2 --data-root ../shared/data/conflibert \\
        --backend onnx --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Iterator, Sequence

import torch

from conflict_events.backends import apply_backend, configure_threads, resolve_backend
from conflict_events.config import InferenceConfig
from conflict_events.inference.bench import load_articles
from conflict_events.inference.predictor import PinnedModel
from conflict_events.inference.producer import model_calls
from conflict_events.model import load_joint_model
from conflict_events.prediction import EncodedTexts, encode_texts, padded_batch, token_budget_batches
from conflict_events.sentences import SentenceSplitter

FILL_MAX_TOKENS = 4096


def fill_batches(lengths: Sequence[int], max_batch: int, max_tokens: int = FILL_MAX_TOKENS) -> Iterator[list[int]]:
    """The earlier plan: longest first, each batch filled in turn up to the limits."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for index in order:
        if batch and (len(batch) == max_batch or (len(batch) + 1) * lengths[batch[0]] > max_tokens):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def job_calls(documents: int, settings: InferenceConfig) -> list[tuple[int, int]]:
    """``(start, stop)`` document ranges of the model calls ``predict`` makes over ``documents``."""
    calls = []
    for shard_start in range(0, documents, settings.shard_size):
        shard = min(settings.shard_size, documents - shard_start)
        calls += [(shard_start + start, shard_start + stop) for start, stop in model_calls(shard, settings.batch_size)]
    return calls


def plan_tensors(per_document: list[EncodedTexts], calls: list[tuple[int, int]], planner, batch_size: int, pad_id: int):
    tensors = []
    for start, stop in calls:
        call = EncodedTexts(
            [ids for encoded in per_document[start:stop] for ids in encoded.input_ids],
            [offsets for encoded in per_document[start:stop] for offsets in encoded.offsets],
        )
        tensors += [padded_batch(call, batch, pad_id) for batch in planner(call.lengths, batch_size)]
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    configure_threads(args.threads)
    settings = InferenceConfig(backend=args.backend)
    loaded = load_joint_model(str(PinnedModel.resolve(args.model).directory))
    loaded = apply_backend(loaded, resolve_backend(settings.backend))
    articles, source = load_articles(args.data_root)
    splitter = SentenceSplitter()
    texts = [[article[s.char_start : s.char_end] for s in splitter.split(article)] for article in articles]
    per_document = [encode_texts(loaded, document) for document in texts]
    pad_id = loaded.tokenizer.pad_token_id or 0
    calls = job_calls(len(articles), settings)
    groupings = {"one call": [(0, len(articles))], "predict's calls": calls}
    planners = {"fill": fill_batches, "planned": token_budget_batches}
    plans = {
        (grouping, name): plan_tensors(per_document, grouped, planner, settings.batch_size, pad_id)
        for grouping, grouped in groupings.items()
        for name, planner in planners.items()
    }
    print(f"{sum(map(len, texts))} sentences of {len(articles)} articles ({source}); backend {args.backend}, "
          f"batch {settings.batch_size}; predict's calls (documents): {[stop - start for start, stop in calls]}")
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in plans}
    with torch.inference_mode():
        for tensors in plans.values():  # warm-up: one batch of each plan
            loaded.model(input_ids=tensors[0][0], attention_mask=tensors[0][1])
        for round_ in range(args.rounds):
            for key, tensors in plans.items():
                started = time.perf_counter()
                for input_ids, attention_mask in tensors:
                    loaded.model(input_ids=input_ids, attention_mask=attention_mask)
                seconds[key].append(time.perf_counter() - started)
            print(f"round {round_ + 1}: " + ", ".join(f"{g} {n} {seconds[(g, n)][-1]:.2f}s" for g, n in plans), flush=True)
    for (grouping, name), tensors in plans.items():
        padded = sum(input_ids.numel() for input_ids, _ in tensors)
        print(f"{grouping}, {name}: {len(tensors)} batches, {padded} padded sub-words, "
              f"median {statistics.median(seconds[(grouping, name)]):.2f}s")
    for grouping in groupings:
        ratios = [p / f for p, f in zip(seconds[(grouping, "planned")], seconds[(grouping, "fill")])]
        print(f"{grouping}: planned / fill by round " + ", ".join(f"{r:.2f}" for r in ratios)
              + f"; median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
