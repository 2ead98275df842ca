"""Numeric backends for inference: the same joint model and the same decoding, computed differently.

- ``auto`` (the default): one of the others, picked per machine by :func:`resolve_backend`: ``bf16`` where
  the CPU has native bf16 dot products (:func:`native_bf16`), else :data:`AUTO_WITHOUT_NATIVE_BF16`.
- ``torch``: the fp32 model as loaded (eval mode, no autograd state).
- ``bf16``: the encoder's matmuls in bfloat16 with fp32 accumulation (``torch.autocast``; LayerNorm,
  softmax, pooling and both heads in fp32). On CPUs with native bf16 dot products (AVX512-BF16 or AMX)
  oneDNN runs them ~2.2x faster than fp32; elsewhere bf16 is emulated and slower than fp32, so a request
  for ``bf16`` there runs ``torch`` instead, and what ran is recorded as ``torch`` (:class:`BackendChoice`).
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
- ``onnx-int8``: that export, fused by ORT's BERT optimizer, then dynamically quantized by
  :func:`onnxruntime.quantization.quantize_dynamic` (:func:`quantize_onnx`): int8 weights with per-channel
  scales, uint8 activations quantized per batch (U8S8), weights in 7 bits (:data:`ONNX_INT8_REDUCE_RANGE`,
  the AVX2 saturation issue), the nodes :data:`ONNX_INT8_FP32_NODES` and the last encoder projection kept
  in fp32. Cached like the fp32 export.
- ``openvino``, ``openvino-int8``, ``openvino-w8``: the ``onnx`` backend's export compiled by OpenVINO for the
  CPU, in fp32, with NNCF's post-training int8 quantization, or with int8 weights only
  (:mod:`conflict_events.openvino_backend`).

:func:`apply_backend` never modifies the model it is given (a quantized copy is returned), so a caller can
compare backends side by side, as ``conflict-events bench`` does. ``InferenceConfig.backend`` names one of
:data:`BACKENDS`; what runs for it is :func:`resolve_backend`'s :class:`BackendChoice`, logged once per
process and recorded by the batch job's manifest, ``evaluate`` and ``bench``.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hashlib
import importlib.util
import json
import logging
import math
import os
import platform
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from conflict_events.errors import ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, JointOutput, LoadedModel

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "bf16", "int8", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-w8")
# What `auto` runs on a CPU without native bf16 (AVX2-only machines, AVX-512 without AVX512-BF16, ...): the
# fastest backend measured there that keeps dev metrics within 0.5 point of fp32 and the same actor spans on
# at least 97 % of the out-of-domain IndiaPoliceEvents sentences (docs/BENCHMARKS.md, "CPUs without native
# bf16"). On the AVX2-only development machine (AMD EPYC Zen 3, 2 threads): onnx 1.22x torch fp32 with the
# same decisions on every sentence, openvino 1.20x; every int8 candidate missed the 97 % span bound (95.4 % at
# best, openvino-w8, itself slower than onnx). One name, so that a new measurement changes one line.
AUTO_WITHOUT_NATIVE_BF16 = "onnx"
# The packages a backend imports beyond torch: an `auto` pick needs them importable (else `torch` runs), and
# apply_backend names the missing ones. onnx, which every export needs, is a core dependency (pyproject.toml).
BACKEND_PACKAGES: dict[str, tuple[str, ...]] = {
    "onnx": ("onnxruntime",),
    "onnx-int8": ("onnxruntime",),
    "openvino": ("openvino",),
    "openvino-int8": ("openvino", "nncf"),
    "openvino-w8": ("openvino", "nncf"),
}
OPENVINO_BACKENDS = ("openvino", "openvino-int8", "openvino-w8")


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    """The backend that runs (``name``, never ``auto``) for the one ``requested``, and why."""

    requested: str
    name: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """``{requested, ran, reason}``: the shape the job manifest, ``evaluate`` and ``bench`` record."""
        return {"requested": self.requested, "ran": self.name, "reason": self.reason}

    def summary(self) -> str:
        requested = "" if self.requested == self.name else f" (requested {self.requested})"
        return f"{self.name}{requested}: {self.reason}"


# Choices already logged by this process: each is logged once, however many models it is applied to
# (training's promotion gate loads two, bench a few).
_announced: set[BackendChoice] = set()


def resolve_backend(requested: str) -> BackendChoice:
    """What runs for ``requested`` (one of :data:`BACKENDS`) on this machine, logged the first time.

    ``auto``: ``bf16`` where :func:`native_bf16`, else :data:`AUTO_WITHOUT_NATIVE_BF16` (``torch`` where a
    package that pick needs, :data:`BACKEND_PACKAGES`, is not installed). ``bf16`` on a CPU without native
    bf16: ``torch`` (emulated bf16 is slower than fp32), logged as a warning. Any other name runs as requested.
    """
    if requested not in BACKENDS:
        raise ModelError(f"unknown inference backend '{requested}' (expected one of: {', '.join(BACKENDS)})")
    if requested == "auto":
        if native_bf16():
            choice = BackendChoice("auto", "bf16", "this CPU has native bf16 dot products (AVX512-BF16/AMX)")
        else:
            pick = AUTO_WITHOUT_NATIVE_BF16
            reason = f"this CPU has no native bf16 ({cpu_description()}); {pick} is the pick for such CPUs"
            missing = missing_packages(pick)
            if missing:
                verb = "is" if len(missing) == 1 else "are"
                pick, reason = "torch", f"{reason}, but {' and '.join(missing)} {verb} not installed"
            choice = BackendChoice("auto", pick, reason)
    elif requested == "bf16" and not native_bf16():
        choice = BackendChoice(
            "bf16", "torch",
            f"bf16 requested, but this CPU has no native bf16 ({cpu_description()}): emulated bf16 is slower "
            "than fp32, so fp32 runs; set inference.backend to auto or torch to say so",
        )
    else:
        choice = BackendChoice(requested, requested, "as requested")
    if choice not in _announced:
        _announced.add(choice)
        level = logging.WARNING if choice.requested == "bf16" and choice.name != "bf16" else logging.INFO
        logger.log(level, "inference backend %s", choice.summary())
    return choice


def apply_backend(loaded: LoadedModel, backend: str | BackendChoice) -> LoadedModel:
    """``loaded`` prepared for inference with ``backend`` (one of :data:`BACKENDS`, or a choice already
    resolved by :func:`resolve_backend`)."""
    name = (backend if isinstance(backend, BackendChoice) else resolve_backend(backend)).name
    missing = missing_packages(name)
    if missing:
        raise ModelError(
            f"the '{name}' backend needs the packages {' and '.join(BACKEND_PACKAGES[name])} "
            f"(not installed: {', '.join(missing)})"
        )
    model = loaded.joint_model
    if name == "torch":
        model.eval()
        model.requires_grad_(False)
        return loaded
    if name == "bf16":
        return dataclasses.replace(loaded, model=bf16_encoder(model))
    if name == "onnx":
        return dataclasses.replace(loaded, model=OnnxJointModel.from_model(model))
    if name == "onnx-int8":
        return dataclasses.replace(loaded, model=OnnxJointModel.from_model(model, optimize=ONNX_INT8_FUSED, quantize=True))
    if name in OPENVINO_BACKENDS:
        # Imported here, not at the top: openvino_backend builds on this module (the export, the cache), so a
        # top-level import would be circular. It imports openvino and nncf only when a model is compiled.
        from conflict_events import openvino_backend

        return dataclasses.replace(loaded, model=openvino_backend.OpenVinoJointModel.from_loaded(loaded, name))
    return dataclasses.replace(loaded, model=quantize_encoder(model))


def missing_packages(backend: str) -> list[str]:
    """The packages of :data:`BACKEND_PACKAGES` that ``backend`` needs and this environment lacks."""
    return [package for package in BACKEND_PACKAGES.get(backend, ()) if importlib.util.find_spec(package) is None]


_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions oneDNN uses (AVX512-BF16 or AMX on x86, the BF16
    extension on Arm), and oneDNN may use them.

    torch's own check (``_is_mkldnn_bf16_supported``) is also true on AVX-512 CPUs *without* AVX512-BF16
    (Skylake-SP to Ice Lake), where oneDNN emulates bf16 with AVX-512 and is slower than fp32; so on x86 the
    instructions are required as well. torch's check goes first: it is false where ``ONEDNN_MAX_CPU_ISA``
    caps oneDNN below bf16.
    """
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    if platform.machine().lower() not in _X86:
        return True  # Arm: torch's check is the BF16 extension itself
    cpu = torch.cpu
    has = lambda name: bool(getattr(cpu, name, lambda: False)())  # noqa: E731 - private, absent in old torch
    return has("_is_avx512_bf16_supported") or has("_is_amx_tile_supported")


