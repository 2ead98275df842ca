"""Numeric backends for inference: the same joint model and the same decoding, computed differently.

- ``torch``: the fp32 model as loaded (eval mode, no autograd state).
- ``int8``: dynamic int8 quantization of the *encoder's* ``nn.Linear`` layers
  (:func:`torch.ao.quantization.quantize_dynamic`): weights are stored as int8 once, activations are
  quantized per batch on the fly. The two heads stay fp32: they hold a negligible share of the FLOPs,
  and keeping them exact keeps event decisions and BIO scores closest to the fp32 model.

:func:`apply_backend` never modifies the model it is given (a quantized copy is returned), so a caller can
compare backends side by side, as ``conflict-events bench`` does. ``InferenceConfig.backend`` names one of
:data:`BACKENDS`.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from conflict_events.errors import ModelError
from conflict_events.model import LoadedModel

BACKENDS = ("torch", "int8")


def apply_backend(loaded: LoadedModel, backend: str) -> LoadedModel:
    """``loaded`` prepared for inference with ``backend`` (one of :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown inference backend '{backend}' (expected one of: {', '.join(BACKENDS)})")
    if backend == "torch":
        loaded.model.eval()
        loaded.model.requires_grad_(False)
        return loaded
    return LoadedModel(quantize_encoder(loaded.model), loaded.tokenizer, source=loaded.source)


def quantize_encoder(model: nn.Module) -> nn.Module:
    """A copy of the joint model whose encoder Linear layers run in int8 (dynamic quantization)."""
    quantized = copy.deepcopy(model)
    quantized.eval()
    quantized.requires_grad_(False)
    # torch >= 2.10 flags eager-mode quantization as deprecated in favour of torchao (not a dependency);
    # it still works in the pinned torch, and the warnings would only clutter every `predict` run.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(quantiz|torchao).*")
        quantized.encoder = torch.ao.quantization.quantize_dynamic(
            quantized.encoder, {nn.Linear}, dtype=torch.qint8, inplace=True
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
