"""Seconds per named stage of a pipeline, for the batch job's time breakdown (docs/INFERENCE.md, "Where
the time goes"). Plain Python, no torch: the batch job's producer process times its stages with it too."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Mapping


@dataclass
class StageTimes:
    """Seconds per named stage, summed over every time the stage ran (``time.perf_counter``; meant for a
    few calls per batch or per document, not per sentence)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def merge(self, other: Mapping[str, float]) -> None:
        for name, seconds in other.items():
            self.add(name, seconds)
