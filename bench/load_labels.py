"""Many annotators at once: N concurrent gradio_client sessions each store M labels while training runs.

Starts the real app (`python app.py`) on a free port with a fresh data directory, opens N
`gradio_client` sessions (threads), each ranks the example images once and then sends M labels
through `/label`; training rounds are requested through `/train_now` whenever none is running, so
the trainer works during the whole load, and polled through `/train_status`.
Prints how many labels were acknowledged and stored, the errors, and label round-trip latency
percentiles. Traffic goes to 127.0.0.1 only; the run is bounded by --timeout.

    python bench/load_labels.py [--annotators 50] [--labels 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")

from gradio_client import Client, handle_file  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float) -> Client:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}")
        try:
            return Client(url, verbose=False, analytics_enabled=False)
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    raise TimeoutError("app did not start")


def annotate(url: str, who: str, labels: int, examples: list[str], latencies: list, errors: list, acked: list):
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        client.predict([handle_file(p) for p in examples], "rank by the number of shapes", "rac", "", api_name="/rank")
        for k in range(labels):
            left, right = 1 + k % 5, 6 + (k * 3) % 5
            start = time.perf_counter()
            message = client.predict(left, right, ("left", "right", "tie")[k % 3], who, "correction", api_name="/label")
            latencies.append(time.perf_counter() - start)
            if not message.startswith("Saved:"):
                raise RuntimeError(message)
            acked.append(message)
    except Exception as err:  # noqa: BLE001 - counted and printed
        errors.append(f"{who}: {type(err).__name__}: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="rankui-load-"))
    port = free_port()
    log_file = open(data / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--host", "127.0.0.1",
                             "--data-dir", str(data)], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        control = wait_up(url, proc, 180)
        examples = control.predict(api_name="/examples")
        control.predict([handle_file(p) for p in examples], "rank by the number of shapes", "rac", "",
                        api_name="/rank")
        for left, right in ((1, 2), (1, 3), (2, 4), (3, 5), (1, 6), (2, 7), (4, 8), (5, 9)):  # something to train
            control.predict(left, right, "left", "seed", "correction", api_name="/label")  # on (some held out)
        control.predict(api_name="/train_now")
        latencies, errors, acked = [], [], []
        threads = [threading.Thread(target=annotate, args=(url, f"ann-{k}", args.labels, examples, latencies, errors,
                                                           acked)) for k in range(args.annotators)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        states, trainer_errors, status = set(), set(), {}
        while any(t.is_alive() for t in threads) and time.perf_counter() - start < args.timeout:
            status = control.predict(api_name="/train_status")[0]
            states.add(status["state"])
            if status["last_error"]:
                trainer_errors.add(status["last_error"])
            if status["state"] != "training":  # keep a round running for the whole load
                control.predict(api_name="/train_now")
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=1)
        wall = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    stored = sqlite3.connect(data / "labels.sqlite").execute(
        "SELECT COUNT(*) FROM labels WHERE annotator LIKE 'ann-%' AND undone_at IS NULL").fetchone()[0]
    expected = args.annotators * args.labels
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    print(f"{args.annotators} annotators x {args.labels} labels in {wall:.1f} s; trainer states seen: {sorted(states)}; "
          f"training rounds finished {status.get('rounds')}, model version {status.get('version')}, "
          f"current round at step {status.get('step')} / {status.get('steps')}")
    print(f"acknowledged {len(acked)} / {expected}, stored {stored} / {expected}, errors {len(errors)}")
    print(f"label round trip: p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    for line in errors[:5]:
        print("  error:", line)
    for line in sorted(trainer_errors):
        print("  trainer error:", line)
    print(f"server log: {data / 'app.log'}")
    sys.exit(0 if stored == expected and not errors else 1)


if __name__ == "__main__":
    main()
