"""The Gradio web app: upload pose files, see skeletons, clusters and metrics (``python -m app``)."""
