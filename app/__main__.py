"""``python -m app`` (from a checkout) / ``codt-app``: serve the clustering app on localhost."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from codt_deploy.argtypes import port_number, positive_int
from codt_deploy.errors import ModelError

from .model_store import ModelStore
from .ui import build_app, find_examples
from .uploads import UploadLimits

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout, when the app runs from one


def default_examples_root() -> Path:
    """The repository when the app runs from a checkout, else (installed as ``codt_app``) the
    current folder."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="codt-app", description=(
        "Web app: upload skeleton pose files, see each sequence's skeleton and its cluster."))
    parser.add_argument("--model", default=None,
                        help="model name (see exported/ and $CODT_MODEL_DIR) or path to a .onnx "
                             "file; default: the shipped model")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port_number, default=7860, help="port (default 7860; 0: any)")
    parser.add_argument("--max-files", type=positive_int, default=UploadLimits.max_files,
                        help="most files per upload, archive members included")
    parser.add_argument("--max-file-mb", type=positive_int,
                        default=UploadLimits.max_file_bytes >> 20, help="most MB per file")
    parser.add_argument("--max-total-mb", type=positive_int,
                        default=UploadLimits.max_total_bytes >> 20, help="most MB per upload")
    parser.add_argument("--max-labels-mb", type=positive_int,
                        default=UploadLimits.max_labels_bytes >> 20,
                        help="most MB of a labels CSV")
    parser.add_argument("--examples", type=Path, default=None,
                        help="folder holding examples/msr_action3d (default: the repository, or "
                             "the current folder when the app is installed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    limits = UploadLimits(max_files=args.max_files, max_file_bytes=args.max_file_mb << 20,
                          max_total_bytes=args.max_total_mb << 20,
                          max_labels_bytes=args.max_labels_mb << 20)
    store = ModelStore(args.model)
    try:
        model = store.get()  # fail now, not on the first upload
    except ModelError as exc:
        print(f"codt-app: {exc}", file=sys.stderr)
        return 2
    print(f"codt-app: model {store.label()} ({model.manifest.num_clusters} clusters, layout "
          f"{model.manifest.layout})", file=sys.stderr)
    demo = build_app(store, limits=limits, examples=find_examples(args.examples or default_examples_root()))
    demo.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port or None, max_file_size=limits.max_total_bytes,
        show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
