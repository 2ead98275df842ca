"""What resolution (actor country/sector/org, places, event country) costs `predict`: sentences/s of the
predictor with `inference.resolution.enabled` true and false, on the same loaded model and documents.

    python benchmarks/resolution_overhead.py                          # MiniLM with random heads (the real cost)
    python benchmarks/resolution_overhead.py --model /path/to/joint-model --repetitions 5
    python benchmarks/resolution_overhead.py --data-root ../shared/data/conflibert --threads 2

Default model: the default encoder (all-MiniLM-L6-v2, shipped by a package) with random heads: a trained
model's heads cost the same, and nothing is trained or downloaded. Documents: the IndiaPoliceEvents dev
articles when ``--data-root`` has them (what `conflict-events bench` reads), else the bundled sample articles
and the resolution gold set's documents. Each mode is timed as the median of ``--repetitions`` runs of
``Predictor.predict_documents`` over all documents (whole documents, split by the predictor, as `predict`
runs it), after a warm-up; the two modes alternate so that drift on a shared machine hits both. The
gazetteer is built before timing (once per process, as in `predict`). Also printed: the resolver alone over
the same sentences and spans. The last line is ``overhead <percent>``; issue 17 allows at most 10 %.
Run it on an otherwise idle machine: timings of a busy CPU say little.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from conflict_events.backends import configure_threads
from conflict_events.config import InferenceConfig, ResolutionConfig
from conflict_events.inference.bench import SAMPLE_ARTICLES, load_articles
from conflict_events.inference.predictor import ModelIdentity, Predictor
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.model import default_encoder_path, load_joint_model
from conflict_events.resolution import resolver_for
from conflict_events.resolution.evaluation import DEFAULT_GOLD, read_gold
from conflict_events.schema import Document

REQUIRED_RATIO = 0.90


def documents_for(data_root: str | None) -> tuple[list[Document], str]:
    articles, source = load_articles(data_root)
    if source == str(SAMPLE_ARTICLES) and DEFAULT_GOLD.is_file():
        articles = articles + [document.text for document in read_gold(DEFAULT_GOLD)]
        source += f" + {DEFAULT_GOLD}"
    return [Document(f"doc-{i}", text) for i, text in enumerate(articles)], source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="joint-model directory (default: the default encoder with random heads)")
    parser.add_argument("--data-root", default=None, help="folder with IndiaPoliceEvents_docs/dev.tsv")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default=None, help="inference.backend (default: its default)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        configure_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model or str(save_random_joint_model(default_encoder_path(), Path(scratch) / "model", max_length=128))
        loaded = load_joint_model(model_dir)
        base = InferenceConfig(batch_size=args.batch_size, **({"backend": args.backend} if args.backend else {}))
        on = Predictor(loaded, base, ModelIdentity("bench"))
        off = Predictor(loaded, base.model_copy(update={"resolution": ResolutionConfig(enabled=False)}), ModelIdentity("bench"))
        documents, source = documents_for(args.data_root)
        sentences = sum(len(on.splitter.split(d.text)) for d in documents)
        print(f"input: {source}: {len(documents)} documents, {sentences} sentences")
        on.predict_documents(documents[:2])
        off.predict_documents(documents[:2])
        timings: dict[str, list[float]] = {"without resolution": [], "with resolution": []}
        records = []
        for _ in range(args.repetitions):
            for name, predictor in (("without resolution", off), ("with resolution", on)):
                started = time.perf_counter()
                result = predictor.predict_documents(documents)
                timings[name].append(time.perf_counter() - started)
                if predictor is on:
                    records = result
        rates = {name: sentences / statistics.median(seconds) for name, seconds in timings.items()}
        for name, rate in rates.items():
            print(f"{name:<20} {rate:9.1f} sentences/s (median of {args.repetitions}: {statistics.median(timings[name]):.3f} s)")
        resolver = resolver_for(ResolutionConfig())
        by_doc: dict[str, list] = {}
        for record in records:
            by_doc.setdefault(record.doc_id, []).append(record)
        started = time.perf_counter()
        for document in documents:
            own = by_doc.get(document.id, [])
            resolver.resolve_document(
                document.text, [(r.char_start, r.char_end) for r in own], [[(a.char_start, a.char_end) for a in r.actors] for r in own]
            )
        alone = time.perf_counter() - started
        print(f"{'resolver alone':<20} {sentences / alone if alone else float('inf'):9.1f} sentences/s ({alone:.3f} s)")
        ratio = rates["with resolution"] / rates["without resolution"]
        print(f"overhead {100 * (1 - ratio):.1f} % (with/without = {ratio:.3f}; at most 10 % allowed)")
        return 0 if ratio >= REQUIRED_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
