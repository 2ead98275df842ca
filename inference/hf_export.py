"""Export the joint model's two heads as *standard* Hugging Face models, one directory each:

- ``token-classification/``: a ``BertForTokenClassification`` whose ``classifier`` is our ``role_head``.
  This one is exact: same encoder, same Linear, so its logits equal our ``role_logits`` for the same
  input ids (it is still decoded differently: HF pipelines take an arg-max per sub-word, we run
  constrained Viterbi).
- ``sequence-classification/``: a ``BertForSequenceClassification`` carrying our ``event_head``.
  Our head reads the *mean* of the sub-word states; a standard BERT classifier reads only the ``[CLS]``
  state through ``pooler = tanh(dense(h_cls))``. A mean over positions cannot be folded into that
  architecture, so the export is an approximation: the pooler is made (numerically) the identity,
  ``dense = s * I`` with a tiny ``s`` so that ``tanh(s * h) / s == h`` to ~1e-6, and the classifier is
  ``event_head`` scaled by ``1 / s``. The exported model therefore computes exactly
  ``event_head(h_cls)`` (tested), i.e. our head applied to the ``[CLS]`` state instead of the mean.
  Its compute is the same as ours (one encoder pass, one tiny head), which is what the speed baseline in
  ``conflict-events bench`` needs; its event *labels* can differ from ours.

Both directories hold the tokenizer, with ``model_max_length`` set to the model's ``max_length`` so HF
pipelines truncate where we do, and ``id2label``/``label2id`` from the label schema.

:func:`export_hf_onnx` exports either model to ONNX (one ``logits`` output) with the same traceable encoder
as the ``onnx`` backends (:class:`~conflict_events.backends.TraceableBert`): the stronger peers of
``conflict-events bench`` run these HF models in ONNX Runtime.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertForSequenceClassification, BertForTokenClassification, PretrainedConfig, PreTrainedModel

from conflict_events.backends import TraceableBert, trace_to_onnx
from conflict_events.errors import ModelError
from conflict_events.model import LoadedModel

SEQUENCE_DIR = "sequence-classification"
TOKEN_DIR = "token-classification"
# tanh(s*x)/s = x - s^2 x^3 / 3: with s = 1e-3 the relative error stays below 1e-5 for |x| < 5.
POOLER_SCALE = 1e-3


@dataclass(frozen=True)
class ExportedHeads:
    sequence_classification: Path
    token_classification: Path


def export_hf_models(loaded: LoadedModel, directory: str | Path) -> ExportedHeads:
    """Save both heads as standard HF models (with the tokenizer) under ``directory``."""
    directory = Path(directory)
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.model_max_length = loaded.settings.max_length
    paths = ExportedHeads(directory / SEQUENCE_DIR, directory / TOKEN_DIR)
    for model, path in (
        (event_head_as_sequence_classifier(loaded), paths.sequence_classification),
        (role_head_as_token_classifier(loaded), paths.token_classification),
    ):
        model.save_pretrained(str(path))
        tokenizer.save_pretrained(str(path))
    return paths


def event_head_as_sequence_classifier(loaded: LoadedModel) -> BertForSequenceClassification:
    """``event_head`` on the ``[CLS]`` state, as a ``BertForSequenceClassification`` (see module doc)."""
    names = loaded.label_schema.event_names
    config = _head_config(loaded, names)
    if loaded.label_schema.multilabel:
        config.problem_type = "multi_label_classification"
    model = BertForSequenceClassification(config)
    _copy_encoder(loaded, model.bert, allowed_missing=("pooler.",))
    hidden = config.hidden_size
    head = loaded.model.event_head
    with torch.no_grad():
        model.bert.pooler.dense.weight.copy_(torch.eye(hidden) * POOLER_SCALE)
        model.bert.pooler.dense.bias.zero_()
        model.classifier.weight.copy_(head.weight / POOLER_SCALE)
        model.classifier.bias.copy_(head.bias)
    return model.eval()


def role_head_as_token_classifier(loaded: LoadedModel) -> BertForTokenClassification:
    """``role_head`` per sub-word, as a ``BertForTokenClassification`` (logits identical to ours)."""
    config = _head_config(loaded, loaded.label_schema.bio_tags)
    model = BertForTokenClassification(config)
    _copy_encoder(loaded, model.bert, allowed_missing=())
    with torch.no_grad():
        model.classifier.weight.copy_(loaded.model.role_head.weight)
        model.classifier.bias.copy_(loaded.model.role_head.bias)
    return model.eval()


def _head_config(loaded: LoadedModel, labels: list[str]) -> PretrainedConfig:
    encoder_config = loaded.model.encoder.config
    if encoder_config.model_type != "bert":
        raise ModelError(
            f"HF export supports BERT-family encoders only; this model's encoder is '{encoder_config.model_type}'"
        )
    config = copy.deepcopy(encoder_config)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: index for index, label in enumerate(labels)}
    config.classifier_dropout = loaded.settings.dropout
    return config


def _copy_encoder(loaded: LoadedModel, target: torch.nn.Module, allowed_missing: tuple[str, ...]) -> None:
    state = loaded.model.encoder.state_dict()
    missing, unexpected = target.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith(allowed_missing) and not key.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(f"cannot export the encoder: missing={missing} unexpected={unexpected}")


class _ExportableHfClassifier(TraceableBert):
    """An HF BERT sequence or token classifier's inference forward for export: the traceable encoder, then
    the model's own pooler (sequence classifiers) and classifier (dropout is the identity in eval mode)."""

    def __init__(self, model: PreTrainedModel):
        super().__init__(model.config)
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encode(self.model.bert, input_ids, attention_mask)
        if isinstance(self.model, BertForSequenceClassification):
            return self.model.classifier(self.model.bert.pooler(hidden))
        return self.model.classifier(hidden)


def export_hf_onnx(model: PreTrainedModel, path: str | Path) -> None:
    """Export a ``BertForSequenceClassification`` or ``BertForTokenClassification`` to ONNX at ``path``:
    inputs ``input_ids`` and ``attention_mask`` (single-segment text), output ``logits``."""
    if not isinstance(model, (BertForSequenceClassification, BertForTokenClassification)):
        raise ModelError(f"ONNX export supports BERT sequence and token classifiers only; got {type(model).__name__}")
    axes = {0: "batch"} if isinstance(model, BertForSequenceClassification) else {0: "batch", 1: "sequence"}
    trace_to_onnx(_ExportableHfClassifier(model), Path(path), {"logits": axes})
