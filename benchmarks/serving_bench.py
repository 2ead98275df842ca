"""Requests/s, latency and memory of `mlflow models serve` on loopback, at 1, 4 and 8 concurrent clients.

    python benchmarks/serving_bench.py                                  # the tiny random test model
    python benchmarks/serving_bench.py --model /path/to/joint-model     # a joint-model directory
    MLFLOW_TRACKING_URI=sqlite:////tmp/x.db python benchmarks/serving_bench.py --model models:/conflict-events-quickstart/1

Starts `mlflow models serve --env-manager local` on 127.0.0.1 at a free port (the venv's `bin/` on PATH,
as uvicorn is exec'd from there) on the model: by default the tiny random model of the tests (a 2-layer,
32-wide BERT with the default encoder's tokenizer, `inference/testing.py`); a joint-model directory is
staged as a pyfunc with the default `inference` section; any other `--model` (`models:/`, `runs:/`, a
pyfunc directory) is served as is, with the `inference` section it was logged with.

Each request carries 1-20 sentences (seeded), one row each, taken from `data/sample/articles/*.txt` split
by the predictor's own `SentenceSplitter`, and its client's own `params.model_uri`. Every record is
checked: *mislabelled* records name another `model_uri` than the one their client sent, or a `doc_id` the
request did not send; *lost* rows are rows that came back without a record. Errors (any answer but 200,
timeouts, connection failures), mislabelled records and lost rows must all be zero: the exit status is 1
otherwise.

Bounded: each level stops after `--requests` requests or `--seconds` seconds, whichever comes first, and
the whole run (server start included) stops at `--max-seconds`; the server is killed on the way out.
Server RSS is that of its process tree (the `mlflow` CLI and its uvicorn worker), read with psutil before
the first request and after each level.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from conflict_events.config import InferenceConfig
from conflict_events.inference.testing import free_port, save_random_joint_model, serve_command, stop_server, wait_until_up
from conflict_events.model import default_encoder_path
from conflict_events.model_files import JOINT_CONFIG_FILE
from conflict_events.sentences import SentenceSplitter
from conflict_events.tracking import save_joint_model_pyfunc

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTICLES = REPO_ROOT / "data" / "sample" / "articles"
LEVELS = (1, 4, 8)
REQUEST_TIMEOUT = 75  # seconds; the scoring server gives up on a request at 60 s (504)


@dataclass
class LevelResult:
    clients: int
    latencies: list[float] = field(default_factory=list)
    sentences: int = 0
    errors: int = 0
    mislabelled: int = 0
    lost: int = 0
    seconds: float = 0.0
    rss_mb: float = 0.0
    first_error: str | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A joint-model directory, a pyfunc directory or an MLflow model URI "
                        "(default: the tiny random test model).")
    parser.add_argument("--requests", type=int, default=300, help="At most this many requests per level.")
    parser.add_argument("--seconds", type=float, default=30.0, help="At most this long per level.")
    parser.add_argument("--max-seconds", type=float, default=170.0, help="Hard cap on the whole run, server start included.")
    parser.add_argument("--max-sentences", type=int, default=20, help="Sentences per request: 1 to this many.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def sample_sentences() -> list[str]:
    splitter = SentenceSplitter()
    sentences = []
    for path in sorted(ARTICLES.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        sentences += [text[s.char_start : s.char_end] for s in splitter.split(text)]
    return sentences


def tiny_model(directory: Path) -> Path:
    """The tests' tiny model (tests/conftest.py: tiny_encoder_dir) as a pyfunc directory."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    encoder = directory / "tiny-encoder"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config, add_pooling_layer=False).save_pretrained(encoder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        source = default_encoder_path() / name
        if source.exists():
            (encoder / name).write_bytes(source.read_bytes())
    joint = save_random_joint_model(encoder, directory / "joint", max_length=64)
    return save_joint_model_pyfunc(joint, directory / "pyfunc", InferenceConfig())


def model_to_serve(model: str | None, directory: Path) -> str:
    if model is None:
        return str(tiny_model(directory))
    if (Path(model) / JOINT_CONFIG_FILE).is_file():
        return str(save_joint_model_pyfunc(Path(model), directory / "pyfunc", InferenceConfig()))
    return model


def start_server(model: str, port: int, log) -> subprocess.Popen:
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": str(venv_bin) + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.Popen(
        serve_command(venv_bin, model, port), env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so that uvicorn goes down with it
    )


def server_rss_mb(server: subprocess.Popen) -> float:
    try:
        root = psutil.Process(server.pid)
        processes = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in processes) / 2**20
    except psutil.Error:
        return float("nan")


