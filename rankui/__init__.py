"""The Gradio app: layout, handlers, overlays, label store, export and Space glue."""
