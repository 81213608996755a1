"""What a person does in the page, in headless Chromium (Debian's) driven by Playwright."""

import os
import re
import shutil

import pytest

from rankui.app import build_app, launch_kwargs
from rankui.layout import example_paths
from rankui.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the browser tests (.ci/run does).")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it.",
                allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.browser
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-sync",
        "--disable-quic", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings = Settings.from_args(["--data-dir", str(tmp_path_factory.mktemp("data")), "--host", "127.0.0.1"])
    demo = build_app(settings)
    demo.launch(prevent_thread_lock=True, quiet=True, **{**launch_kwargs(settings), "server_port": None})
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(app, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
    page = context.new_page()
    page.goto(app.local_url, wait_until="load")
    page.locator("#btn-rank").wait_for()
    yield page
    context.close()


def message(page):
    return page.locator("#message textarea")


def expect_message(page, text: str, timeout: float = 30_000) -> None:
    expect(message(page)).to_have_value(re.compile(re.escape(text), re.IGNORECASE), timeout=timeout)


def rank_examples(page, instruction="rank by the number of shapes"):
    page.locator("#files input[type=file]").set_input_files(example_paths())
    page.locator("#instruction textarea, #instruction input").first.fill(instruction)
    page.locator("#btn-rank").click()
    expect(page.locator("#ranking .thumbnail-item")).to_have_count(10, timeout=60_000)


def test_rank_heatmap_pair_maps_and_screenshot(page, app):
    rank_examples(page)
    expect_message(page, "Ranked 10 images")
    page.locator("#ranking .thumbnail-item").nth(2).click()  # choose rank 3 for the heatmap
    expect(page.locator("#att-rank input")).to_have_value("3")
    page.locator("#btn-attention").click()
    expect(page.locator("#att-image img")).to_be_visible(timeout=30_000)
    expect_message(page, "Rank #3: cross-modal attention")
    page.locator("#btn-pair-attention").click()
    expect(page.locator("#pa-left img")).to_be_visible(timeout=30_000)
    expect(page.locator("#pa-right img")).to_be_visible()
    expect_message(page, "shared scale")
    page.screenshot(path=str(app.rankui_context.store.data_dir.parent / "page.png"), full_page=True)
    docs = os.environ.get("RANKUI_SCREENSHOT")
    if docs:
        page.screenshot(path=docs, full_page=True)


def test_keyboard_labels_undo_and_suggestion(page, app):
    store = app.rankui_context.store
    rank_examples(page)
    page.get_by_role("tab", name="Label pairs").click()
    page.locator("#btn-suggest").click()
    expect(page.locator("#left-img img")).to_be_visible(timeout=30_000)
    expect_message(page, "Which ranks higher")
    before = store.count()
    page.locator("body").click(position={"x": 5, "y": 5})  # no text box has focus
    page.keyboard.press("1")
    expect_message(page, "Saved:")
    expect_message(page, "Next: Which ranks higher")
    assert store.count() == before + 1 and store.labels()[-1].source == "suggestion"
    page.keyboard.press("u")
    expect_message(page, "Undid your label")
    assert store.count() == before
    # typing in a text box never labels
    page.locator("#instruction textarea, #instruction input").first.type("12")
    assert store.count() == before


def test_drag_to_reorder_makes_labels(page, app):
    store = app.rankui_context.store
    rank_examples(page)
    before = store.count()
    items = page.locator("#strip .rank-item")
    expect(items).to_have_count(10)
    items.nth(3).drag_to(items.nth(0))
    expect_message(page, "from the drag")
    new = store.labels()[before:]
    assert len(new) == 3 and {lab.source for lab in new} == {"drag"}


def test_export_and_download_parquet(page, app, tmp_path):
    from datasets import Dataset
    store = app.rankui_context.store
    rank_examples(page)
    page.get_by_role("tab", name="Label pairs").click()
    page.locator("#btn-left").click()
    expect_message(page, "Saved:")
    page.get_by_role("tab", name="Export").click()
    page.locator("#btn-export").click()
    expect_message(page, "Exported")
    with page.expect_download() as info:
        page.locator("#export-file a").first.click()
    target = tmp_path / "pairs.parquet"
    info.value.save_as(target)
    assert len(Dataset.from_parquet(str(target))) == store.count() > 0


def test_hostile_instruction_and_file_name_are_shown_as_text(page, tmp_path):
    hostile = '<img src=x onerror="window.__pwned=1">'
    rank_examples(page, hostile)
    expect_message(page, hostile)
    assert page.evaluate("() => window.__pwned === undefined")
    # A file name with markup: Gradio's upload strips the angle brackets; what is left shows as text.
    named = tmp_path / "<b id=injected>bold<b>.png"
    from PIL import Image
    Image.effect_noise((48, 48), 30).convert("RGB").save(named, "PNG")  # bytes the store has not seen
    page.reload(wait_until="load")
    page.locator("#files input[type=file]").set_input_files([str(named), example_paths()[1]])
    page.locator("#instruction textarea, #instruction input").first.fill("x")
    page.locator("#btn-rank").click()
    expect_message(page, "Ranked 2 images")
    expect(page.locator("#ranking .thumbnail-item")).to_have_count(2, timeout=60_000)
    expect(page.locator("#ranking")).to_contain_text("injected")
    assert page.locator("#injected").count() == 0
    page.locator("#instruction textarea, #instruction input").first.fill("")
    page.locator("#btn-rank").click()
    expect(page.locator(".toast-body, .toast-wrap").first).to_contain_text("Type an ordering instruction",
                                                                           timeout=30_000)


def test_train_now_and_see_the_version_go_up(page, app):
    rank_examples(page)
    page.get_by_role("tab", name="Label pairs").click()
    page.locator("#btn-suggest").click()
    expect_message(page, "Which ranks higher")
    page.locator("body").click(position={"x": 5, "y": 5})
    for k in range(6):  # ties: whatever the held-out share, the round publishes
        page.keyboard.press("0")
        expect_message(page, "Saved: a tie")
    page.get_by_role("tab", name="Trainer").click()
    version_before = app.rankui_context.worker.status().version
    page.locator("#btn-train").click()
    expect_message(page, "Training round requested")
    expect(page.locator("#train-status")).to_contain_text(f'"version": {version_before + 1}', timeout=120_000)
