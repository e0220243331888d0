"""One complete run: inputs -> image, loss CSV and provenance JSON, all written atomically."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Callable

import pandas as pd
import PIL
import torch

from . import __version__, imaging
from . import style_targets as targets_file
from .backbone import sha256_of
from .transfer import NonFiniteLoss, Result, Settings, StyleTransfer


class RunOutOfMemory(RuntimeError):
    """The device ran out of memory."""


def loss_columns(settings: Settings) -> list[str]:
    """Columns of a loss CSV, in order."""
    style = [f"style_{layer}" for layer in settings.style_layers]
    return ["step", "scale", "size", "elapsed_s", "content", "style", *style, "tv", "total"]


def write_losses(rows: list[dict], settings: Settings, path: str | Path) -> None:
    frame = pd.DataFrame(rows, columns=loss_columns(settings))
    with imaging.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.9g")


def provenance(settings: Settings, result: Result, transfer: StyleTransfer, content: Path, styles: list[Path]) -> dict:
    import torchvision

    return {
        "settings": settings.as_dict(),
        "inputs": {
            "content": {"path": str(content), "sha256": sha256_of(content)},
            "styles": [{"path": str(p), "sha256": sha256_of(p)} for p in styles],
        },
        "backbone": {"name": transfer.weights.name, "path": transfer.weights.path, "sha256": transfer.weights.sha256},
        "output_size": list(result.image.size),
        "result": result.info,
        "versions": {
            "gatys": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
        },
        "threads": torch.get_num_threads(),
    }


def write_style_targets(style: str | Path, output: str | Path, settings: Settings) -> dict[int, dict]:
    """`gatys targets`: the Gram targets of one style image for these settings, saved atomically."""
    if not targets_file.cacheable(settings):
        raise ValueError("style targets cannot be reused with preserve_color or normalize: nothing to precompute")
    grams = StyleTransfer(settings).style_grams_per_size([imaging.load_image(style)])
    targets_file.save(output, grams, settings, style)
    return grams


def stylize_files(
    content: str | Path,
    styles: list[str | Path],
    output: str | Path,
    settings: Settings,
    losses: str | Path | None = None,
    provenance_path: str | Path | None = None,
    callback: Callable[[dict], None] | None = None,
    transfer: StyleTransfer | None = None,
    labels: dict[str, str] | None = None,
    style_targets: str | Path | None = None,
) -> Result:
    """Load, stylize, then write the PNG, the loss CSV and the provenance JSON.

    ``style_targets``: a file from `gatys targets` for the one style image, used instead of
    computing its Gram matrices. Nothing is written unless the whole run succeeds; each file
    appears complete or not at all.
    """
    content, styles = Path(content), [Path(p) for p in styles]
    if style_targets and len(styles) != 1:
        raise ValueError(f"--style-targets: holds one style image's targets, but {len(styles)} styles were given")
    content_img = imaging.load_image(content)
    style_imgs = [imaging.load_image(p) for p in styles]
    calibration = None
    if settings.normalize and settings.calibration:
        from .inputs import find_images

        calibration = [imaging.load_image(p) for p in find_images(settings.calibration, "calibration").values()]
    transfer = transfer or StyleTransfer(settings)
    grams = targets_file.load(style_targets, settings, styles[0], transfer.precision) if style_targets else None
    try:
        result = transfer.stylize(content_img, style_imgs, callback=callback, calibration=calibration, grams=grams)
    except NonFiniteLoss as err:
        raise NonFiniteLoss(f"{output}: {err}") from err
    except torch.cuda.OutOfMemoryError as err:
        raise RunOutOfMemory(
            f"{output}: out of memory on {transfer.device} at size {settings.size}; "
            "use a smaller size, or more scales (--scales) to spend fewer steps at full size"
        ) from err
    if losses:
        write_losses(result.rows, settings, losses)
    if provenance_path:
        record = provenance(settings, result, transfer, content, styles)
        record["labels"] = labels or {}
        if style_targets:
            record["style_targets"] = {"path": str(style_targets), "sha256": sha256_of(style_targets)}
        with imaging.atomic_path(provenance_path) as tmp:
            tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    imaging.save_image(result.image, output)
    return result
