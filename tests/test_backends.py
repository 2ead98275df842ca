"""Inference backends: int8 dynamic quantization gives the fp32 model's predictions, leaves the fp32 model
untouched, and the heads exported as standard HF models reproduce our logits."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conflict_events.errors import ModelError
from conflict_events.backends import BACKENDS, OnnxJointModel, apply_backend, configure_threads, native_bf16
from conflict_events.inference.testing import save_random_joint_model
from conflict_events.model import load_joint_model
from conflict_events.prediction import encode_texts, padded_batch, predict_texts
from conftest import SAMPLE_DATA


def sample_texts() -> list[str]:
    lines = (SAMPLE_DATA / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


@pytest.fixture(scope="module")
def model_dir(tiny_encoder_dir, tmp_path_factory):
    return save_random_joint_model(tiny_encoder_dir, tmp_path_factory.mktemp("joint") / "m", max_length=64)


def test_torch_backend_returns_the_model_ready_for_inference(model_dir):
    loaded = load_joint_model(model_dir)
    loaded.model.train()
    same = apply_backend(loaded, "torch")
    assert same is loaded
    assert not same.model.training
    assert not any(p.requires_grad for p in same.model.parameters())


def test_int8_quantizes_the_encoder_linears_of_a_copy(model_dir):
    loaded = load_joint_model(model_dir)
    quantized = apply_backend(loaded, "int8")
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    assert any(isinstance(m, dynamic) for m in quantized.model.encoder.modules())
    assert not any(type(m) is nn.Linear for m in quantized.model.encoder.modules())
    # The heads stay fp32, and the model passed in is not modified.
    assert type(quantized.model.event_head) is nn.Linear and type(quantized.model.role_head) is nn.Linear
    assert not any(isinstance(m, dynamic) for m in loaded.model.modules())
    assert quantized.tokenizer is loaded.tokenizer and quantized.label_schema == loaded.label_schema


def test_int8_predicts_what_fp32_predicts_on_the_sample_corpus(model_dir):
    texts = sample_texts()
    assert len(texts) > 50
    fp32 = load_joint_model(model_dir)
    int8 = apply_backend(fp32, "int8")
    reference = predict_texts(fp32, texts, batch_size=16)
    quantized = predict_texts(int8, texts, batch_size=16)
    assert [p.events for p in quantized] == [p.events for p in reference]
    assert sum(len(p.actors) for p in reference) > len(texts), "the comparison needs predicted actors"
    # int8 is not bit-exact: it moves role log-probabilities by ~1e-2, enough to flip a near tie between
    # B-x and I-x on one sub-word (seen on 1 of 227 sentences when the heads are rescaled). Allow 2%.
    spans = lambda prediction: [(a.role, a.char_start, a.char_end) for a in prediction.actors]  # noqa: E731
    same = sum(spans(q) == spans(r) for q, r in zip(quantized, reference))
    assert same >= 0.98 * len(texts)


def test_int8_scores_stay_close_to_fp32(model_dir):
    fp32 = load_joint_model(model_dir)
    int8 = apply_backend(fp32, "int8")
    encoded = encode_texts(fp32, sample_texts()[:16])
    input_ids, attention_mask = padded_batch(encoded, range(len(encoded.input_ids)), fp32.tokenizer.pad_token_id)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    with torch.inference_mode():
        reference, quantized = fp32.model(**inputs), int8.model(**inputs)
    assert torch.allclose(quantized.event_logits, reference.event_logits, atol=0.1)
    assert torch.allclose(quantized.role_logits, reference.role_logits, atol=0.1)


needs_native_bf16 = pytest.mark.skipif(not native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")


@needs_native_bf16
def test_bf16_shares_the_weights_and_leaves_the_fp32_model_alone(model_dir):
    loaded = load_joint_model(model_dir)
    fast = apply_backend(loaded, "bf16")
    assert fast.model is not loaded.model and fast.model.encoder_autocast is torch.bfloat16
    assert loaded.model.encoder_autocast is None
    assert fast.model.encoder is loaded.model.encoder  # no copy of the weights
    assert not fast.model.training and fast.tokenizer is loaded.tokenizer


@needs_native_bf16
def test_bf16_predicts_what_fp32_predicts_on_the_sample_corpus(model_dir):
    texts = sample_texts()
    fp32 = load_joint_model(model_dir)
    reference = predict_texts(fp32, texts, batch_size=16)
    fast = predict_texts(apply_backend(fp32, "bf16"), texts, batch_size=16)
    assert sum(len(p.actors) for p in reference) > len(texts), "the comparison needs predicted actors"
    spans = lambda prediction: [(a.role, a.char_start, a.char_end) for a in prediction.actors]  # noqa: E731
    # bf16 keeps 8 mantissa bits: scores move by ~1e-2, which can flip a near tie of the random tiny model.
    assert sum(p.events == r.events for p, r in zip(fast, reference)) >= 0.98 * len(texts)
    assert sum(spans(p) == spans(r) for p, r in zip(fast, reference)) >= 0.98 * len(texts)


@needs_native_bf16
def test_bf16_logits_are_fp32_and_close_to_fp32(model_dir):
    fp32 = load_joint_model(model_dir)
    fast = apply_backend(fp32, "bf16")
    encoded = encode_texts(fp32, sample_texts()[:16])
    input_ids, attention_mask = padded_batch(encoded, range(len(encoded.input_ids)), fp32.tokenizer.pad_token_id)
    with torch.inference_mode():
        reference = fp32.model(input_ids=input_ids, attention_mask=attention_mask)
        output = fast.model(input_ids=input_ids, attention_mask=attention_mask)
    assert output.event_logits.dtype == torch.float32 and output.role_logits.dtype == torch.float32
    assert not torch.equal(output.role_logits, reference.role_logits), "bf16 should not be a no-op"
    assert torch.allclose(output.event_logits, reference.event_logits, atol=0.1)
    assert torch.allclose(output.role_logits, reference.role_logits, atol=0.1)


def test_bf16_falls_back_to_fp32_with_a_warning_without_native_bf16(model_dir, monkeypatch):
    import conflict_events.backends as backends

    monkeypatch.setattr(backends, "native_bf16", lambda: False)
    loaded = load_joint_model(model_dir)
    with pytest.warns(UserWarning, match="no native bf16"):
        fallback = apply_backend(loaded, "bf16")
    assert fallback.model.encoder_autocast is None


def test_unknown_backend_is_an_error_naming_the_choices(model_dir):
    with pytest.raises(ModelError) as error:
        apply_backend(load_joint_model(model_dir), "fp16")
    assert str(error.value) == "unknown inference backend 'fp16' (expected one of: torch, bf16, int8, onnx)"
    assert BACKENDS == ("torch", "bf16", "int8", "onnx")


def test_configure_threads_sets_and_reports_the_count():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 == torch.get_num_threads()
        assert configure_threads(None) == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ModelError, match="num_threads must be at least 1"):
        configure_threads(0)


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONFLICT_EVENTS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def test_onnx_predicts_what_torch_predicts_on_the_sample_corpus(model_dir, onnx_cache):
    pytest.importorskip("onnxruntime")
    texts = sample_texts()
    fp32 = load_joint_model(model_dir)
    onnx = apply_backend(fp32, "onnx")
    assert isinstance(onnx.model, OnnxJointModel)
    assert onnx.tokenizer is fp32.tokenizer and onnx.label_schema == fp32.label_schema and onnx.settings == fp32.settings
    reference = predict_texts(fp32, texts, batch_size=16)
    exported = predict_texts(onnx, texts, batch_size=16)
    assert sum(len(p.actors) for p in reference) > len(texts), "the comparison needs predicted actors"
    assert [p.events for p in exported] == [p.events for p in reference]
    spans = lambda prediction: [(a.role, a.char_start, a.char_end) for a in prediction.actors]  # noqa: E731
    assert [spans(p) for p in exported] == [spans(p) for p in reference]
    # The exported, fused graph is cached outside the model directory, once per weights.
    assert len(list(onnx_cache.glob("*.onnx"))) == 1
    assert not list(model_dir.glob("*.onnx"))


@pytest.mark.parametrize("optimize", [True, False])
def test_onnx_logits_match_torch_at_any_batch_and_length(model_dir, onnx_cache, optimize):
    pytest.importorskip("onnxruntime")
    fp32 = load_joint_model(model_dir)
    assert_onnx_matches_torch(fp32, OnnxJointModel.from_model(fp32.model, optimize=optimize))


def test_onnx_export_keeps_attention_pooling(tiny_encoder_dir, onnx_cache):
    pytest.importorskip("onnxruntime")
    from conflict_events.inference.testing import DEMO_SCHEMA
    from conflict_events.model import HeadSettings, build_joint_model

    torch.manual_seed(0)
    loaded = build_joint_model(str(tiny_encoder_dir), DEMO_SCHEMA, HeadSettings(max_length=64, pooling="attention"))
    with torch.no_grad():
        loaded.model.pool_scorer.weight.normal_()
    loaded.model.eval()
    assert_onnx_matches_torch(loaded, OnnxJointModel.from_model(loaded.model, optimize=True))


def assert_onnx_matches_torch(fp32, onnx) -> None:
    texts = sample_texts()
    for chosen in (texts[:1], texts[3:10], texts[10:42]):  # batch and sequence sizes other than the export's
        encoded = encode_texts(fp32, chosen)
        input_ids, attention_mask = padded_batch(encoded, range(len(chosen)), fp32.tokenizer.pad_token_id)
        with torch.inference_mode():
            reference = fp32.model(input_ids=input_ids, attention_mask=attention_mask)
            exported = onnx(input_ids=input_ids, attention_mask=attention_mask)
        assert exported.event_logits.shape == reference.event_logits.shape
        assert torch.allclose(exported.event_logits, reference.event_logits, atol=1e-4)
        real = attention_mask.bool()
        assert torch.allclose(exported.role_logits[real], reference.role_logits[real], atol=1e-4)


def test_onnx_model_is_inference_only_and_leaves_the_torch_model_alone(model_dir, onnx_cache):
    pytest.importorskip("onnxruntime")
    fp32 = load_joint_model(model_dir)
    fp32.model.train()
    onnx = apply_backend(fp32, "onnx")
    assert fp32.model.training  # restored after export
    assert onnx.model.training is False and onnx.model.eval() is onnx.model
    assert onnx.model.train(False) is onnx.model
    with pytest.raises(ModelError, match="inference only"):
        onnx.model.train()
