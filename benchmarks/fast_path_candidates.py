"""Candidates for the fast path on CPUs without native bf16, scored against fp32 (issue 16).

Each candidate is scored the two ways the issue bounds a fast path: on the CAMEO dev split (event macro-F1 and
actor F1, within 0.5 point of fp32) and against the fp32 model's predictions on the out-of-domain
IndiaPoliceEvents dev sentences (the share with the same decided events, and with the same actor spans: role,
start and end; at least 97 %). Each is also timed over those sentences, in the same process as fp32 (median of
``--repetitions`` after a warm-up; the model step only, as ``predict_texts`` runs it, without records), so
run it on an idle machine when the seconds matter. ``conflict-events bench`` gives the official speed figures.

Candidates:
- ``--backends``: the reference model on other backends (``conflict_events/backends.py``);
- ``--onnx-int8-variants``: the ``onnx-int8`` recipe with other sets of encoder matmuls kept in fp32 (which
  matmuls can ORT's dynamic int8 take without costing accuracy?);
- ``--student``: another model (a shallower student distilled from the reference), fp32, scored against the
  reference's fp32 predictions; ``--student-backends`` adds it on those backends.

    python benchmarks/fast_path_candidates.py --model models:/conflict-events/2 --config configs/cameo_best.yaml \
        --data-root ../shared/data/conflibert --backends int8,onnx,onnx-int8,openvino,openvino-int8,openvino-w8 \
        --onnx-int8-variants --student runs:/<id>/model --student-backends onnx-int8 --output candidates.json

Node names of the fused export, per encoder layer i: ``Attention_i`` (fused Q/K/V projection and attention),
``/output/dense_{2i}`` (attention output projection; ``/output/dense`` for i = 0), ``/intermediate/dense_i``
(FFN input; ``/intermediate/dense`` for i = 0) and ``/output/dense_{2i+1}`` (FFN output).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from conflict_events.backends import (
    ONNX_INT8_FP32_NODES,
    OnnxJointModel,
    apply_backend,
    export_onnx,
    onnx_session,
    optimize_onnx,
    quantize_onnx,
)
from conflict_events.config import load_config
from conflict_events.inference.bench import load_articles, split_sentences
from conflict_events.model import LoadedModel, load_joint_model
from conflict_events.prediction import TextPrediction, predict_windowed
from conflict_events.training.evaluate import evaluate_loaded
from conflict_events.training.evaluation_data import load_named_set


def _layer_names(layer: int) -> dict[str, str]:
    suffix = lambda index: "" if index == 0 else f"_{index}"  # noqa: E731
    return {
        "qkv": f"Attention_{layer}",
        "attention_output": f"/output/dense{suffix(2 * layer)}/MatMul",
        "ffn_input": f"/intermediate/dense{suffix(layer)}/MatMul",
        "ffn_output": f"/output/dense{suffix(2 * layer + 1)}/MatMul",
    }


def onnx_int8_variants(layers: int) -> dict[str, tuple[tuple[str, ...], bool]]:
    """Variant name -> (node patterns kept in fp32 besides the heads, keep the last matmul)."""
    names = [_layer_names(layer) for layer in range(layers)]
    every = ["qkv", "attention_output", "ffn_input", "ffn_output"]
    pick = lambda kinds, which=range(layers): tuple(names[i][k] for i in which for k in kinds)  # noqa: E731
    return {
        "onnx-int8 variant: all encoder matmuls int8 (heads fp32)": ((), False),
        "onnx-int8 variant: FFN outputs fp32": (pick(["ffn_output"]), False),
        "onnx-int8 variant: FFN outputs + attention outputs fp32": (pick(["ffn_output", "attention_output"]), False),
        "onnx-int8 variant: attention (QKV) fp32": (pick(["qkv"]), True),
        "onnx-int8 variant: only FFN inputs int8": (pick(["qkv", "attention_output", "ffn_output"]), False),
        "onnx-int8 variant: last layer fp32": (pick(every, [layers - 1]), False),
        "onnx-int8 variant: last two layers fp32": (pick(every, [layers - 2, layers - 1]), False),
    }


def agreement(reference: list[TextPrediction], other: list[TextPrediction]) -> dict[str, float]:
    spans = lambda p: [(s.role, s.char_start, s.char_end) for s in p.actors]  # noqa: E731
    total = max(len(reference), 1)
    return {
        "events": sum(r.events == o.events for r, o in zip(reference, other)) / total,
        "actors": sum(spans(r) == spans(o) for r, o in zip(reference, other)) / total,
    }


def timed_predictions(loaded: LoadedModel, sentences: list[str], batch_size: int, repetitions: int) -> tuple[list, float]:
    predict_windowed(loaded, sentences[:16], batch_size)  # warm-up
    seconds = []
    for _ in range(repetitions):
        start = time.perf_counter()
        predictions = predict_windowed(loaded, sentences, batch_size)
        seconds.append(time.perf_counter() - start)
    return predictions, statistics.median(seconds)


class Scorer:
    """Scores candidates against the reference's fp32 predictions and dev metrics, printing a line each."""

    def __init__(self, dev: list, sentences: list[str], batch_size: int, repetitions: int):
        self.dev, self.sentences, self.batch_size, self.repetitions = dev, sentences, batch_size, repetitions
        self.rows: list[dict[str, Any]] = []
        self.reference: list[TextPrediction] = []

    def score(self, name: str, loaded: LoadedModel, **extra: Any) -> dict[str, Any]:
        predictions, seconds = timed_predictions(loaded, self.sentences, self.batch_size, self.repetitions)
        dev_metrics, _ = evaluate_loaded(loaded, self.dev, self.batch_size)
        if not self.rows:
            self.reference = predictions
        row = {
            "candidate": name, "event_macro_f1": dev_metrics["event_macro_f1"], "actor_f1": dev_metrics["actor_f1"],
            "agreement": agreement(self.reference, predictions), "sentences_per_s": len(self.sentences) / seconds, **extra,
        }
        self.rows.append(row)
        first = self.rows[0]
        print(
            f"{name}: dev {row['event_macro_f1']:.4f} ({100 * (row['event_macro_f1'] - first['event_macro_f1']):+.1f}) / "
            f"{row['actor_f1']:.4f} ({100 * (row['actor_f1'] - first['actor_f1']):+.1f}); agreement with fp32: events "
            f"{100 * row['agreement']['events']:.1f}%, spans {100 * row['agreement']['actors']:.1f}%; "
            f"{row['sentences_per_s']:.1f} sentences/s ({row['sentences_per_s'] / first['sentences_per_s']:.2f}x fp32)",
            flush=True,
        )
        return row


