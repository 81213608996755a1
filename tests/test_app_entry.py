"""`python app.py` starts and serves, falling back to the bundled demo backbone offline in one line."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

from conftest import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_app_py_serves_offline(tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "RANKUI_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--host", "127.0.0.1"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = None, time.monotonic() + 120
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    body = response.read().decode() if response.status == 200 else None
            except OSError:
                time.sleep(0.5)
        assert body is not None, f"app did not serve; exit code {proc.poll()}"
        assert "RankUI" in body
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    fallback = [line for line in output.splitlines() if "Starting on the bundled demo backbone" in line]
    assert len(fallback) == 1, output
    assert "'ViT-B-32'" in fallback[0] and "'laion2b_s34b_b79k'" in fallback[0]
    assert "Traceback" not in output


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, check=True)
    for flag in ("--port", "--data-dir", "--backbone", "--pretrained", "--host", "--device"):
        assert flag in out.stdout
