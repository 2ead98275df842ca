"""The Spark engine at 1x and 10x of an archive (issue 19): throughput against the local engine on the same
input and model, peak memory of the driver and the executors, partitions.

    python benchmarks/spark_scale.py                                  # models:/conflict-events@champion
    python benchmarks/spark_scale.py --model /path/to/joint-model --copies 1 10 --driver-memory 512m
    python benchmarks/spark_scale.py --model DIR --copies 1 --limit-docs 3   # a smoke run, seconds not minutes

Input: ``--copies`` folders, each ``N`` copies of ``IndiaPoliceEvents_docs/dev.tsv`` (165 articles) as files
``copy-00.tsv`` ... (document ids ``copy-NN-<line>``: unique per copy), built under ``--workdir``. Each engine
runs as ``conflict-events predict`` in its own process (``--format parquet --no-progress``, the same
``--model`` and ``--config``): the local engine, then the Spark engine in ``--master`` (default ``local[2]``)
with ``spark.driver.memory`` capped at ``--driver-memory``. The process tree is polled every ``--interval``
seconds (psutil): the Python driver (the CLI's process), the JVM (in local mode it hosts the driver and the
executors' JVM side), and the executors' Python workers (PySpark's daemon and the workers it forks; their
memory is summed as PSS, which counts pages the forks share once, and the largest single worker's RSS is
shown too). Seconds are wall-clock of the whole process (JVM start and model loading included) and the
job's own time as it reports it. The last lines compare each size with the first (driver peaks) and the
engines (sentences/s). Run it on an otherwise idle machine: timings of a busy CPU say little.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "conflibert" / "IndiaPoliceEvents_docs" / "dev.tsv"
MB = 1024 * 1024


@dataclass
class Peaks:
    """Peak memory of a process tree, by role, in bytes."""

    driver: int = 0
    jvm: int = 0
    workers_pss: int = 0
    worker_rss: int = 0
    workers_seen: set[int] = field(default_factory=set)


def _role(process: psutil.Process) -> str:
    try:
        name = process.name()
        cmdline = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    if name == "java" or cmdline.startswith("java ") or "/java " in cmdline:
        return "jvm"
    if "python" in name or "python" in cmdline.split(" ")[0]:
        return "worker"
    return "other"  # the spark-submit shell that execs java, ps, ...


def _poll(root: psutil.Process, peaks: Peaks, stop: threading.Event, interval: float) -> None:
    while not stop.is_set():
        try:
            peaks.driver = max(peaks.driver, root.memory_info().rss)
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        pss = 0
        for child in children:
            role = _role(child)
            try:
                if role == "jvm":
                    peaks.jvm = max(peaks.jvm, child.memory_info().rss)
                elif role == "worker":
                    peaks.workers_seen.add(child.pid)
                    info = child.memory_full_info()
                    pss += getattr(info, "pss", info.rss)
                    peaks.worker_rss = max(peaks.worker_rss, info.rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peaks.workers_pss = max(peaks.workers_pss, pss)
        stop.wait(interval)


@dataclass
class Run:
    engine: str
    copies: int
    documents: int
    sentences: int
    wall_seconds: float
    job_seconds: float | None
    partitions: int | None
    model_loads: int | None  # the Spark manifest's prediction_workers: Python workers that loaded the model
    peaks: Peaks
    command: list[str]

    @property
    def sentences_per_second(self) -> float:
        return self.sentences / self.wall_seconds


def build_input(data: Path, folder: Path, copies: int, limit_docs: int | None) -> Path:
    """``copies`` files, each the first ``limit_docs`` lines (all by default) of ``data``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
    text = "".join(lines[:limit_docs] if limit_docs else lines)
    for copy in range(copies):
        (folder / f"copy-{copy:02d}.tsv").write_text(text, encoding="utf-8")
    return folder


