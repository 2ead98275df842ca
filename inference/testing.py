"""For tests and benchmarks of the inference stack: a small randomly initialised joint model (never trained)
and a local scoring server on loopback (start, wait until it answers, stop)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from conflict_events.labels import ActorRole, EventClass, LabelSchema
from conflict_events.model import HeadSettings, build_joint_model, save_joint_model

DEMO_SCHEMA = LabelSchema(
    event_classes=(
        EventClass(0, "neutral"),
        EventClass(1, "verbal_cooperation"),
        EventClass(2, "material_cooperation"),
        EventClass(3, "verbal_conflict"),
        EventClass(4, "material_conflict"),
    ),
    actor_roles=(ActorRole("S", "source"), ActorRole("T", "target"), ActorRole("R", "reciprocal")),
)


def save_random_joint_model(
    encoder_dir: str | Path,
    directory: str | Path,
    max_length: int = 64,
    multilabel: bool = False,
    seed: int = 0,
) -> Path:
    """A joint model with random heads on ``encoder_dir`` saved to ``directory`` (returned)."""
    import torch

    torch.manual_seed(seed)
    schema = LabelSchema(DEMO_SCHEMA.event_classes, DEMO_SCHEMA.actor_roles, multilabel=multilabel)
    loaded = build_joint_model(str(encoder_dir), schema, HeadSettings(max_length=max_length))
    return save_joint_model(loaded, directory)


# --- a scoring server on loopback --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(bin_dir: Path, model: str, port: int, server: str = "mlflow") -> list[str]:
    """``mlflow models serve`` (``server="mlflow"``) or ``conflict-events serve`` (``"guarded"``) on 127.0.0.1."""
    if server == "guarded":
        return [str(bin_dir / "conflict-events"), "serve", "-m", model, "--host", "127.0.0.1", "--port", str(port)]
    return [str(bin_dir / "mlflow"), "models", "serve", "-m", model, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]


def wait_until_up(server: subprocess.Popen, port: int, seconds: float, log_path: Path) -> None:
    """Return once ``/ping`` answers 200; an error when the server exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /ping within {seconds:.0f} s")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (uvicorn's workers too), SIGKILL after 20 s."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