def cpu_description() -> str:
    """What the CPU offers that the backends care about, for log lines and records."""
    cpu = torch.cpu
    flags = [
        label for label, name in (("AVX2", "_is_avx2_supported"), ("AVX-512", "_is_avx512_supported"),
                                  ("VNNI", "_is_vnni_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"),
                                  ("AMX", "_is_amx_tile_supported"))
        if getattr(cpu, name, None) is not None and getattr(cpu, name)()
    ]
    return f"{platform.machine()} with {', '.join(flags) or 'none of AVX2/AVX-512/VNNI/AVX512-BF16/AMX'}; " \
           f"ATen kernels {torch.backends.cpu.get_cpu_capability()}"


def bf16_encoder(model: nn.Module) -> nn.Module:
    """A shallow copy of the joint model (same weights) whose encoder runs under bf16 autocast.

    Runs on any CPU (emulated where bf16 is not native, and then slower than fp32): whether bf16 is worth
    running here is :func:`resolve_backend`'s decision, not this function's.
    """
    model.eval()
    model.requires_grad_(False)
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

# onnx-int8. The fused graph is quantized: ORT's int8 attention (QAttention) exists only for its fused
# Attention operator, and ORT's guide for transformer models quantizes after its transformer optimizer.
ONNX_INT8_FUSED = True
# Weights in 7 bits. Without VNNI (AVX2 CPUs, AVX-512 before Cascade Lake) ORT's U8S8 kernels use
# VPMADDUBSW, which adds two u8 x s8 products into a saturating int16: 2 * 255 * 127 can overflow it,
# 2 * 255 * 63 cannot. ORT's quantization guide recommends reduce_range for CPUs without VNNI. Measured on
# the tiny random test model on an AVX2 CPU: 8-bit weights changed the event decision of 44% of the sample
# sentences, 7-bit weights of 1%. With VNNI the 7 bits cost a little precision and no speed.
ONNX_INT8_REDUCE_RANGE = True
ONNX_INT8_PER_CHANNEL = True
# Nodes kept in fp32 (fnmatch patterns over the node names of the export, which are the scopes of the
# modules the exporting wrapper calls): both heads and attention pooling's scorer. They hold a negligible
# share of the FLOPs, and their outputs are the decisions (as in the torch `int8` backend).
ONNX_INT8_FP32_NODES = ("/event_head/*", "/role_head/*", "/pool_scorer/*")
# Also keep the encoder's last weight matmul (the last layer's FFN output projection, whose output the heads
# read) in fp32: its quantization error reaches the logits unattenuated, for ~1/(6 * layers) of the FLOPs.
ONNX_INT8_FP32_LAST_MATMUL = True
# ORT's integer operators for dynamic quantization: the weight matmuls and the fused attention (its QKV
# projection). Not Gather: an embedding lookup has no arithmetic to speed up.
ONNX_INT8_OP_TYPES = ("MatMul", "Attention")


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


