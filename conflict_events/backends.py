"""Numeric backends for inference: the same joint model and the same decoding, computed differently.

- ``torch``: the fp32 model as loaded (eval mode, no autograd state).
- ``bf16``: the encoder's matmuls in bfloat16 with fp32 accumulation (``torch.autocast``; LayerNorm,
  softmax, pooling and both heads in fp32). On CPUs with native bf16 dot products (AVX512-BF16 or AMX)
  oneDNN runs them ~2.2x faster than fp32; elsewhere bf16 is emulated and slower than fp32, so the
  backend falls back to fp32 with a warning (:func:`native_bf16`).
- ``int8``: dynamic int8 quantization (per-channel weight scales) of the *encoder's* ``nn.Linear`` layers
  (:func:`torch.ao.quantization.quantize_dynamic`): weights are stored as int8 once, activations are
  quantized per batch on the fly. The two heads stay fp32: they hold a negligible share of the FLOPs,
  and keeping them exact keeps event decisions and BIO scores closest to the fp32 model.
- ``onnx``: the whole joint model (encoder, mean pooling, both heads) exported once to ONNX and run in
  fp32 by ONNX Runtime with ``ORT_ENABLE_ALL`` graph optimisations (``OnnxJointModel.from_model(optimize=True)``
  additionally runs ORT's BERT optimizer, fusing attention/LayerNorm/GELU; measured slightly slower on
  2 CPU cores, so it is not the default; benchmarks/README.md). Same
  arithmetic as ``torch`` up to summation order (logits agree to ~1e-5). The exported and optimised
  graph is cached under :func:`onnx_cache_dir`, keyed by a sha256 of the weights (never written next to
  the model, whose directory may be read-only or an MLflow download).

:func:`apply_backend` never modifies the model it is given (a quantized copy is returned), so a caller can
compare backends side by side, as ``conflict-events bench`` does. ``InferenceConfig.backend`` names one of
:data:`BACKENDS`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from conflict_events.errors import ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, JointOutput, LoadedModel

BACKENDS = ("torch", "bf16", "int8", "onnx")


def apply_backend(loaded: LoadedModel, backend: str) -> LoadedModel:
    """``loaded`` prepared for inference with ``backend`` (one of :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown inference backend '{backend}' (expected one of: {', '.join(BACKENDS)})")
    model = loaded.joint_model
    if backend == "torch":
        model.eval()
        model.requires_grad_(False)
        return loaded
    if backend == "bf16":
        return dataclasses.replace(loaded, model=bf16_encoder(model))
    if backend == "onnx":
        return dataclasses.replace(loaded, model=OnnxJointModel.from_model(model))
    return dataclasses.replace(loaded, model=quantize_encoder(model))


def native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions oneDNN uses (AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bf16_encoder(model: nn.Module) -> nn.Module:
    """A shallow copy of the joint model (same weights) whose encoder runs under bf16 autocast.

    Falls back to the fp32 model, with a warning, on a CPU without native bf16: emulated bf16 matmuls
    are several times slower than fp32 there, and the point of the backend is speed.
    """
    model.eval()
    model.requires_grad_(False)
    if not native_bf16():
        warnings.warn(
            "inference.backend=bf16: this CPU has no native bf16 instructions (AVX512-BF16/AMX), "
            "so the model runs in fp32; set inference.backend=torch to silence this",
            stacklevel=2,
        )
        return model
    fast = copy.copy(model)  # shares parameters and submodules; only the attribute below differs
    fast.encoder_autocast = torch.bfloat16
    return fast


def quantize_encoder(model: nn.Module) -> nn.Module:
    """A copy of the joint model whose encoder Linear layers run in int8 (dynamic quantization)."""
    quantized = copy.deepcopy(model)
    quantized.eval()
    quantized.requires_grad_(False)
    # torch >= 2.10 flags eager-mode quantization as deprecated in favour of torchao (not a dependency);
    # it still works in the pinned torch, and the warnings would only clutter every `predict` run.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(quantiz|torchao).*")
        # Per-output-channel weight scales: on the CAMEO champion, per-tensor scales cost 3.1 points of
        # dev event macro-F1 and 4.0 of actor F1, per-channel 0.6 and 1.4 (docs/BENCHMARKS.md).
        quantized.encoder = torch.ao.quantization.quantize_dynamic(
            quantized.encoder,
            {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            inplace=True,
        )
    return quantized


def configure_threads(num_threads: int | None) -> int:
    """Set torch's intra-op thread count (``None`` keeps torch's default) and return the count in use.

    torch defaults to one thread per *physical* core it sees; on a machine shared with other jobs, or in
    a container whose CPU quota is below the core count, fewer threads avoid oversubscription.
    """
    if num_threads is not None:
        if num_threads < 1:
            raise ModelError(f"num_threads must be at least 1 (got {num_threads})")
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------------------------- onnx

# Bump when the exported graph changes (wrapper, opset, optimisation), so stale cache entries are not reused.
ONNX_EXPORT_VERSION = 2
ONNX_OPSET = 17
ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_OUTPUTS = ("event_logits", "role_logits")


def onnx_cache_dir() -> Path:
    """``$CONFLICT_EVENTS_CACHE/onnx``, else ``$XDG_CACHE_HOME/conflict-events/onnx`` (``~/.cache`` by
    default), else a directory under the system temp dir when the home cache is not writable."""
    if os.environ.get("CONFLICT_EVENTS_CACHE"):
        return Path(os.environ["CONFLICT_EVENTS_CACHE"]) / "onnx"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "conflict-events" / "onnx"


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of every tensor in ``model``'s state dict."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class _ExportableJointModel(nn.Module):
    """The joint model's inference forward, written so that ``torch.onnx.export`` traces it shape-generically
    into the graph pattern ORT's BERT fusions recognise.

    ``JointModel.forward`` cannot be traced as is: transformers' mask builder has shape-dependent Python
    branches that tracing freezes (its export gives wrong logits at other sequence lengths). So the encoder
    layers are run here with their own modules and weights, in the classic BERT formulation (additive
    ``(1 - mask) * min`` mask, ``(b, s, heads, head_dim)`` views with constant head sizes, ``q k^T / sqrt(d)``,
    softmax, ``p v``): the same arithmetic, which ORT fuses into its ``Attention`` operator. Pooling and
    heads are ``JointModel.forward``'s (dropout is the identity in eval mode).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        config = model.encoder.config
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size()[:-1] + (self.num_heads, self.head_size)).permute(0, 2, 1, 3)

    def _self_attention(self, attention: nn.Module, hidden: torch.Tensor, additive: torch.Tensor) -> torch.Tensor:
        query = self._split_heads(attention.query(hidden))
        key = self._split_heads(attention.key(hidden))
        value = self._split_heads(attention.value(hidden))
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_size)
        probabilities = torch.softmax(scores + additive, dim=-1)
        context = torch.matmul(probabilities, value).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (self.num_heads * self.head_size,))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model.encoder
        hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in encoder.encoder.layer:
            context = self._self_attention(layer.attention.self, hidden, additive)
            attended = layer.attention.output(context, hidden)
            hidden = layer.output(layer.intermediate(attended), attended)
        pooled = self.model.pool_sentence(hidden, attention_mask)
        return self.model.event_head(pooled), self.model.role_head(hidden)


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export the joint model's inference forward to ``path`` (dynamic batch and sequence axes)."""
    was_training = model.training
    model.eval()
    example = torch.tensor([[101, 2000, 2001, 2002, 102, 0], [101, 2003, 2004, 102, 0, 0]], dtype=torch.long)
    example_mask = (example != 0).long()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _ExportableJointModel(model),
                (example, example_mask),
                str(path),
                dynamo=False,
                input_names=list(ONNX_INPUTS),
                output_names=list(ONNX_OUTPUTS),
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "event_logits": {0: "batch"},
                    "role_logits": {0: "batch", 1: "sequence"},
                },
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)


def optimize_onnx(source: Path, target: Path, num_heads: int, hidden_size: int) -> None:
    """ORT's BERT fusions (attention, skip-LayerNorm, bias-GELU, ...) of ``source``, saved to ``target``."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0, use_gpu=False
    )
    fused = optimized.get_fused_operator_statistics()
    if not fused.get("Attention"):
        warnings.warn(f"ONNX Runtime fused no attention in the exported model ({fused}); it still runs, unfused", stacklevel=2)
    optimized.save_model_to_file(str(target))


def onnx_model_path(model: nn.Module, optimize: bool = True) -> Path:
    """The cached ONNX file for ``model`` (exported, and fused when ``optimize``), creating it if needed."""
    import onnxruntime

    key = weights_sha256(model)[:32]
    versions = f"v{ONNX_EXPORT_VERSION}-torch{torch.__version__}-ort{onnxruntime.__version__}".replace("+", "_")
    name = f"{key}-{versions}-{'fused' if optimize else 'plain'}.onnx"
    directory = onnx_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = Path(tempfile.gettempdir()) / "conflict-events-onnx"
        directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if path.is_file():
        return path
    # Write under temporary names in the same directory and rename, so concurrent processes never read
    # a half-written file.
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        exported = Path(scratch) / "exported.onnx"
        export_onnx(model, exported)
        if optimize:
            config = model.encoder.config
            fused = Path(scratch) / "fused.onnx"
            optimize_onnx(exported, fused, config.num_attention_heads, config.hidden_size)
            exported = fused
        os.replace(exported, path)
    return path


class OnnxJointModel:
    """An ONNX Runtime session as a :class:`~conflict_events.model.JointScorer`.

    ``model(input_ids=..., attention_mask=...)`` returns a :class:`JointOutput` of torch tensors. It never
    trains: ``train(True)`` is an error.
    """

    training = False

    def __init__(self, session: Any, label_schema: LabelSchema, settings: HeadSettings):
        self.session = session
        self.label_schema = label_schema
        self.settings = settings

    @classmethod
    def from_model(cls, model: nn.Module, optimize: bool = False, num_threads: int | None = None) -> "OnnxJointModel":
        try:
            import onnxruntime
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise ModelError("the 'onnx' backend needs the packages onnxruntime and onnx") from error
        path = onnx_model_path(model, optimize=optimize)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return cls(session, model.label_schema, model.settings)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> JointOutput:
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise ModelError("the 'onnx' backend supports single-segment inputs only (token_type_ids all zero)")
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64),
        }
        event_logits, role_logits = self.session.run(list(ONNX_OUTPUTS), feeds)
        return JointOutput(event_logits=torch.from_numpy(event_logits), role_logits=torch.from_numpy(role_logits))

    forward = __call__

    def eval(self) -> "OnnxJointModel":
        return self

    def train(self, mode: bool = True) -> "OnnxJointModel":
        if mode:
            raise ModelError("the 'onnx' backend is for inference only; train the torch model")
        return self