def post(port: int, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Client:
    """One client: its own RNG, its own ``model_uri``, its own ids; it checks every record it gets back."""

    def __init__(self, number: int, sentences: list[str], max_sentences: int, seed: int):
        self.model_uri = f"models:/bench-client-{number}/{number + 1}"
        self.number = number
        self.rng = random.Random(seed * 1000 + number)
        self.sentences = sentences
        self.max_sentences = max_sentences
        self.sent = 0

    def request(self) -> tuple[bytes, list[str]]:
        count = self.rng.randint(1, self.max_sentences)
        start = self.rng.randrange(len(self.sentences))
        ids = [f"c{self.number}-r{self.sent}-s{i}" for i in range(count)]
        rows = [{"id": doc_id, "text": self.sentences[(start + i) % len(self.sentences)]} for i, doc_id in enumerate(ids)]
        self.sent += 1
        return json.dumps({"dataframe_records": rows, "params": {"model_uri": self.model_uri}}).encode(), ids

    def run_once(self, port: int, result: LevelResult, lock: threading.Lock) -> None:
        body, ids = self.request()
        started = time.perf_counter()
        try:
            status, payload = post(port, body)
        except OSError as error:
            status, payload = None, repr(error).encode()
        latency = time.perf_counter() - started
        mislabelled = lost = 0
        problem = None
        if status == 200:
            records = json.loads(payload)["predictions"]
            sent = set(ids)
            mislabelled = sum(1 for r in records if r["model_uri"] != self.model_uri or r["doc_id"] not in sent)
            lost = len(sent - {r["doc_id"] for r in records})
        else:
            problem = f"HTTP {status}: {payload[:300]!r}"
        with lock:
            result.latencies.append(latency)
            if problem:
                result.errors += 1
                result.first_error = result.first_error or problem
            else:
                result.sentences += len(ids)
            result.mislabelled += mislabelled
            result.lost += lost


def run_level(clients: int, port: int, sentences: list[str], args: argparse.Namespace, deadline: float) -> LevelResult:
    result = LevelResult(clients)
    lock = threading.Lock()
    budget = [args.requests]  # requests left in this level, shared by its clients
    stop_at = min(deadline, time.monotonic() + args.seconds)

    def work(number: int) -> None:
        client = Client(number, sentences, args.max_sentences, args.seed)
        while time.monotonic() < stop_at:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            client.run_once(port, result, lock)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0-100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> int:
    args = parse_args()
    deadline = time.monotonic() + args.max_seconds
    sentences = sample_sentences()
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), load average {os.getloadavg()[0]:.2f}")
    print(f"sentences: {len(sentences)} from {ARTICLES.relative_to(REPO_ROOT)}; 1-{args.max_sentences} per request")
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as scratch:
        model = model_to_serve(args.model, Path(scratch))
        port = free_port()
        log_path = Path(scratch) / "serve.log"
        started = time.monotonic()
        log = log_path.open("wb")
        server = start_server(model, port, log)
        try:
            wait_until_up(server, port, max(1.0, deadline - time.monotonic()), log_path)
            print(f"model: {args.model or 'tiny random test model'}; server up in {time.monotonic() - started:.1f} s")
            rss_before = server_rss_mb(server)
            # One request for warm-up (first-call allocations), not measured.
            post(port, Client(99, sentences, args.max_sentences, args.seed).request()[0])
            results = []
            for clients in LEVELS:
                if time.monotonic() >= deadline:
                    print(f"stopped before {clients} clients: --max-seconds reached")
                    break
                result = run_level(clients, port, sentences, args, deadline)
                result.rss_mb = server_rss_mb(server)
                results.append(result)
            alive = server.poll() is None
        finally:
            stop_server(server)
            log.close()

    print()
    print("| clients | requests | sentences | errors | mislabelled | lost | req/s | sentences/s | p50 ms | p99 ms | server RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        rate = len(r.latencies) / r.seconds if r.seconds else float("nan")
        print(f"| {r.clients} | {len(r.latencies)} | {r.sentences} | {r.errors} | {r.mislabelled} | {r.lost} | "
              f"{rate:.1f} | {r.sentences / r.seconds:.1f} | {percentile(r.latencies, 50) * 1000:.0f} | "
              f"{percentile(r.latencies, 99) * 1000:.0f} | {r.rss_mb:.0f} |")
    print(f"\nserver RSS before the first request {rss_before:.0f} MB, after the last {results[-1].rss_mb if results else rss_before:.0f} MB; "
          f"server still up at the end: {alive}; load average {os.getloadavg()[0]:.2f}")
    for r in results:
        if r.first_error:
            print(f"first error at {r.clients} clients: {r.first_error}")
    bad = sum(r.errors + r.mislabelled + r.lost for r in results)
    return 1 if bad or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