class TraceableBert(nn.Module):
    """A BERT encoder's forward written so that ``torch.onnx.export`` traces it shape-generically into the
    graph pattern ORT's BERT fusions recognise; subclasses add what reads the hidden states.

    An HF BERT's own forward cannot be traced as is: transformers' mask builder has shape-dependent Python
    branches that tracing freezes (its export gives wrong logits at other sequence lengths). So the encoder
    layers are run here with their own modules and weights, in the classic BERT formulation (additive
    ``(1 - mask) * min`` mask, ``(b, s, heads, head_dim)`` views with constant head sizes, ``q k^T / sqrt(d)``,
    softmax, ``p v``): the same arithmetic, which ORT fuses into its ``Attention`` operator. Single-segment
    input: token type ids are zeros.
    """

    def __init__(self, config: Any):
        super().__init__()
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

    def encode(self, encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last hidden states of the HF BERT ``encoder`` (a ``BertModel``) for these inputs."""
        hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in encoder.encoder.layer:
            context = self._self_attention(layer.attention.self, hidden, additive)
            attended = layer.attention.output(context, hidden)
            hidden = layer.output(layer.intermediate(attended), attended)
        return hidden


class _ExportableJointModel(TraceableBert):
    """The joint model's inference forward for export: :class:`TraceableBert`'s encoder, then
    ``JointModel.forward``'s pooling and heads (dropout is the identity in eval mode)."""

    def __init__(self, model: nn.Module):
        super().__init__(model.encoder.config)
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encode(self.model.encoder, input_ids, attention_mask)
        pooled = self.model.pool_sentence(hidden, attention_mask)
        return self.model.event_head(pooled), self.model.role_head(hidden)


def trace_to_onnx(module: nn.Module, path: Path, outputs: dict[str, dict[int, str]]) -> None:
    """Export ``module(input_ids, attention_mask)`` to ``path``, the inputs with dynamic batch and sequence
    axes; ``outputs`` maps each output's name, in order, to its dynamic axes. Traced in eval mode; every
    submodule is left in the mode it had (the exporter itself would restore the *wrapper's* mode on all of
    them, putting a model in eval mode into training mode)."""
    example = torch.tensor([[101, 2000, 2001, 2002, 102, 0], [101, 2003, 2004, 102, 0, 0]], dtype=torch.long)
    example_mask = (example != 0).long()
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example, example_mask),
                str(path),
                dynamo=False,
                input_names=list(ONNX_INPUTS),
                output_names=list(outputs),
                dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in ONNX_INPUTS}, **outputs},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
    finally:
        for submodule, training in modes:
            submodule.training = training


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export the joint model's inference forward to ``path`` (dynamic batch and sequence axes)."""
    trace_to_onnx(_ExportableJointModel(model), path, {"event_logits": {0: "batch"}, "role_logits": {0: "batch", 1: "sequence"}})