def run_engine(engine: str, copies: int, folder: Path, output: Path, args) -> Run:
    if output.exists():
        shutil.rmtree(output)
    command = [str(Path(sys.executable).parent / "conflict-events"), "predict", "-m", args.model, "-i", str(folder),
               "-o", str(output), "--format", "parquet", "--no-progress"]
    if args.config:
        command += ["--config", args.config]
    if engine == "spark":
        command += ["--engine", "spark", "--spark-master", args.master, "--spark-conf", f"spark.driver.memory={args.driver_memory}"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks, stop = Peaks(), threading.Event()
    poller = threading.Thread(target=_poll, args=(psutil.Process(process.pid), peaks, stop, args.interval), daemon=True)
    poller.start()
    out, _ = process.communicate()
    wall = time.perf_counter() - started
    stop.set()
    poller.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{out[-4000:]}")
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    reported = re.search(r"^time:\s+([\d.]+)s", out, re.MULTILINE)
    return Run(
        engine=engine,
        copies=copies,
        documents=manifest["totals"]["documents"],
        sentences=manifest["totals"]["sentences"],
        wall_seconds=wall,
        job_seconds=manifest.get("seconds") or (float(reported.group(1)) if reported else None),
        partitions=(manifest.get("records") or {}).get("partitions"),
        model_loads=manifest.get("prediction_workers"),
        peaks=peaks,
        command=command,
    )


def _mb(value: int) -> str:
    return f"{value / MB:,.0f}" if value else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models:/conflict-events@champion", help="--model of both engines")
    parser.add_argument("--config", default=None, help="--config of both engines (their inference section)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the archive file copied N times")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--limit-docs", type=int, default=None, help="the first N documents of --data only (smoke runs)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="512m")
    parser.add_argument("--engines", nargs="+", default=["local", "spark"], choices=["local", "spark"])
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between memory polls")
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "spark_scale"))
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    runs: list[Run] = []
    for copies in args.copies:
        folder = build_input(Path(args.data), workdir / f"input-{copies}x", copies, args.limit_docs)
        for engine in args.engines:
            run = run_engine(engine, copies, folder, workdir / f"output-{engine}-{copies}x", args)
            runs.append(run)
            print(f"{engine} {copies}x: {run.sentences} sentences in {run.wall_seconds:.1f} s", flush=True)

    print()
    print("| engine | input | documents | sentences | partitions | wall s | job s | sentences/s (wall) | "
          "Python driver peak MB | JVM peak MB | Python workers peak MB (PSS sum) | largest worker MB | workers | "
          "model loads |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        job = f"{run.job_seconds:.1f}" if run.job_seconds is not None else "-"
        print(f"| {run.engine} | {run.copies}x | {run.documents:,} | {run.sentences:,} | {run.partitions or '-'} | "
              f"{run.wall_seconds:.1f} | {job} | {run.sentences_per_second:.1f} | {_mb(run.peaks.driver)} | "
              f"{_mb(run.peaks.jvm)} | {_mb(run.peaks.workers_pss)} | {_mb(run.peaks.worker_rss)} | "
              f"{len(run.peaks.workers_seen) or '-'} | {run.model_loads or '-'} |")
    print()
    by = {(run.engine, run.copies): run for run in runs}
    first = args.copies[0]
    for copies in args.copies:
        local, spark = by.get(("local", copies)), by.get(("spark", copies))
        if local and spark:
            print(f"{copies}x: spark/local sentences/s = {spark.sentences_per_second / local.sentences_per_second:.2f}")
        if copies != first and spark and ("spark", first) in by:
            base = by[("spark", first)].peaks
            print(f"{copies}x vs {first}x, Spark: Python driver peak x{spark.peaks.driver / base.driver:.3f}, "
                  f"JVM peak x{spark.peaks.jvm / base.jvm:.3f}" if base.driver and base.jvm else "")
    print()
    spark_run = next((run for run in runs if run.engine == "spark"), None)
    if spark_run:
        print("command: " + " ".join(spark_run.command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
