"""The benchmark harness: heads exported as standard HF models reproduce our logits (in torch and in ONNX
Runtime), and run_benchmark reports every phase, the backend that ran, and prints ``ratio`` last."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from conflict_events.errors import ConflictEventsError
from conflict_events.inference.bench import PresplitSentences, load_articles, run_benchmark, split_sentences
from conflict_events import backends
from conflict_events.inference.hf_export import export_hf_models, export_hf_onnx
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.model import load_joint_model
from conflict_events.prediction import encode_texts, padded_batch
from conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def model_dir(tiny_encoder_dir, tmp_path_factory):
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "m", max_length=32)


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    return export_hf_models(load_joint_model(model_dir), tmp_path_factory.mktemp("hf"))


def sample_texts(count: int = 24) -> list[str]:
    lines = (SAMPLE_DATA / "events.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line)["text"] for line in lines]


def joint_outputs(model_dir, texts):
    loaded = load_joint_model(model_dir)
    encoded = encode_texts(loaded, texts)
    input_ids, attention_mask = padded_batch(encoded, range(len(encoded.input_ids)), loaded.tokenizer.pad_token_id)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    with torch.inference_mode():
        hidden = loaded.model.encoder(**inputs).last_hidden_state
        output = loaded.model(**inputs)
        cls_event_logits = loaded.model.event_head(hidden[:, 0])
    return loaded, inputs, output, cls_event_logits


def test_token_classifier_reproduces_the_role_logits_exactly(model_dir, exported):
    loaded, inputs, output, _ = joint_outputs(model_dir, sample_texts())
    model = AutoModelForTokenClassification.from_pretrained(exported.token_classification)
    with torch.inference_mode():
        logits = model(**inputs).logits
    assert torch.equal(logits, output.role_logits)
    assert model.config.id2label == dict(enumerate(loaded.label_schema.bio_tags))
    assert model.config.label2id["B-S"] == loaded.label_schema.bio_index("B-S")


def test_sequence_classifier_is_the_event_head_on_the_cls_state(model_dir, exported):
    loaded, inputs, output, cls_event_logits = joint_outputs(model_dir, sample_texts())
    model = AutoModelForSequenceClassification.from_pretrained(exported.sequence_classification)
    with torch.inference_mode():
        logits = model(**inputs).logits
    # Exact up to the tanh linearisation of the pooler (see hf_export): our head, read from [CLS].
    assert torch.allclose(logits, cls_event_logits, atol=1e-4)
    assert model.config.id2label == dict(enumerate(loaded.label_schema.event_names))
    # Not our mean-pooled logits: the difference is documented, not hidden.
    assert logits.shape == output.event_logits.shape


@pytest.mark.parametrize("directory, auto", [("sequence_classification", AutoModelForSequenceClassification),
                                              ("token_classification", AutoModelForTokenClassification)])
def test_the_hf_models_exported_to_onnx_give_their_torch_logits(model_dir, exported, tmp_path, directory, auto):
    pytest.importorskip("onnxruntime")
    model = auto.from_pretrained(getattr(exported, directory))
    export_hf_onnx(model, tmp_path / "model.onnx")
    session = backends.onnx_session(tmp_path / "model.onnx", num_threads=1)
    for texts in (sample_texts()[:1], sample_texts()[2:13]):  # batch and sequence sizes other than the export's
        _, inputs, _, _ = joint_outputs(model_dir, texts)
        with torch.inference_mode():
            reference = model(**inputs).logits
        (logits,) = session.run(["logits"], {name: tensor.numpy() for name, tensor in inputs.items()})
        real = inputs["attention_mask"].bool() if reference.dim() == 3 else slice(None)
        assert torch.allclose(torch.from_numpy(logits)[real], reference[real], atol=1e-4)


def test_exported_tokenizers_truncate_at_the_model_max_length(model_dir, exported):
    for directory in (exported.sequence_classification, exported.token_classification):
        assert AutoTokenizer.from_pretrained(directory).model_max_length == 32


def test_bench_input_falls_back_to_the_bundled_articles(tmp_path):
    articles, source = load_articles(tmp_path)
    assert source.endswith("articles") and len(articles) == len(list((SAMPLE_DATA / "articles").glob("*.txt")))
    sentences = split_sentences(articles, max_sentences=7)
    assert len(sentences) == 7 and all(s == s.strip() and s for s in sentences)


def test_bench_reads_the_india_police_events_tsv(tmp_path):
    folder = tmp_path / "IndiaPoliceEvents_docs"
    folder.mkdir()
    (folder / "dev.tsv").write_text('"he said ""stop"". police came."\t0\t0\t0\t0\t0\nsecond article.\t1\t0\t0\t0\t0\n')
    articles, source = load_articles(tmp_path)
    assert articles == ['he said "stop". police came.', "second article."]
    assert split_sentences(articles) == ['he said "stop".', "police came.", "second article."]


def test_presplit_sentences_keep_the_whole_stripped_text():
    assert [(s.char_start, s.char_end) for s in PresplitSentences().split("  Police came. Then left.\n")] == [(2, 25)]
    assert PresplitSentences().split(" \n ") == []


@pytest.mark.parametrize("has_native_bf16", [True, False])
def test_run_benchmark_reports_every_phase_and_prints_ratio_last(model_dir, tmp_path, monkeypatch, has_native_bf16):
    pytest.importorskip("onnxruntime")
    # Pretended, so that both rules run everywhere: bf16 runs (emulated where it is not native), or torch does.
    monkeypatch.setattr(backends, "native_bf16", lambda: has_native_bf16)
    monkeypatch.setenv("CONFLICT_EVENTS_CACHE", str(tmp_path / "cache"))
    printed: list[str] = []
    before = torch.get_num_threads()
    try:
        report = run_benchmark(
            str(model_dir), tmp_path, max_sentences=20, repetitions=1, batch_size=8, compare=["int8", "bf16"],
            echo=printed.append, backend="auto",
        )
    finally:
        torch.set_num_threads(before)
    ran = "bf16" if has_native_bf16 else backends.AUTO_WITHOUT_NATIVE_BF16
    assert report["sentences"] == 20 and report["tokens"] > 20
    assert report["backend"] == backends.resolve_backend("auto").to_json() and report["backend"]["ran"] == ran
    for key in ("source", "threads", "matmul_gflops", "fp32_gflops", "ours_gflops", "peak_fraction", "process_max_rss_mb",
                "load_average", "ratio", "best_peer", "ratio_vs_best_peer", "fp32_ceiling", "fp32_ceiling_ratio"):
        assert key in report
    phases = [report["baseline"], report["ours"], report["fp32"], report["compare"]["int8"], *report["peers"].values()]
    for phase in phases:
        assert phase["sentences_per_second"] > 0 and len(phase["seconds"]) == 1
        assert phase["rss_peak_mb"] > 0 and phase["rss_added_mb"] >= 0
    assert (report["ours"] is report["fp32"]) is (ran == "torch")
    # --compare names the backend asked for; bf16 without native bf16 is the fp32 phase, not timed twice.
    assert (report["compare"]["bf16"] is report["fp32"]) is (not has_native_bf16)
    assert set(report["compare"]["int8"]["agreement"]) == {"events", "actors"}
    assert set(report["peers"]) == {"ort-fp32", "ort-int8"}
    # The fp32 peer runs the baseline's models exactly; its pipelines decide what the baseline decides.
    assert report["peers"]["ort-fp32"]["agreement"] == {"events": 1.0, "actors": 1.0}
    assert set(report["peers"]["ort-int8"]["agreement"]) == {"events", "actors"}
    assert report["peak_fraction"] == pytest.approx(report["fp32_gflops"] / report["matmul_gflops"])
    # The ceiling is the fp32 path's rate had it run at the matmul peak: what it achieved, scaled by that share.
    assert report["fp32_ceiling"] == pytest.approx(report["fp32"]["sentences_per_second"] / report["peak_fraction"])
    assert report["fp32_ceiling_ratio"] == pytest.approx(report["fp32_ceiling"] / report["baseline"]["sentences_per_second"])
    assert any(line.startswith(f"fp32 ceiling: {report['fp32_ceiling']:.1f} sentences/s") for line in printed)
    assert report["ratio"] == pytest.approx(report["ours"]["sentences_per_second"] / report["baseline"]["sentences_per_second"])
    fastest = max([report["baseline"], *report["peers"].values()], key=lambda phase: phase["sentences_per_second"])
    assert report["ratio_vs_best_peer"] == pytest.approx(report["ours"]["sentences_per_second"] / fastest["sentences_per_second"])
    assert printed[-3].startswith(f"ours = {ran} (") and printed[-3].endswith(f"backend {backends.resolve_backend('auto').summary()}")
    assert printed[-2] == f"ratio_vs_best_peer {report['ratio_vs_best_peer']:.2f} (best peer: {report['best_peer']})"
    assert printed[-1] == f"ratio {report['ratio']:.2f}"


def test_bench_command_prints_ratio_last(model_dir, tmp_path):
    from typer.testing import CliRunner

    from conflict_events.cli import app

    result = CliRunner().invoke(
        app, ["bench", "--model", str(model_dir), "--data-root", str(tmp_path), "--max-sentences", "8",
              "--repetitions", "1", "--backend", "torch", "--compare", "none", "--no-peers"],
    )
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()
    assert last[-1].startswith("ratio ") and last[-2].startswith("ratio_vs_best_peer ") and "(best peer: baseline)" in last[-2]
    assert "int8" not in result.output and "ours = torch" in result.output and "ort-fp32" not in result.output


def test_bench_rejects_an_unknown_backend_before_timing_anything(model_dir, tmp_path):
    with pytest.raises(ConflictEventsError, match="unknown backend 'fp8'"):
        run_benchmark(str(model_dir), tmp_path, compare=["fp8"], echo=lambda line: None)


# --- bench-e2e ------------------------------------------------------------------------------------------
def test_bench_e2e_prints_the_breakdown_per_producer_and_the_ratios_last(model_dir, tmp_path):
    from conflict_events.inference.batch import STAGES
    from conflict_events.inference.bench_e2e import run_end_to_end

    printed: list[str] = []
    before = torch.get_num_threads()
    try:
        report = run_end_to_end(
            str(model_dir), tmp_path, max_documents=3, repetitions=2, batch_size=8, backend="torch", echo=printed.append
        )
    finally:
        torch.set_num_threads(before)
    assert report["documents"] == 3 and report["sentences"] > 3 and report["source"].endswith("articles")
    assert list(report["end_to_end"]) == ["none", "process"]
    for mode, phase in report["end_to_end"].items():
        assert phase["sentences"] == report["sentences"]
        assert list(phase["seconds_by_stage"]) == list(STAGES)
        assert phase["end_to_end_vs_predictor"] == pytest.approx(
            phase["sentences_per_second"] / report["predictor"]["sentences_per_second"]
        )
        assert phase["stages_in_producer"] == ([] if mode == "none" else ["read", "split", "stories"])
        # One ratio per round: that round's job against that round's predictor run.
        assert len(phase["seconds"]) == len(report["predictor"]["seconds"]) == len(phase["by_round"]) == 2
        assert f"by round (producer {mode}): " + ", ".join(f"{r:.2f}" for r in phase["by_round"]) in printed
    header = next(index for index, line in enumerate(printed) if line.startswith("stage "))
    assert printed[header].split() == ["stage", "producer", "none", "producer", "process"]
    rows = {line.split()[0]: line.split()[1:] for line in printed[header + 1 : header + 1 + len(STAGES)]}
    assert list(rows) == list(STAGES)
    assert rows["split"][0].endswith("s") and rows["split"][1].endswith("s*") and rows["model"][1].endswith("s")
    assert printed[-2] == f"end_to_end_vs_predictor {report['end_to_end']['none']['end_to_end_vs_predictor']:.2f} (producer none)"
    assert printed[-1] == f"end_to_end_vs_predictor {report['end_to_end']['process']['end_to_end_vs_predictor']:.2f} (producer process)"


def test_bench_e2e_rejects_an_unknown_producer_before_timing_anything(model_dir, tmp_path):
    from typer.testing import CliRunner

    from conflict_events.cli import app

    result = CliRunner().invoke(app, ["bench-e2e", "--model", str(model_dir), "--data-root", str(tmp_path), "--producer", "thread"])
    assert result.exit_code == 2 and "unknown producer 'thread' (expected one of: process, none)" in result.output