@contextmanager
def _quiet_info_logs() -> Iterator[None]:
    """No INFO records while ORT's tools run: its transformer optimizer logs each fusion and its quantizer
    each tensor (some through the root logger), dozens of lines per export in any CLI that logs INFO."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        yield
    finally:
        logging.disable(previous)


def optimize_onnx(source: Path, target: Path, num_heads: int, hidden_size: int) -> None:
    """ORT's BERT fusions (attention, skip-LayerNorm, bias-GELU, ...) of ``source``, saved to ``target``."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_info_logs():
        optimized = optimize_model(
            str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0, use_gpu=False
        )
        fused = optimized.get_fused_operator_statistics()
        optimized.save_model_to_file(str(target))
    if not fused.get("Attention"):
        warnings.warn(f"ONNX Runtime fused no attention in the exported model ({fused}); it still runs, unfused", stacklevel=2)


def int8_fp32_nodes(graph: Any, patterns: tuple[str, ...] = ONNX_INT8_FP32_NODES, last_matmul: bool = ONNX_INT8_FP32_LAST_MATMUL) -> list[str]:
    """Names of the nodes of ``graph`` (an ``onnx.GraphProto``) that dynamic quantization leaves in fp32:
    those matching ``patterns``, and with ``last_matmul`` the last other matmul with a constant weight
    (ONNX graphs are stored in topological order, so it is the one nearest the outputs)."""
    matched = [node for node in graph.node if any(fnmatch.fnmatch(node.name, pattern) for pattern in patterns)]
    kept = [node.name for node in matched]
    # Dynamic quantization first rewrites each Gemm (a Linear on 2-d input: the event head) into MatMul + Add,
    # the MatMul named `<gemm>_MatMul`, and only then looks names up: both names are listed.
    kept += [f"{node.name}_MatMul" for node in matched if node.op_type == "Gemm"]
    if last_matmul:
        weights = {initializer.name for initializer in graph.initializer}
        others = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights and n.name not in kept]
        kept += others[-1:]
    return kept


def int8_settings(patterns: tuple[str, ...] = ONNX_INT8_FP32_NODES, last_matmul: bool = ONNX_INT8_FP32_LAST_MATMUL) -> dict[str, Any]:
    """The quantization recipe, for cache keys (a changed constant must not reuse an old file)."""
    return {
        "per_channel": ONNX_INT8_PER_CHANNEL, "reduce_range": ONNX_INT8_REDUCE_RANGE, "op_types": list(ONNX_INT8_OP_TYPES),
        "fp32_nodes": list(patterns), "fp32_last_matmul": last_matmul,
    }


