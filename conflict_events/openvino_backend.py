"""OpenVINO backends: the joint model's plain ONNX export (:func:`~conflict_events.backends.export_onnx`, the
graph the ``onnx`` backend runs) converted by :func:`openvino.convert_model` and compiled for the CPU.

- ``openvino``: fp32. Compiled with ``INFERENCE_PRECISION_HINT`` f32: without it OpenVINO runs the matmuls in
  bf16 on CPUs with AVX512-BF16 or AMX, silently, and this backend is the fp32 one.
- ``openvino-int8``: NNCF post-training quantization (:func:`quantize_int8`): int8 weights *and* int8
  activations, whose ranges are calibrated once on the bundled sample sentences (:func:`calibration_batches`),
  with NNCF's transformer scheme and SmoothQuant.
- ``openvino-w8``: NNCF weight compression (:func:`compress_weights_int8`): int8 weights, data-free; the
  activations and the arithmetic stay fp32 (the matmul kernels decompress the weights as they read them), so
  it saves memory and bandwidth rather than compute.

Both int8 recipes keep the heads and the embedding tables in fp32 (:data:`OPENVINO_INT8_FP32_SCOPES`).

Each graph is saved as OpenVINO IR (``.xml`` + ``.bin``) in the ONNX files' cache directory
(:func:`~conflict_events.backends.onnx_cache_dir`), keyed by the weights' sha256, the torch/OpenVINO/NNCF
versions and a hash of the recipe (:func:`recipe_settings`), so a second load only compiles. Each compiled
model runs with ``INFERENCE_NUM_THREADS`` = torch's thread count (one setting for every runtime) and the
``LATENCY`` hint: batches come one after another, each to finish as soon as possible.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from conflict_events.backends import (
    ONNX_EXPORT_VERSION,
    ONNX_OUTPUTS,
    OPENVINO_BACKENDS,
    ExportedJointModel,
    _cache_directory,
    _quiet_info_logs,
    export_onnx,
    weights_sha256,
)
from conflict_events.errors import ModelError
from conflict_events.labels import LabelSchema
from conflict_events.model import HeadSettings, LoadedModel
from conflict_events.prediction import encode_texts, padded_batch

# Bump when what is saved changes (the conversion, a recipe's code), so stale cache entries are not reused.
OPENVINO_IR_VERSION = 1

# CPU plugin properties of every compiled model. LATENCY: one stream with all the threads, each call as fast
# as possible (THROUGHPUT would split the threads into streams for concurrent requests, which the predictor,
# calling batch after batch, never makes). f32: see the module docstring.
OPENVINO_PERFORMANCE_HINT = "LATENCY"
OPENVINO_INFERENCE_PRECISION = "f32"

# Kept in fp32 by both int8 recipes: regexes (NNCF matches them from the start of the name) over the op names
# of the converted graph, which keep the export's node names (`/role_head/MatMul`, `/event_head/Gemm/
# WithoutBiases`, `/embeddings/word_embeddings/Gather`):
# - both heads and attention pooling's scorer, as the onnx-int8 backend keeps them (backends.ONNX_INT8_FP32_NODES):
#   a negligible share of the FLOPs, and their outputs are the decisions;
# - the embedding tables, which NNCF would store in int8 too (the other int8 backends never quantize a lookup:
#   it has no arithmetic to speed up). On the tiny random test model int8 embeddings were nearly all of the
#   error: with them, role logits moved by up to 0.012 and 14 of the 227 sample sentences changed actor spans
#   (both recipes); without them by up to 0.0007 (int8) and 0.0002 (w8), and no sentence changed.
OPENVINO_INT8_FP32_SCOPES = ("/event_head/.*", "/role_head/.*", "/pool_scorer/.*", "/embeddings/.*")

# openvino-int8 (nncf.quantize). MIXED: symmetric int8 weights, asymmetric activations (GELU outputs are
# nearly all >= 0: a symmetric range would leave them half its levels); NNCF's default for the transformer
# scheme, and the setting of NNCF's own BERT reference runs (its tests/post_training/model_scope.py).
OPENVINO_INT8_PRESET = "mixed"
# SmoothQuant's alpha for MatMul inputs (NNCF's default; it runs only for ModelType.TRANSFORMER). Trained BERTs
# have a few outlier channels in their hidden states (Bondarenko et al. 2021, "Understanding and overcoming
# the challenges of efficient transformer quantization") that set the per-tensor activation scale and leave
# the other channels few int8 levels; SmoothQuant divides each input channel by a scale and multiplies the
# weight's row by it (the same product), moving the outliers into the weights, whose scales are per channel.
# A negative value turns it off. The tiny random test model has no such outliers, so it cannot show the gain
# (with or without it, no sample sentence changed its event and at most one its actor spans): the dev
# measurement of a trained model decides.
OPENVINO_INT8_SMOOTH_QUANT_ALPHA = 0.95
# NNCF's fast bias correction (its default, and what its BERT reference runs): each quantized layer's bias is
# shifted by the mean error of its output, from the calibration statistics already collected. The slower
# BiasCorrection (False) re-runs sub-graphs per layer; NNCF suggests it only when accuracy falls short.
OPENVINO_INT8_FAST_BIAS_CORRECTION = True
# Weights in 7 bits for every MatMul ("enable"), not only the first layer (NNCF's default, "first_layer_only",
# which gave the test model the same logits as "disable": a BERT has no first convolution). The saturation that
# onnx-int8's reduce_range avoids: without VNNI (AVX2 CPUs, AVX-512 before Cascade Lake) the u8 x s8 kernels
# sum two products into a saturating int16 (VPMADDUBSW), which 7-bit weights cannot overflow. On the tiny random
# test model on an AVX2 CPU, 8-bit weights moved role logits by up to 0.0045 and changed the actor spans of 3
# of the 227 sample sentences, 7-bit ones by up to 0.0007 and none. With VNNI the bit costs a little precision.
OPENVINO_INT8_OVERFLOW_FIX = "enable"
# Calibration: sentences of the bundled sample corpus (data/sample/events.jsonl, only their text is read),
# tokenised as the predictor does, in length-sorted batches of this many sentences padded to the longest (so the
# padding is what inference sees), the batches shuffled with a fixed seed (NNCF reads the first
# `subset_size`, which must span all lengths). The subset is counted in batches: 64 covers the whole corpus.
CALIBRATION_SENTENCES = Path(__file__).resolve().parents[1] / "data" / "sample" / "events.jsonl"
CALIBRATION_BATCH_SENTENCES = 4
CALIBRATION_SUBSET_SIZE = 64
CALIBRATION_SEED = 0

# openvino-w8 (nncf.compress_weights): asymmetric int8 per output channel, NNCF's default INT8 mode.
OPENVINO_W8_MODE = "int8_asym"


# Usage data. `import openvino` sends an "import" event to Intel (Google Analytics, through openvino-telemetry;
# openvino/tools/ovc/__init__.py), as do openvino.convert_model and NNCF's quantize/compress_weights, unless the
# user opted out: with no consent file they take consent as given, and write a client id under ~/intel/.
# conflict-events sends nothing on a user's behalf. What turns them off without touching the user's home:
# - openvino: its telemetry singleton decides consent once, at import, and declines where CI=true (it is
#   created with disable_in_ci=True), so openvino is imported with CI=true set for the import only;
# - NNCF: NNCF_CI set (read once, at import; its only effect is that NNCF's telemetry becomes a stub);
# - openvino.convert_model re-initialises that singleton under another app name, deciding consent again, so it
#   runs with CI=true set too (:func:`convert_export`).
TELEMETRY_OFF_AT_IMPORT = {"openvino": {"CI": "true"}, "nncf": {"NNCF_CI": "1", "CI": "true"}}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_without_telemetry(package: str) -> Any:
    """``package`` (openvino or nncf) imported with its usage reporting off (:data:`TELEMETRY_OFF_AT_IMPORT`).
    openvino first: NNCF imports it, and a process imports each once."""
    if package == "nncf":
        import_without_telemetry("openvino")
    with _environment(TELEMETRY_OFF_AT_IMPORT.get(package, {})):
        return importlib.import_module(package)


def _require(package: str, backend: str) -> Any:
    """``package`` imported (:func:`import_without_telemetry`), or a ModelError naming what ``backend`` needs
    (apply_backend checks first; this is for direct callers)."""
    try:
        return import_without_telemetry(package)
    except ImportError as error:
        raise ModelError(f"the '{backend}' backend needs the package {package} (pip install {package})") from error


# --- calibration data ------------------------------------------------------------------------------------
def sample_sentences(path: Path | None = None) -> list[str]:
    """The ``text`` of every line of the sample corpus at ``path`` (default :data:`CALIBRATION_SENTENCES`)."""
    path = path or CALIBRATION_SENTENCES
    if not path.is_file():
        raise ModelError(
            f"openvino-int8 calibrates on the bundled sample sentences, {path}, which are not there "
            "(run from a checkout of the repository, where data/sample ships)"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def calibration_batches(loaded: LoadedModel, texts: Sequence[str], batch_sentences: int | None = None) -> list[dict[str, np.ndarray]]:
    """``texts`` as the model's inputs (``input_ids``, ``attention_mask``), ``batch_sentences`` per batch
    (default :data:`CALIBRATION_BATCH_SENTENCES`): length-sorted, padded per batch, in a fixed shuffled order."""
    batch_sentences = batch_sentences or CALIBRATION_BATCH_SENTENCES
    encoded = encode_texts(loaded, texts)
    by_length = sorted(range(len(texts)), key=lambda index: len(encoded.input_ids[index]))
    batches = []
    for start in range(0, len(by_length), batch_sentences):
        input_ids, attention_mask = padded_batch(encoded, by_length[start:start + batch_sentences], loaded.tokenizer.pad_token_id)
        batches.append({"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
    random.Random(CALIBRATION_SEED).shuffle(batches)
    return batches


# --- the recipes -----------------------------------------------------------------------------------------
def recipe_settings(backend: str, subset_size: int, texts: Sequence[str]) -> dict[str, Any]:
    """What ``backend``'s graph is made with, for its cache key (a changed constant or calibration sentence
    must not reuse an old file)."""
    if backend == "openvino":
        return {}
    if backend == "openvino-w8":
        return {"mode": OPENVINO_W8_MODE, "fp32": list(OPENVINO_INT8_FP32_SCOPES)}
    return {
        "preset": OPENVINO_INT8_PRESET, "smooth_quant_alpha": OPENVINO_INT8_SMOOTH_QUANT_ALPHA,
        "fast_bias_correction": OPENVINO_INT8_FAST_BIAS_CORRECTION, "overflow_fix": OPENVINO_INT8_OVERFLOW_FIX,
        "fp32": list(OPENVINO_INT8_FP32_SCOPES), "batch_sentences": CALIBRATION_BATCH_SENTENCES,
        "subset_size": subset_size, "seed": CALIBRATION_SEED,
        "sentences": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
    }


def fp32_scope(nncf: Any) -> Any:
    """The ops both int8 recipes leave in fp32. Not validated: the pooling scorer exists only in models with
    attention pooling (the tests check that the heads stay fp32)."""
    return nncf.IgnoredScope(patterns=list(OPENVINO_INT8_FP32_SCOPES), validate=False)


def quantize_int8(ov_model: Any, batches: Sequence[dict[str, np.ndarray]], subset_size: int) -> Any:
    """NNCF post-training int8 of ``ov_model`` (an ``openvino.Model``), calibrated on the first ``subset_size``
    of ``batches``."""
    nncf = _require("nncf", "openvino-int8")
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    advanced = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix(OPENVINO_INT8_OVERFLOW_FIX),
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=OPENVINO_INT8_SMOOTH_QUANT_ALPHA),
    )
    with _quiet_info_logs():
        return nncf.quantize(
            ov_model,
            nncf.Dataset(list(batches)),
            model_type=nncf.ModelType.TRANSFORMER,
            preset=nncf.QuantizationPreset(OPENVINO_INT8_PRESET),
            subset_size=max(1, min(subset_size, len(batches))),
            fast_bias_correction=OPENVINO_INT8_FAST_BIAS_CORRECTION,
            ignored_scope=fp32_scope(nncf),
            advanced_parameters=advanced,
        )


def compress_weights_int8(ov_model: Any) -> Any:
    """NNCF's data-free int8 weight compression of ``ov_model``'s encoder matmul weights (the CPU plugin
    keeps them int8 and decompresses them in its matmul kernels)."""
    nncf = _require("nncf", "openvino-w8")
    with _quiet_info_logs():
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode(OPENVINO_W8_MODE), ignored_scope=fp32_scope(nncf))


# --- conversion and the cache ----------------------------------------------------------------------------
def convert_export(model: torch.nn.Module, scratch: Path) -> Any:
    """The joint model's plain ONNX export (written under ``scratch``) as an ``openvino.Model``: dynamic batch
    and sequence axes, as exported."""
    openvino = _require("openvino", "openvino")
    exported = scratch / "exported.onnx"
    export_onnx(model, exported)
    # convert_model, not Core.read_model: it also runs OpenVINO's offline transformations (attention fused into
    # ScaledDotProductAttention, ...), which NNCF's recipes expect (they leave the fused attention alone).
    with _environment(TELEMETRY_OFF_AT_IMPORT["openvino"]):
        return openvino.convert_model(str(exported))


def _versions(backend: str) -> str:
    openvino = _require("openvino", backend)
    # OpenVINO's version carries its build ("2026.4.1-22982-<commit>-releases/2026/4"): the release is enough.
    release = openvino.__version__.split("-")[0]
    versions = f"ov{OPENVINO_IR_VERSION}-onnx{ONNX_EXPORT_VERSION}-torch{torch.__version__}-openvino{release}"
    if backend != "openvino":
        versions += f"-nncf{_require('nncf', backend).__version__}"
    return versions.replace("+", "_")


def ir_cache_path(loaded: LoadedModel, backend: str, subset_size: int, texts: Sequence[str]) -> Path:
    """Where ``backend``'s IR of ``loaded``'s joint model is cached: named by the weights' sha256, the versions
    (:func:`_versions`) and a hash of :func:`recipe_settings`."""
    recipe = hashlib.sha256(json.dumps(recipe_settings(backend, subset_size, texts), sort_keys=True).encode()).hexdigest()[:8]
    return _cache_directory() / f"{weights_sha256(loaded.joint_model)[:32]}-{_versions(backend)}-{backend}-{recipe}.xml"


def openvino_ir_path(
    loaded: LoadedModel,
    backend: str = "openvino",
    subset_size: int | None = None,
    calibration_texts: Sequence[str] | None = None,
) -> Path:
    """The cached IR (``.xml``; its ``.bin`` beside it) of ``loaded``'s joint model for ``backend`` (one of
    ``openvino``, ``openvino-int8``, ``openvino-w8``), made if needed. ``openvino-int8`` calibrates on
    ``calibration_texts`` (default: :func:`sample_sentences`), ``subset_size`` batches of them (default
    :data:`CALIBRATION_SUBSET_SIZE`)."""
    if backend not in OPENVINO_BACKENDS:
        raise ModelError(f"not an OpenVINO backend: '{backend}' (expected one of: {', '.join(OPENVINO_BACKENDS)})")
    subset_size = subset_size or CALIBRATION_SUBSET_SIZE
    texts: list[str] = []
    if backend == "openvino-int8":
        texts = sample_sentences() if calibration_texts is None else list(calibration_texts)
    path = ir_cache_path(loaded, backend, subset_size, texts)
    if path.is_file() and path.with_suffix(".bin").is_file():
        return path
    openvino = _require("openvino", backend)
    # Written under temporary names in the cache directory, then renamed (the .bin first: a reader that finds
    # the .xml finds its weights), so concurrent processes never read a half-written file.
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        ov_model = convert_export(loaded.joint_model, Path(scratch))
        if backend == "openvino-int8":
            ov_model = quantize_int8(ov_model, calibration_batches(loaded, texts), subset_size)
        elif backend == "openvino-w8":
            ov_model = compress_weights_int8(ov_model)
        saved = Path(scratch) / "model.xml"
        # save_model stores fp32 weights as fp16 unless told not to: the fp32 backend would not be fp32.
        openvino.save_model(ov_model, str(saved), compress_to_fp16=False)
        os.replace(saved.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(saved, path)
    return path


def compile_ir(path: Path, num_threads: int | None = None) -> Any:
    """The IR at ``path`` compiled for the CPU: ``num_threads`` inference threads (default: torch's count),
    the latency hint, fp32 arithmetic where the graph is not int8."""
    openvino = _require("openvino", "openvino")
    config = {
        "INFERENCE_NUM_THREADS": str(num_threads or torch.get_num_threads()),
        "PERFORMANCE_HINT": OPENVINO_PERFORMANCE_HINT,
        "INFERENCE_PRECISION_HINT": OPENVINO_INFERENCE_PRECISION,
    }
    return openvino.Core().compile_model(str(path), "CPU", config)


class OpenVinoJointModel(ExportedJointModel):
    """An OpenVINO compiled model of the joint model's export (the ``openvino`` backends).

    Serving calls one model from several threads: each thread gets its own infer request (one request is
    not safe to share), all on the one compiled model.
    """

    runtime = "openvino"

    def __init__(self, compiled: Any, label_schema: LabelSchema, settings: HeadSettings):
        super().__init__(label_schema, settings)
        self.compiled = compiled
        self._requests = threading.local()

    @classmethod
    def from_loaded(
        cls,
        loaded: LoadedModel,
        backend: str = "openvino",
        num_threads: int | None = None,
        subset_size: int | None = None,
    ) -> "OpenVinoJointModel":
        """``loaded``'s joint model compiled for ``backend`` from its cached IR (:func:`openvino_ir_path`)."""
        path = openvino_ir_path(loaded, backend, subset_size)
        return cls(compile_ir(path, num_threads), loaded.label_schema, loaded.settings)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        outputs = request.infer(feeds)  # copies the outputs (share_outputs=False): the next call reuses the buffers
        event_logits, role_logits = (outputs[name] for name in ONNX_OUTPUTS)
        return event_logits, role_logits
