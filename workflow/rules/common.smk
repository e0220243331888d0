# Discovery of images, wildcard constraints and helpers; the logic lives in the gatys package.
import re
import shlex
import sys

from gatys import __version__ as GATYS_VERSION
from gatys import style_targets
from gatys.backbone import BACKBONES
from gatys.cli import settings_to_args
from gatys.inputs import (
    ConfigError,
    check_cluster_names,
    check_config,
    run_settings,
    scan,
)
from gatys.transfer import Settings

# The gatys CLI of the Python that runs Snakemake, so the documented command works unactivated.
GATYS = f"{shlex.quote(sys.executable)} -m gatys"
PRESETS = config["presets"]
check_config(config)
CONTENT, BAD_CONTENT = scan(config["content"], "content", config["max_pixels"])
STYLE, BAD_STYLE = scan(config["style"], "style", config["max_pixels"])
BAD = BAD_CONTENT + BAD_STYLE
if BAD and config["on_bad_input"] == "fail":
    raise ConfigError(
        f"{len(BAD)} unusable input image(s); fix or remove them, or set on_bad_input: skip\n"
        + "\n".join(b.line() for b in BAD)
    )
if not CONTENT or not STYLE:
    raise ConfigError(
        "no usable content or style images left after skipping bad inputs"
    )
SIZE = config["size"]
STYLE_SIZE = round(
    SIZE * max([1.0] + [p.get("style_scale", 1.0) for p in PRESETS.values()])
)


def alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    preset=alternatives(PRESETS),
    content=alternatives(CONTENT),
    style=alternatives(STYLE),
    kind="content|style",
    key="[0-9a-f]{12}",


def image_path(wildcards):
    return (CONTENT if wildcards.kind == "content" else STYLE)[wildcards.name]


def resized(kind, name):
    size = SIZE if kind == "content" else STYLE_SIZE
    return f"results/resized/{kind}/{name}_{size}.png"


def weights_file():
    """The backbone's weights inside the working directory, so compute nodes need no network."""
    backbone = config["backbone"]
    return f"results/weights/{backbone}.pth" if backbone in BACKBONES else backbone


def run_path(preset, content, style, ext):
    return f"results/runs/{preset}/{content}/{style}.{ext}"


def all_runs(ext, content=None):
    contents = [content] if content else sorted(CONTENT)
    return [
        run_path(p, c, s, ext) for p in PRESETS for c in contents for s in sorted(STYLE)
    ]


def preset_settings(preset):
    return run_settings(config, preset)


def stylize_args(wildcards):
    return shlex.join(settings_to_args(preset_settings(wildcards.preset)))


def targets_key(preset):
    """Presets whose style Gram targets agree share one key; None: targets are per run."""
    values = {**preset_settings(preset), "backbone": weights_file()}
    settings = Settings.from_dict(values)
    return style_targets.key_id(settings) if style_targets.cacheable(settings) else None


# One preset per key supplies the settings `gatys targets` reads.
KEY_PRESET = {}
for _preset in PRESETS:
    if targets_key(_preset):
        KEY_PRESET.setdefault(targets_key(_preset), _preset)


def targets_args(wildcards):
    """Only what the targets depend on, so other changes to a preset do not recompute them."""
    settings = preset_settings(KEY_PRESET[wildcards.key])
    relevant = {k: v for k, v in settings.items() if k in style_targets.KEY_SETTINGS}
    # A local rule: it runs where Snakemake runs, which may have no GPU (a login node).
    return shlex.join(settings_to_args({**relevant, "device": "auto"}))


def style_targets_file(wildcards):
    key = targets_key(wildcards.preset)
    return [f"results/targets/{key}/{wildcards.style}.pt"] if key else []


def style_targets_flag(wildcards, input):
    files = [input.targets] if isinstance(input.targets, str) else list(input.targets)
    return shlex.join(["--style-targets", *files]) if files else ""


def sheet_args(wildcards):
    """Rows: styles; columns: presets; the corner shows the content photo."""
    content = wildcards.content
    args = [
        "--title",
        f"{content}: styles x presets",
        "--cell",
        str(config["sheet_cell"]),
    ]
    args += ["--corner", content, resized("content", content)]
    for preset in PRESETS:
        args += ["--col", preset]
    for style in sorted(STYLE):
        cells = [run_path(p, content, style, "png") for p in PRESETS]
        args += ["--row", style, resized("style", style), *cells]
    return shlex.join(args)


def overview_args(wildcards):
    """Rows: content photos; columns: style x preset."""
    cell = max(96, config["sheet_cell"] // 2)
    args = ["--title", "gatys gallery", "--cell", str(cell)]
    for style in sorted(STYLE):
        for preset in PRESETS:
            args += ["--col", f"{style} / {preset}", resized("style", style)]
    for content in sorted(CONTENT):
        cells = [run_path(p, content, s, "png") for s in sorted(STYLE) for p in PRESETS]
        args += ["--row", content, resized("content", content), *cells]
    return shlex.join(args)


def skipped_lines():
    return [[str(b.path), b.reason] for b in BAD]


def all_outputs(wildcards):
    # The executor is known only once the DAG is built, not while this file is parsed.
    if workflow.non_local_exec:
        check_cluster_names([*CONTENT.values(), *STYLE.values()])
    outputs = [f"results/sheets/{c}.jpg" for c in sorted(CONTENT)]
    outputs += [
        "results/sheets/overview.jpg",
        "results/summary.csv",
        "results/loss_curves.png",
    ]
    if config["on_bad_input"] == "skip":
        outputs.append("results/skipped.csv")
    return outputs
