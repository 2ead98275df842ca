"""The batch job pins glibc's malloc thresholds so RSS does not creep up with the archive size."""

from __future__ import annotations

import sys

import pytest

from conflict_events.inference.allocator import pin_malloc_thresholds


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_thresholds_are_pinned_on_linux():
    assert pin_malloc_thresholds() is True


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert pin_malloc_thresholds() is False
