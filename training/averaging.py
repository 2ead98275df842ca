"""Exponential moving average of the weights (Polyak averaging), ``training.weight_averaging``.

Fine-tuning a small encoder on ~1,000 sentences gives dev scores that swing by a point between
neighbouring epochs; the average of the weights over the last few hundred steps sits in a flatter part
of the loss surface, an ensemble along the trajectory at the cost of one model. Training keeps updating
the raw weights; dev evaluation and the ``best/`` checkpoint use the averaged ones, so what is selected,
saved, logged and served is the averaged model.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class WeightAverager:
    """Shadow copy of ``model``'s trainable parameters, ``shadow = d * shadow + (1 - d) * weights``
    after every optimiser step.

    ``d`` ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n`` (as in
    TensorFlow's ExponentialMovingAverage with ``num_updates``), so the average does not drag the
    pretrained starting point along for the first thousand steps.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight averaging decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        self.shadow = [parameter.detach().clone() for parameter in self.parameters]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weights = [parameter.detach() for parameter in self.parameters]
        torch._foreach_lerp_(self.shadow, weights, 1.0 - self.current_decay())

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the raw ones come back after it,
        also when the block raises."""
        with torch.no_grad():
            raw = [parameter.detach().clone() for parameter in self.parameters]
            for parameter, average in zip(self.parameters, self.shadow):
                parameter.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, weights in zip(self.parameters, raw):
                    parameter.copy_(weights)

    def state_dict(self) -> dict:
        # Not the decay: it comes from the config, which may change on resume like any other recipe value.
        return {"updates": self.updates, "shadow": [tensor.clone() for tensor in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(
                f"weight averaging state holds {len(state['shadow'])} tensors, the model has {len(self.shadow)}"
            )
        self.updates = int(state["updates"])
        for tensor, saved in zip(self.shadow, state["shadow"]):
            tensor.copy_(saved)