def quantize_onnx(
    source: Path,
    target: Path,
    patterns: tuple[str, ...] = ONNX_INT8_FP32_NODES,
    last_matmul: bool = ONNX_INT8_FP32_LAST_MATMUL,
) -> list[str]:
    """ORT dynamic int8 (U8S8) of ``source``, saved to ``target``; returns the nodes kept in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    kept = int8_fp32_nodes(onnx.load(str(source)).graph, patterns, last_matmul)
    prepared = target.with_name(f"{target.stem}-prepared.onnx")
    # ORT's recommended pre-processing. Its symbolic shape inference cannot follow the export's mask
    # arithmetic ("Incomplete symbolic shape inference"), so only ONNX's shape inference runs; the graph is
    # optimised already.
    with _quiet_info_logs():
        quant_pre_process(str(source), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        quantize_dynamic(
            prepared,
            target,
            op_types_to_quantize=list(ONNX_INT8_OP_TYPES),
            per_channel=ONNX_INT8_PER_CHANNEL,
            reduce_range=ONNX_INT8_REDUCE_RANGE,
            weight_type=QuantType.QInt8,  # activations: QUInt8, the only type ORT's dynamic quantization has
            nodes_to_exclude=kept,
            # ONNX's shape inference knows nothing of ORT's fused operators (Attention, SkipLayerNormalization),
            # so the quantizer cannot type their outputs; every tensor of this graph is fp32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    prepared.unlink(missing_ok=True)
    return kept


def _cache_directory() -> Path:
    directory = onnx_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = Path(tempfile.gettempdir()) / "conflict-events-onnx"
        directory.mkdir(parents=True, exist_ok=True)
    return directory


def onnx_model_path(model: nn.Module, optimize: bool = True, quantize: bool = False) -> Path:
    """The cached ONNX file for ``model`` (exported, fused when ``optimize``, int8 when ``quantize``),
    creating it if needed."""
    import onnxruntime

    key = weights_sha256(model)[:32]
    versions = f"v{ONNX_EXPORT_VERSION}-torch{torch.__version__}-ort{onnxruntime.__version__}".replace("+", "_")
    recipe = "-int8-" + hashlib.sha256(json.dumps(int8_settings()).encode()).hexdigest()[:8] if quantize else ""
    path = _cache_directory() / f"{key}-{versions}-{'fused' if optimize else 'plain'}{recipe}.onnx"
    if path.is_file():
        return path
    # Write under temporary names in the same directory and rename, so concurrent processes never read
    # a half-written file.
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        exported = Path(scratch) / "exported.onnx"
        export_onnx(model, exported)
        if optimize:
            config = model.encoder.config
            fused = Path(scratch) / "fused.onnx"
            optimize_onnx(exported, fused, config.num_attention_heads, config.hidden_size)
            exported = fused
        if quantize:
            quantized = Path(scratch) / "int8.onnx"
            quantize_onnx(exported, quantized)
            exported = quantized
        os.replace(exported, path)
    return path


def onnx_session(path: Path, num_threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``: all graph optimisations, ``num_threads`` intra-op threads
    (default: torch's count, so both runtimes share one setting), sequential execution."""
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ModelError("the 'onnx' backends need the packages onnxruntime and onnx") from error
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = num_threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class ExportedJointModel:
    """The joint model's export, compiled by a runtime, as a :class:`~conflict_events.model.JointScorer`.

    ``model(input_ids=..., attention_mask=...)`` returns a :class:`JointOutput` of torch tensors. It never
    trains: ``train(True)`` is an error. Subclasses run the graph (:meth:`run`); ``runtime`` names their
    backends in error messages.
    """

    training = False
    runtime = "exported"

    def __init__(self, label_schema: LabelSchema, settings: HeadSettings):
        self.label_schema = label_schema
        self.settings = settings

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(event_logits, role_logits)`` for ``feeds`` (:data:`ONNX_INPUTS` -> int64 arrays)."""
        raise NotImplementedError

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> JointOutput:
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise ModelError(f"the '{self.runtime}' backends support single-segment inputs only (token_type_ids all zero)")
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids.numpy(), dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask.numpy(), dtype=np.int64),
        }
        event_logits, role_logits = self.run(feeds)
        return JointOutput(event_logits=torch.from_numpy(event_logits), role_logits=torch.from_numpy(role_logits))

    forward = __call__

    def eval(self) -> "ExportedJointModel":
        return self

    def train(self, mode: bool = True) -> "ExportedJointModel":
        if mode:
            raise ModelError(f"the '{self.runtime}' backends are for inference only; train the torch model")
        return self


class OnnxJointModel(ExportedJointModel):
    """An ONNX Runtime session of the joint model's export (the ``onnx`` backends)."""

    runtime = "onnx"

    def __init__(self, session: Any, label_schema: LabelSchema, settings: HeadSettings):
        super().__init__(label_schema, settings)
        self.session = session

    @classmethod
    def from_model(
        cls, model: nn.Module, optimize: bool = False, num_threads: int | None = None, quantize: bool = False
    ) -> "OnnxJointModel":
        """The session of ``model``'s cached export: fused by ORT's BERT optimizer when ``optimize``,
        dynamically quantized (:func:`quantize_onnx`) when ``quantize``."""
        if importlib.util.find_spec("onnxruntime") is None:  # pragma: no cover - a declared dependency
            raise ModelError("the 'onnx' backends need the packages onnxruntime and onnx")
        session = onnx_session(onnx_model_path(model, optimize=optimize, quantize=quantize), num_threads)
        return cls(session, model.label_schema, model.settings)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        event_logits, role_logits = self.session.run(list(ONNX_OUTPUTS), feeds)
        return event_logits, role_logits
