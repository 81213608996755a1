"""Builds the Gradio Blocks page. A placeholder until the app issue lands: it states the backbone."""

from __future__ import annotations

import gradio as gr

from .models import load_backbone_or_demo
from .settings import Settings


def build_app(settings: Settings) -> gr.Blocks:
    backbone, notice = load_backbone_or_demo(settings.backbone, settings.pretrained, settings.device)
    with gr.Blocks(title="RankUI: rank images by instruction") as demo:
        gr.Markdown("# RankUI\nRank images by a text instruction with a ranking-aware CLIP adapter. "
                    "The ranking page is under construction.")
        status = f"Backbone: `{backbone.config.name}` ({backbone.config.pretrained or 'bundled weights'})"
        gr.Markdown(status + (f"\n\n> {notice}" if notice else ""), elem_id="backbone-status")
    return demo
