"""Where a training epoch's time goes: one epoch of `conflict-events train` under the torch profiler.

    python benchmarks/profile_training.py --config configs/cameo.yaml --data-root ../shared/data/conflibert

Runs `training.trainer.train` exactly as `train` does (one epoch, nothing registered or logged as a
model, a throw-away MLflow store and checkpoint folder), with `torch.profiler` recording CPU ops. The
training loop marks its phases with `record_function` scopes (`training/loop.py`): `train/batches`
(collating the next batch), `train/forward`, `train/backward` (incl. zeroing gradients),
`train/optimizer` (clipping, AdamW, schedule) and `train/evaluate` (the dev pass after the epoch).
Everything outside them (reading the corpus, tokenising it once, building the model, MLflow I/O) is
`setup and logging`.

Prints the wall time, the seconds and share of each phase, then the ops that take the most self CPU
time. The profiler adds a few per cent of overhead; compare shares, and take seconds per epoch from an
unprofiled run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import torch
from torch.profiler import ProfilerActivity, profile

from conflict_events.config import load_config
from conflict_events.training.trainer import train

PHASES = ("train/batches", "train/forward", "train/backward", "train/optimizer", "train/evaluate")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-root")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--top", type=int, default=15, help="How many ops to list.")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-training-") as scratch:
        overrides = [
            "training.epochs=1",
            "training.early_stopping_patience=null",
            "tracking.register_model=false",
            "tracking.log_model=false",
            f"training.output_dir={scratch}/checkpoints",
            *args.overrides,
        ]
        config = load_config(args.config, overrides, data_root=args.data_root)
        mlflow.set_tracking_uri(f"sqlite:///{Path(scratch) / 'mlflow.db'}")
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            train(config, show_progress=False)
        wall = time.perf_counter() - started

    averages = profiler.key_averages()
    seconds = {event.key: event.cpu_time_total / 1e6 for event in averages if event.key in PHASES}
    print(f"threads: {torch.get_num_threads()}; wall time (profiled): {wall:.1f} s")
    print(f"{'phase':<20} {'seconds':>8} {'share':>7}")
    for phase in PHASES:
        print(f"{phase:<20} {seconds.get(phase, 0.0):>8.2f} {100 * seconds.get(phase, 0.0) / wall:>6.1f}%")
    rest = wall - sum(seconds.values())
    print(f"{'setup and logging':<20} {rest:>8.2f} {100 * rest / wall:>6.1f}%")
    print()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
