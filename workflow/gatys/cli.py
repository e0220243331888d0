"""`gatys stylize | targets | weights | resize | sheet | summarize`: parse arguments, call the package."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .allocator import keep_freed_memory
from .backbone import BACKBONES, WeightsError
from .imaging import ImageError
from .transfer import COMPILE, INITS, OPTIMIZERS, PRECISIONS, PRESERVE_COLOR, NonFiniteLoss, Settings

DEFAULTS = Settings()


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _add_stylize(sub) -> None:
    p = sub.add_parser("stylize", help="stylize one content image with one or more style images")
    p.add_argument("content", type=Path)
    p.add_argument("styles", type=Path, nargs="+", metavar="style")
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG")
    p.add_argument("--losses", type=Path, help="write one CSV row per loss evaluation here")
    p.add_argument("--provenance", type=Path, help="write every parameter, hash and version here (JSON)")
    p.add_argument("--style-targets", type=Path, help="Gram targets from `gatys targets` (one style image)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="recorded in the provenance")
    _add_settings(p)
    p.set_defaults(func=cmd_stylize)

    t = sub.add_parser("targets", help="compute a style image's Gram targets once, for runs with these settings")
    t.add_argument("style", type=Path)
    t.add_argument("-o", "--output", type=Path, required=True, help="targets file (.pt)")
    _add_settings(t)
    t.set_defaults(func=cmd_targets)


def _add_settings(p) -> None:
    """Every setting of a run, as flags (the targets command reads the ones its targets depend on)."""
    d = DEFAULTS
    p.add_argument("--size", type=int, default=d.size, help="long side of the output in px (%(default)s)")
    p.add_argument("--steps", type=int, default=d.steps, help="loss evaluations per scale (%(default)s)")
    p.add_argument("--content-weight", type=float, default=d.content_weight, help="alpha (%(default)s)")
    p.add_argument("--style-weight", type=float, default=d.style_weight, help="beta (%(default)s)")
    p.add_argument("--tv-weight", type=float, default=d.tv_weight, help="gamma, total variation (%(default)s)")
    p.add_argument("--content-layers", type=_names, default=d.content_layers, help="comma-separated (conv4_2)")
    p.add_argument("--style-layers", type=_names, default=d.style_layers, help="comma-separated (conv1_1,...,conv5_1)")
    p.add_argument("--style-layer-weights", type=_floats, help="comma-separated, one per style layer (1/n each)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam only (%(default)s)")
    p.add_argument("--init", choices=INITS, default=d.init,
                   help="start from the photo, the photo in the style's colors, noise, or the style image (%(default)s)")  # fmt: skip
    p.add_argument("--pooling", choices=("avg", "max"), default=d.pooling)
    p.add_argument("--features", choices=("relu", "conv"), default=d.features, help="read ReLU outputs or convs")
    p.add_argument("--backbone", default=d.backbone, help=f"{' | '.join(BACKBONES)} | PATH to a state dict")
    p.add_argument("--backbone-sha256", help="expected sha256 of a --backbone PATH")
    p.add_argument("--normalize", action="store_true", help="the paper's normalized network (mean activation 1)")
    p.add_argument("--calibration", help="folder of images to normalize on (default: the run's images)")
    p.add_argument("--scales", type=int, default=d.scales, help="coarse-to-fine scales (%(default)s)")
    p.add_argument("--style-scale", type=float, default=d.style_scale, help="style size relative to output")
    p.add_argument("--preserve-color", choices=PRESERVE_COLOR, default=d.preserve_color)
    p.add_argument("--style-blend", type=_floats, help="comma-separated weights, one per style image")
    p.add_argument("--tolerance", type=float, default=d.tolerance, help="early stop: relative improvement")
    p.add_argument("--window", type=int, default=d.window, help="early stop: over this many evaluations")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto: bf16 on CPUs with native bf16 and CUDA GPUs, else fp32 (%(default)s)")  # fmt: skip
    p.add_argument("--history", type=int, default=d.history, help="L-BFGS correction pairs (%(default)s)")
    p.add_argument("--first-decrease", type=float, default=d.first_decrease,
                   help="L-BFGS's first trial step: the loss decrease it predicts, as a fraction; 0: torch's step (%(default)s)")  # fmt: skip
    p.add_argument("--compile", choices=COMPILE, default=d.compile,
                   help="torch.compile the network; auto: where a compiler is found (%(default)s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--threads", type=int, help="CPU threads for torch")


def settings_to_args(values: dict) -> list[str]:
    """The `gatys stylize` flags that reproduce a dict of settings (the inverse of parsing)."""
    args = []
    for key, value in values.items():
        if key not in SETTING_ARGS:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(SETTING_ARGS)}")
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


SETTING_ARGS = [
    "size", "steps", "content_weight", "style_weight", "tv_weight", "content_layers", "style_layers",
    "style_layer_weights", "optimizer", "learning_rate", "init", "pooling", "features", "backbone",
    "backbone_sha256", "normalize", "calibration", "scales", "style_scale", "preserve_color",
    "style_blend", "tolerance", "window", "precision", "history", "first_decrease", "compile", "seed", "device",
]  # fmt: skip


def cmd_stylize(args) -> int:
    import torch
    from tqdm import tqdm

    from .run import stylize_files

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(**{key: getattr(args, key) for key in SETTING_ARGS})
    bar = tqdm(total=settings.steps * settings.scales, disable=args.quiet, unit="eval", file=sys.stderr)

    def progress(row: dict) -> None:
        bar.update(1)
        bar.set_postfix(size=row["size"], content=f"{row['content']:.3g}", style=f"{row['style']:.3g}",
                        total=f"{row['total']:.3g}", refresh=False)  # fmt: skip

    labels = dict(item.split("=", 1) for item in args.label if "=" in item)
    try:
        result = stylize_files(args.content, args.styles, args.output, settings, args.losses, args.provenance,
                               progress, labels=labels, style_targets=args.style_targets)  # fmt: skip
    finally:
        bar.close()
    info = result.info  # one closing line, also with --quiet: it is what a log should show
    print(f"{args.output}: {result.image.width}x{result.image.height}, {info['evaluations']} evaluations, "
          f"{info['elapsed_s']:.1f} s on {info['device']}", file=sys.stderr)  # fmt: skip
    return 0


def cmd_targets(args) -> int:
    import torch

    from .run import write_style_targets

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(**{key: getattr(args, key) for key in SETTING_ARGS})
    grams = write_style_targets(args.style, args.output, settings)
    print(f"{args.output}: Gram targets of {args.style} at {settings.sizes()} px, {' and '.join(grams)}", file=sys.stderr)
    return 0


def cmd_weights(args) -> int:
    from .backbone import describe_sources, export_weights

    if args.export:
        if not args.output:
            raise ValueError("weights --export needs -o PATH")
        weights = export_weights(args.export, args.output)
        print(f"{args.output}: {weights.name}, sha256 {weights.sha256}", file=sys.stderr)
        return 0
    ok = True
    for line, good in describe_sources(args.check):
        print(line)
        ok &= good
    return 0 if ok else 1


def cmd_resize(args) -> int:
    from .imaging import load_image, resize_long_side, save_image

    img = load_image(args.input, max_pixels=args.max_pixels)
    if max(img.size) < args.size:
        print(f"gatys resize: warning: {args.input} is {img.width}x{img.height}, upscaled to {args.size} px; "
              "results will look soft", file=sys.stderr)  # fmt: skip
    save_image(resize_long_side(img, args.size), args.output)
    return 0


def cmd_sheet(args) -> int:
    from .sheets import Header, contact_sheet, save_sheet

    def header(parts: list[str]) -> Header:
        return Header(parts[0], None if len(parts) < 2 or parts[1] == "-" else parts[1])

    cols = [header(c) for c in args.col]
    rows, cells = [], []
    for row in args.row:
        if len(row) != 2 + len(cols):
            raise ValueError(f"--row {row[0]!r}: give LABEL THUMB and {len(cols)} cells ('-' for none)")
        rows.append(header(row[:2]))
        cells.append([None if p == "-" else p for p in row[2:]])
    corner = header(args.corner) if args.corner else None
    save_sheet(contact_sheet(cells, rows, cols, corner, cell=args.cell, title=args.title), args.output)
    return 0


def cmd_summarize(args) -> int:
    from .summary import load_runs, plot_loss_curves, summarize, write_summary

    runs = load_runs(args.losses)  # each CSV and provenance file read once, for the table and the plot
    write_summary(summarize(runs), args.output)
    if args.plot:
        plot_loss_curves(runs, args.plot)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatys", description="Neural style transfer (Gatys, Ecker & Bethge 2016).")
    parser.add_argument("--version", action="version", version=f"gatys {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_stylize(sub)
    w = sub.add_parser("weights", help="list each backbone, where it comes from, and whether its sha256 checks")
    w.add_argument("--check", action="store_true", help="also load each available file and verify its layers")
    w.add_argument("--export", metavar="BACKBONE", help="resolve a backbone (downloading once) and copy its file to -o")
    w.add_argument("-o", "--output", type=Path, help="where --export writes the weights file")
    w.set_defaults(func=cmd_weights)

    r = sub.add_parser("resize", help="load any image upright as RGB and save it as PNG, long side --size")
    r.add_argument("input", type=Path)
    r.add_argument("-o", "--output", type=Path, required=True)
    r.add_argument("--size", type=int, required=True)
    r.add_argument("--max-pixels", type=int, default=100_000_000, help="refuse larger images (%(default)s)")
    r.set_defaults(func=cmd_resize)

    c = sub.add_parser("sheet", help="a labelled contact sheet of images")
    c.add_argument("-o", "--output", type=Path, required=True, help=".jpg or .png")
    c.add_argument("--title")
    c.add_argument("--cell", type=int, default=256, help="cell size in px (%(default)s)")
    c.add_argument("--corner", nargs="+", metavar="LABEL [THUMB]")
    c.add_argument("--col", nargs="+", action="append", required=True, metavar="LABEL [THUMB]")
    c.add_argument("--row", nargs="+", action="append", required=True, metavar="LABEL THUMB CELL")
    c.set_defaults(func=cmd_sheet)

    m = sub.add_parser("summarize", help="one CSV row per run and a loss-curve plot")
    m.add_argument("losses", nargs="+", type=Path, help="loss CSVs (each beside its provenance JSON)")
    m.add_argument("-o", "--output", type=Path, required=True)
    m.add_argument("--plot", type=Path)
    m.set_defaults(func=cmd_summarize)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()  # every evaluation reuses the last one's memory (gatys.allocator)
    try:
        return args.func(args)
    except (ImageError, WeightsError, NonFiniteLoss, ValueError, RuntimeError) as err:
        print(f"gatys {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gatys {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