def score_onnx_int8_variants(scorer: Scorer, fp32: LoadedModel) -> None:
    model = fp32.joint_model
    with tempfile.TemporaryDirectory() as scratch:
        plain, fused = Path(scratch) / "plain.onnx", Path(scratch) / "fused.onnx"
        export_onnx(model, plain)
        encoder = model.encoder.config
        optimize_onnx(plain, fused, encoder.num_attention_heads, encoder.hidden_size)
        for name, (patterns, last_matmul) in onnx_int8_variants(encoder.num_hidden_layers).items():
            target = Path(scratch) / "int8.onnx"
            kept = quantize_onnx(fused, target, ONNX_INT8_FP32_NODES + patterns, last_matmul)
            scorer_model = OnnxJointModel(onnx_session(target), model.label_schema, model.settings)
            scorer.score(name, LoadedModel(scorer_model, fp32.tokenizer, source=fp32.source), fp32_nodes=kept)


def _names(text: str | None) -> list[str]:
    return [name for name in (text or "").split(",") if name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the reference model (scored in fp32 first)")
    parser.add_argument("--config", required=True, help="the config whose dev split scores every candidate")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--backends", help="comma-separated backends of the reference model")
    parser.add_argument("--onnx-int8-variants", action="store_true")
    parser.add_argument("--student", action="append", default=[], help="another model to score against the reference")
    parser.add_argument("--student-backends", help="comma-separated backends each student also runs on")
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    config = load_config(args.config, data_root=args.data_root)
    articles, _ = load_articles(args.data_root)
    scorer = Scorer(list(load_named_set(config, "dev").examples), split_sentences(articles), args.batch_size, args.repetitions)
    fp32 = load_joint_model(args.model)
    scorer.score("fp32 (torch)", apply_backend(fp32, "torch"))
    candidates: list[tuple[str, Callable[[], LoadedModel]]] = [
        (backend, lambda backend=backend: apply_backend(fp32, backend)) for backend in _names(args.backends)
    ]
    for backend, make in candidates:
        scorer.score(backend, make(), backend=backend)
    if args.onnx_int8_variants:
        score_onnx_int8_variants(scorer, fp32)
    for uri in args.student:
        student = load_joint_model(uri)
        layers = student.joint_model.encoder.config.num_hidden_layers
        for backend in ["torch", *_names(args.student_backends)]:
            scorer.score(f"student {uri} ({layers} layers), {backend}", apply_backend(student, backend), backend=backend, model=uri)
    if args.output:
        args.output.write_text(json.dumps(
            {"model": args.model, "sentences": len(scorer.sentences), "repetitions": args.repetitions, "rows": scorer.rows},
            indent=2,
        ))


if __name__ == "__main__":
    main()
