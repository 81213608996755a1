"""SPEC §6 security: only the upload cache and assets/ are served; the Hub token never leaks."""

import logging
import urllib.error
import urllib.parse
import urllib.request

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import REPO
from rankui.app import build_app, launch_kwargs
from rankui.layout import example_paths
from rankui.settings import Settings

TOKEN = "hf_TopSecretTokenValue123"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    settings = Settings.from_args(["--data-dir", str(data), "--host", "127.0.0.1"])
    demo = build_app(settings)
    demo.launch(prevent_thread_lock=True, quiet=True, **{**launch_kwargs(settings), "server_port": None})
    yield demo
    demo.close()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def file_url(app, path) -> str:
    return f"{app.local_url}gradio_api/file={urllib.parse.quote(str(path))}"


def test_only_upload_cache_and_assets_are_served(app):
    store = app.rankui_context.store
    client = Client(app.local_url, verbose=False, analytics_enabled=False)
    examples = client.predict(api_name="/examples")
    client.predict([handle_file(p) for p in examples], "x", "rac", "", api_name="/rank")
    assert status_of(file_url(app, example_paths()[0])) == 200  # assets/examples
    assert status_of(file_url(app, examples[0])) == 200  # the upload cache
    for forbidden in ("/etc/passwd", store.path, next(store.image_dir.rglob("*/*")), REPO / "app.py",
                      REPO / "assets" / "demo_clip" / "open_clip_model.safetensors",
                      f"{REPO / 'assets' / 'examples'}/../../app.py", "../../../etc/passwd"):
        assert status_of(file_url(app, forbidden)) in (403, 404), forbidden


def test_hub_token_is_never_shown_logged_or_exported(app, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    client = Client(app.local_url, verbose=False, analytics_enabled=False)
    examples = client.predict(api_name="/examples")
    client.predict([handle_file(p) for p in examples], "x", "rac", "", api_name="/rank")
    client.predict(1, 2, "left", "ann", "correction", api_name="/label")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AppError) as err:
            client.predict("hub", "me/labels", api_name="/export")
        path, _ = client.predict("parquet", "", api_name="/export")
    assert TOKEN not in str(err.value) and TOKEN not in caplog.text
    with open(path, "rb") as handle:
        assert TOKEN.encode() not in handle.read()
    status = client.predict(api_name="/train_status")[0]
    assert TOKEN not in str(status)
