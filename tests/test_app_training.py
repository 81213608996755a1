"""The live trainer inside the app: "train now" publishes a new version; a kill -9 loses no label."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from gradio_client import Client, handle_file

from conftest import REPO
from rankui.app import build_app, launch_kwargs
from rankui.settings import Settings
from rankui.store import LabelStore


def label_some(client, who: str, count: int) -> list[str]:
    examples = client.predict(api_name="/examples")
    client.predict([handle_file(p) for p in examples], "rank by the number of shapes", "rac", "", api_name="/rank")
    acks = []
    for k in range(count):
        left, right = 1 + k % 5, 6 + (k * 2) % 5
        # left is always the higher-ranked image: labels agree with the served model, so a round
        # keeps held-out accuracy at 1 and publishes
        acks.append(client.predict(left, right, "left", who, "correction", api_name="/label"))
    return acks


def wait_for(predicate, timeout: float = 240.0, every: float = 0.5):
    """Poll until predicate() is truthy (a deadlock guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met")


def test_train_now_publishes_a_new_version(tmp_path):
    settings = Settings.from_args(["--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1", "--train-steps", "8"])
    demo = build_app(settings)
    demo.launch(prevent_thread_lock=True, quiet=True, **{**launch_kwargs(settings), "server_port": None})
    try:
        client = Client(demo.local_url, verbose=False, analytics_enabled=False)
        with pytest.raises(Exception, match="no labels to train on"):
            client.predict(api_name="/train_now")
        label_some(client, "alice", 8)
        client.predict(3, "all words", api_name="/attention")  # maps on screen, to be redrawn
        client.predict(1, 2, "mean", "mean", api_name="/pair_attention")
        assert "requested" in client.predict(api_name="/train_now")
        polls = []

        def published():
            polls.append(client.predict(api_name="/train_status"))
            return polls[-1][0]["rounds"] >= 1 and polls[-1][0]

        status = wait_for(published)
        redrawn = [p for p in polls if isinstance(p[5], str)]  # heatmap, pair maps: files, not "no change"
        assert len(redrawn) == 1 and isinstance(redrawn[0][6], str) and isinstance(redrawn[0][7], str)
        assert status["last_error"] is None and status["curve"][0]["labels"] > 0
        assert status["curve"][0]["published"] and status["version"] == 1
        assert (tmp_path / "data" / "models" / "v0001.safetensors").is_file()
        # a ranking request gets the served version's number
        message = client.predict([handle_file(p) for p in client.predict(api_name="/examples")], "x", "rac", "",
                                 api_name="/rank")[-1]
        assert f"model version {status['version']}" in message
    finally:
        demo.rankui_context.worker.stop()
        demo.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(data_dir, port):
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--host", "127.0.0.1", "--data-dir",
                             str(data_dir), "--train-steps", "8"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def connect():
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}")
        try:
            return Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        except Exception:  # noqa: BLE001 - not up yet
            return None
    return proc, wait_for(connect, timeout=180)


def test_kill_9_loses_no_acknowledged_label_and_restart_serves_the_last_version(tmp_path):
    data = tmp_path / "data"
    proc, client = start_app(data, free_port())
    try:
        label_some(client, "bob", 12)
        client.predict(api_name="/train_now")
        status = wait_for(lambda: (s := client.predict(api_name="/train_status")[0])["rounds"] >= 1 and s)
        published = status["version"]
        assert published == 1 and status["curve"][0]["published"]
        acks = label_some(client, "bob", 6)  # acknowledged right before the kill
        assert all(a.startswith("Saved:") for a in acks)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert LabelStore(data).count("bob") == 18
    proc, client = start_app(data, free_port())
    try:
        status = client.predict(api_name="/train_status")[0]
        assert status["version"] == published  # the newest published version serves again
        assert (data / "models" / f"v{published:04d}.safetensors").is_file()
        assert status["labels_total"] == 18
    finally:
        proc.terminate()
        proc.wait(timeout=30)
