"""`python -m trainer fit | eval | predict | export-labels`.

Every field of `FitConfig` is a documented flag (`--train.lr 1e-4`), generated from the dataclass,
applied on top of `--config FILE` (JSON or YAML). `fit` also runs under
`torchrun --nproc_per_node=K -m trainer fit ...` (DistributedDataParallel; NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from .config import FitConfig, apply_overrides, config_keys, load_config

SECTIONS_EVAL = ("backbone.", "data.", "eval_data.", "eval_fraction", "cache.", "train.device")


def _type_name(kind) -> str:
    return getattr(kind, "__name__", str(kind)).replace("NoneType", "none")


def add_config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per config key, with the field's help and default; parsed by the config's types."""
    parser.add_argument("--config", metavar="FILE", help="JSON or YAML config file; flags override it")
    group = parser.add_argument_group("config (dotted keys of FitConfig; lists comma-separated, dicts as JSON)")
    for key, (kind, help_text, default) in config_keys(FitConfig).items():
        if only and not key.startswith(only):
            continue
        shown = json.dumps(default) if isinstance(default, (list, dict)) else default
        group.add_argument(f"--{key}", dest=f"cfg:{key}", metavar=_type_name(kind).upper(), default=argparse.SUPPRESS,
                           help=f"{help_text} (default: {shown})")


def config_from_args(args: argparse.Namespace) -> FitConfig:
    config = load_config(args.config) if getattr(args, "config", None) else FitConfig()
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    return apply_overrides(config, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{fit,eval,predict,export-labels}")

    fit = sub.add_parser("fit", help="train a method on labelled data and write a checkpoint",
                         description="Train a method; writes OUT_DIR/checkpoint.safetensors (+ .json, .state.pt), "
                                     "OUT_DIR/config.json and OUT_DIR/metrics.jsonl.")
    add_config_flags(fit)

    ev = sub.add_parser("eval", help="evaluate a checkpoint; prints the metrics as JSON",
                        description="Evaluate a checkpoint on eval_data (or the held-out share of data, as fit did).")
    ev.add_argument("--checkpoint", required=True, metavar="FILE", help="a .safetensors written by fit")
    ev.add_argument("--output", metavar="FILE", help="also write the metrics JSON here")
    add_config_flags(ev, SECTIONS_EVAL)

    pr = sub.add_parser("predict", help="rank images under an instruction; writes a ranked CSV",
                        description="Score images with a checkpoint and write rank, score, image as CSV.")
    pr.add_argument("--checkpoint", required=True, metavar="FILE", help="a .safetensors written by fit")
    pr.add_argument("--images", required=True, nargs="+", metavar="PATH", help="image files and/or folders")
    pr.add_argument("--text", default="", help="the ordering instruction")
    pr.add_argument("--classes", default="", help="ordered class names, comma-separated (ordinal heads)")
    pr.add_argument("--output", default="-", metavar="FILE", help="CSV path, or - for stdout (default: -)")
    add_config_flags(pr, ("cache.", "train.device"))

    ex = sub.add_parser("export-labels", help="export a labelled source as a datasets dataset",
                        description="Read any data source (table, folder, hf, pairs) and save it with "
                                    "embedded image bytes; pairs follow the app's export schema.")
    ex.add_argument("--output", required=True, metavar="PATH", help="folder (save_to_disk) or .parquet file")
    add_config_flags(ex, ("data.",))
    return parser


def _image_files(paths: list[str]) -> list[Path]:
    from .data import IMAGE_SUFFIXES

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"No such image file or folder: {p}")
    return files


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from . import fit as fitting
    from .distributed import init_from_env, is_main, shutdown

    config = config_from_args(args)
    if args.command == "fit":
        init_from_env(config.train.device)
        try:
            result = fitting.fit(config)
        finally:
            shutdown()
        if is_main():
            print(json.dumps({"checkpoint": str(result.checkpoint), "metrics": result.metrics}, indent=2))
        return 0
    if args.command == "eval":
        metrics = fitting.run_eval(args.checkpoint, config)
        text = json.dumps(metrics, indent=2)
        if args.output:
            Path(args.output).write_text(text + "\n")
        print(text)
        return 0
    if args.command == "predict":
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        rows = fitting.predict(args.checkpoint, _image_files(args.images), args.text, classes or None, config)
        out = sys.stdout if args.output == "-" else open(args.output, "w", newline="")
        try:
            writer = csv.DictWriter(out, fieldnames=["rank", "score", "image"])
            writer.writeheader()
            writer.writerows(rows)
        finally:
            if out is not sys.stdout:
                out.close()
        return 0
    from .export import export_labels
    ds = export_labels(config.data, args.output)
    print(f"wrote {len(ds)} rows to {args.output}")
    return 0
