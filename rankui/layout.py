"""The page: one builder per panel, composed in `build_page`. Every event has an explicit api_name.

Public endpoints (usable from gradio_client): /rank, /attention, /pair_attention, /label, /undo,
/suggest, /drag, /train_now, /train_status, /export, /examples. Handlers live in `handlers.py`;
this file only wires components to them and turns `UserError` into a clear `gr.Error`.
"""

from __future__ import annotations

import functools
import logging
import uuid
from pathlib import Path

import gradio as gr
import pandas as pd

from . import handlers as h
from .handlers import AppContext, UserError

log = logging.getLogger("rankui")
STATIC = Path(__file__).resolve().parent / "static"
EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
KEYS_JS = (STATIC / "keys.js").read_text()


def guarded(fn):
    """Bad input -> gr.Error with its message (page toast, API error); anything else -> logged, generic."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - the app keeps serving; the log has the traceback
            log.exception("Unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(err).__name__}); the app is still running.",
                           print_exception=False) from None
    return wrapper


def example_paths() -> list[str]:
    return sorted(str(p) for p in EXAMPLES.glob("*.png"))


def build_page(ctx: AppContext, title: str = "RankUI", notice: str | None = None) -> gr.Blocks:
    methods = ctx.engine.methods()
    served = ctx.engine.model.snapshot()[0].config
    heads, queries = served.rank_heads, served.n_reg_tokens
    with gr.Blocks(title=title) as demo:
        state = gr.State({})
        annotator_store = gr.BrowserState("", storage_key="rankui-annotator")
        gr.Markdown("# RankUI\nDrop images, type an ordering instruction, rank. Correct the order pairwise "
                    "(keys **1** left, **2** right, **0** tie, **s** skip, **u** undo); the trainer learns "
                    "from your labels.")
        if notice:
            gr.Textbox(notice, label="Backbone", interactive=False, elem_id="backbone-notice")
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(file_count="multiple", file_types=["image"], label="Images", elem_id="files")
                with gr.Row():
                    examples_btn = gr.Button("Use the example images", size="sm", elem_id="btn-examples")
                    paste = gr.Image(sources=["clipboard"], type="filepath", label="Paste an image", height=140,
                                     elem_id="paste")
                gr.Markdown(f"Limits: {ctx.limits.describe()}.")
            with gr.Column(scale=3):
                instruction = gr.Textbox(label="Instruction", placeholder="rank by the number of apples",
                                         max_length=h.MAX_INSTRUCTION, elem_id="instruction")
                with gr.Row():
                    method = gr.Dropdown(methods, value="rac", label="Method", elem_id="method")
                    classes = gr.Textbox(label="Class names, lowest first (ordinal methods)",
                                         placeholder="child, teenager, young adult, middle adult, older adult",
                                         elem_id="classes")
                rank_btn = gr.Button("Rank", variant="primary", elem_id="btn-rank")
                annotator = gr.Textbox(label="Annotator id (kept in this browser)", elem_id="annotator")
        message = gr.Textbox(label="Messages", interactive=False, lines=2, elem_id="message")
        gallery = gr.Gallery(label="Ranking (best first)", columns=6, height="auto", allow_preview=False,
                             object_fit="contain", format="png", elem_id="ranking")
        strip = gr.HTML([], html_template=(STATIC / "strip.html").read_text(),
                        css_template=(STATIC / "strip.css").read_text(), js_on_load=(STATIC / "strip.js").read_text(),
                        label="Drag to reorder", elem_id="strip")
        scores_plot = gr.BarPlot(pd.DataFrame({"rank": [], "score": [], "name": []}), x="rank", y="score",
                                 label="Scores", elem_id="scores-plot")
        with gr.Tabs():
            with gr.Tab("Attention"):
                with gr.Row():
                    att_rank = gr.Number(1, label="Rank", precision=0, minimum=1, elem_id="att-rank")
                    att_word = gr.Dropdown(["all words"], value="all words", label="Word", elem_id="att-word")
                    att_btn = gr.Button("Show where the words land", elem_id="btn-attention")
                att_image = gr.Image(label="Cross-modal attention", type="pil", format="png", elem_id="att-image")
                with gr.Row():
                    pa_first = gr.Number(1, label="First rank", precision=0, minimum=1, elem_id="pa-first")
                    pa_second = gr.Number(2, label="Second rank", precision=0, minimum=1, elem_id="pa-second")
                    pa_head = gr.Dropdown(["mean"] + [str(k) for k in range(heads)], value="mean", label="Head")
                    pa_query = gr.Dropdown(["mean"] + [str(k) for k in range(queries)], value="mean", label="Query")
                    pa_btn = gr.Button("Compare the pair", elem_id="btn-pair-attention")
                with gr.Row():
                    pa_left = gr.Image(label="First (shared scale)", type="pil", format="png", elem_id="pa-left")
                    pa_right = gr.Image(label="Second (shared scale)", type="pil", format="png", elem_id="pa-right")
            with gr.Tab("Label pairs"):
                with gr.Row():
                    left_rank = gr.Number(1, label="Left: rank", precision=0, minimum=1, elem_id="left-rank")
                    right_rank = gr.Number(2, label="Right: rank", precision=0, minimum=1, elem_id="right-rank")
                    suggest_btn = gr.Button("Suggest the most informative pair", elem_id="btn-suggest")
                with gr.Row():
                    left_img = gr.Image(label="Left", type="pil", interactive=False, elem_id="left-img")
                    right_img = gr.Image(label="Right", type="pil", interactive=False, elem_id="right-img")
                with gr.Row():
                    left_btn = gr.Button("Left ranks higher [1]", elem_id="btn-left")
                    right_btn = gr.Button("Right ranks higher [2]", elem_id="btn-right")
                    tie_btn = gr.Button("Tie [0]", elem_id="btn-tie")
                    unsure_btn = gr.Button("Can't tell", elem_id="btn-unsure")
                    skip_btn = gr.Button("Skip [s]", elem_id="btn-skip")
                    undo_btn = gr.Button("Undo my last label [u]", elem_id="btn-undo")
                outcome = gr.Textbox(visible=False)
                source = gr.Textbox("correction", visible=False)
                label_btn = gr.Button(visible=False)
            with gr.Tab("Trainer"):
                train_btn = gr.Button("Train now", elem_id="btn-train")
                status = gr.JSON(label="Trainer status", elem_id="train-status")
                curve = gr.LinePlot(pd.DataFrame({"round": [], "held_out_accuracy": []}), x="round",
                                    y="held_out_accuracy", label="Held-out pairwise accuracy", elem_id="curve")
            with gr.Tab("Export"):
                with gr.Row():
                    export_kind = gr.Radio(["parquet", "folder", "hub"], value="parquet", label="Export as")
                    export_repo = gr.Textbox(ctx.hub_repo, label="Hub dataset repo (user/name; private)")
                    export_btn = gr.Button("Export labels", elem_id="btn-export")
                export_file = gr.File(label="Download", elem_id="export-file")
        timer = gr.Timer(2.0)

        # ------------------------------------------------------------------ wiring
        def show(st):
            items, table, strip_value = h.session_view(ctx, st)
            words = ["all words"]
            if st.get("ids") and st.get("method") == "rac":
                words += ctx.engine.backbone.text_token_strings(st["instruction"])[1:-1]
            return items, table, strip_value, gr.update(choices=words, value="all words")

        @guarded
        def on_rank(files_value, text, method_name, class_text, st):
            st, msg = h.rank(ctx, files_value, text, method_name, class_text, st)
            return (st, *show(st), msg)

        rank_outputs = [state, gallery, scores_plot, strip, att_word, message]
        rank_btn.click(on_rank, [files, instruction, method, classes, state], rank_outputs, api_name="rank",
                       concurrency_id="model")
        instruction.submit(on_rank, [files, instruction, method, classes, state], rank_outputs,
                           api_visibility="private", concurrency_id="model")
        examples_btn.click(example_paths, None, files, api_name="examples")
        paste.upload(lambda pasted, current: (file_paths_of(current) + [pasted], None), [paste, files], [files, paste],
                     api_visibility="private")

        gallery.select(_selected_rank, None, [att_rank, pa_first], api_visibility="private", queue=False)

        @guarded
        def on_attention(st, rank_number, word):
            img, msg = h.attention(ctx, st, rank_number, word)
            shown = st["ids"][st["order"][int(rank_number) - 1]]
            return img, msg, {**st, "last_attention": [shown, word]}  # by image id: redrawn on a new version

        att_btn.click(on_attention, [state, att_rank, att_word], [att_image, message, state], api_name="attention",
                      concurrency_id="model")

        @guarded
        def on_pair_attention(st, first, second, head, query):
            left, right, msg = h.pair_attention(ctx, st, first, second, head, query)
            ids = [st["ids"][st["order"][int(r) - 1]] for r in (first, second)]
            return left, right, msg, {**st, "last_pair": [*ids, head, query]}

        pa_btn.click(on_pair_attention, [state, pa_first, pa_second, pa_head, pa_query],
                     [pa_left, pa_right, message, state], api_name="pair_attention", concurrency_id="model")

        def pair_images(st):
            pair = (st or {}).get("pair")
            if not pair:
                return None, None
            return (ctx.engine.image(st["ids"][st["order"][pair["left"] - 1]]),
                    ctx.engine.image(st["ids"][st["order"][pair["right"] - 1]]))

        @guarded
        def on_suggest(st, who):
            st, msg = h.suggest(ctx, st, who)
            pair = st.get("pair") or {}
            return (st, pair.get("left", gr.skip()), pair.get("right", gr.skip()), *pair_images(st), msg)

        suggest_outputs = [state, left_rank, right_rank, left_img, right_img, message]
        suggest_btn.click(on_suggest, [state, annotator], suggest_outputs, api_name="suggest")

        @guarded
        def on_label(st, left, right, answer, who, where):
            pair = (st or {}).get("pair") or {}
            from_suggestion = pair.get("left") == left and pair.get("right") == right
            placed = pair.get("left_image") if from_suggestion else None
            st, msg = h.label(ctx, st, left, right, answer, who, "suggestion" if from_suggestion else where, placed)
            return st, msg

        label_btn.click(on_label, [state, left_rank, right_rank, outcome, annotator, source], [state, message],
                        api_name="label", concurrency_limit=None)  # cheap: never queued behind ranking
        def label_then_suggest(answer, st, left, right, who):
            """A button or key press: save the judgement, then show the next informative pair."""
            st, saved = on_label(st, left, right, answer, who, "correction")
            st, *shown, asked = on_suggest(st, who)
            return (st, *shown, f"{saved} Next: {asked}")

        for button, answer in ((left_btn, "left"), (right_btn, "right"), (tie_btn, "tie"), (unsure_btn, "unsure")):
            button.click(functools.partial(label_then_suggest, answer), [state, left_rank, right_rank, annotator],
                         suggest_outputs, api_visibility="private")
        skip_btn.click(on_suggest, [state, annotator], suggest_outputs, api_visibility="private")
        undo_btn.click(guarded(lambda who: h.undo(ctx, who)), annotator, message, api_name="undo",
                       concurrency_limit=None)

        @guarded
        def on_drag(st, strip_value, who):
            ids = [item["id"] for item in (strip_value or []) if isinstance(item, dict) and "id" in item]
            if not st or not st.get("ids") or ids == [st["ids"][i] for i in st["order"]]:
                return gr.skip(), gr.skip()
            return h.drag(ctx, st, ids, who)

        strip.change(on_drag, [state, strip, annotator], [state, message], api_name="drag")

        train_btn.click(guarded(lambda: h.train_now(ctx)), None, message, api_name="train_now")

        def on_tick(st):
            info = h.train_status(ctx)
            curve_df = pd.DataFrame([{"round": c["round"], "held_out_accuracy": c["held_out_accuracy"]}
                                     for c in info.get("curve") or []], columns=["round", "held_out_accuracy"])
            if st and st.get("ids") and st.get("method") == "rac" and info.get("version", 0) > st.get("version", 0):
                st = h.rerank(ctx, st)  # a new model version: refresh the ranking and the maps shown
                items, table, strip_value, _ = show(st)
                return (info, curve_df, st, items, table, strip_value, *refreshed_maps(st))
            return (info, curve_df, *[gr.skip()] * 7)

        def refreshed_maps(st):
            heat = left = right = gr.skip()
            try:
                if st.get("last_attention"):
                    image_id, word = st["last_attention"]
                    heat = h.attention(ctx, st, h.rank_of(st, image_id), word)[0]
                if st.get("last_pair"):
                    first, second, head, query = st["last_pair"]
                    left, right, _ = h.pair_attention(ctx, st, h.rank_of(st, first), h.rank_of(st, second), head, query)
            except (UserError, ValueError):
                pass  # the maps shown stay as they were
            return heat, left, right

        timer.tick(on_tick, state, [status, curve, state, gallery, scores_plot, strip, att_image, pa_left, pa_right],
                   api_name="train_status", queue=False, show_progress="hidden")

        @guarded
        def on_export(kind, repo):
            return h.export(ctx, kind, repo)

        export_btn.click(on_export, [export_kind, export_repo], [export_file, message], api_name="export")

        def ensure_annotator(stored):
            who = stored or f"anon-{uuid.uuid4().hex[:8]}"
            return who, who

        demo.load(ensure_annotator, annotator_store, [annotator_store, annotator], api_visibility="private")
        annotator.change(lambda who: who, annotator, annotator_store, api_visibility="private")
    return demo


def _selected_rank(evt: gr.SelectData):
    return evt.index + 1, evt.index + 1


def file_paths_of(files) -> list[str]:
    return [str(p) for p in h.file_paths(files)]
