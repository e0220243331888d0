"""Style targets (Gram matrices) saved once per style image and reused by every run that needs them.

A file holds, for each precision a run may evaluate in (fp32, and bf16 where the machine runs
it) and each size of a run's coarse-to-fine schedule, the Gram matrix of every style layer from
that precision's network (fp32 matrices), plus the settings they depend on and the style file's
sha256, so a file made for other settings or another image is refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .backbone import sha256_of
from .imaging import atomic_path

FORMAT = "gatys-style-targets/3"  # /1 held fp32 targets only; /2 bf16 ones from a network that rounded the image to bf16


class StyleTargetsError(ValueError):
    """A style-targets file that does not fit the run."""


def cacheable(settings) -> bool:
    """Targets depend only on the style image and the network unless colors or calibration mix in the content."""
    return settings.preserve_color == "none" and not settings.normalize


# The settings a style image's Gram targets depend on; `key` records them (sizes from size and scales).
KEY_SETTINGS = ("size", "scales", "style_scale", "style_layers", "pooling", "features", "backbone", "backbone_sha256")


def key(settings) -> dict:
    """The settings the Gram targets depend on (not weights, steps or device; every precision is in the file)."""
    return {
        "format": FORMAT,
        "backbone": str(settings.backbone), "backbone_sha256": settings.backbone_sha256,
        "sizes": settings.sizes(), "style_scale": settings.style_scale,
        "style_layers": list(settings.style_layers), "pooling": settings.pooling, "features": settings.features,
    }  # fmt: skip


def key_id(settings) -> str:
    """A short name for :func:`key`, used as a folder name by the workflow."""
    text = json.dumps(key(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def save(path: str | Path, grams: dict[str, dict[int, dict[str, torch.Tensor]]], settings, style: str | Path) -> None:
    """``grams``: precision -> size -> layer -> Gram matrix."""
    record = {
        "format": FORMAT,
        "key": key(settings),
        "style_sha256": sha256_of(style),
        "grams": {
            precision: {str(size): {k: v.detach().cpu().contiguous() for k, v in layers.items()} for size, layers in sizes.items()}
            for precision, sizes in grams.items()
        },
    }
    with atomic_path(path) as tmp:
        torch.save(record, tmp)


def load(path: str | Path, settings, style: str | Path, precision: str) -> dict[int, dict[str, torch.Tensor]]:
    """The Gram targets in ``path`` for a run in ``precision``, after checking they were made for these settings and this style image."""
    path = Path(path)
    if not cacheable(settings):
        raise StyleTargetsError(f"{path}: style targets cannot be reused with preserve_color or normalize; drop --style-targets")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise StyleTargetsError(f"{path}: no such style-targets file; make it with `gatys targets`") from None
    except Exception as err:  # truncated or not a torch file
        raise StyleTargetsError(f"{path}: not a style-targets file ({err.__class__.__name__}); delete it and rerun") from None
    if not isinstance(record, dict) or not str(record.get("format", "")).startswith("gatys-style-targets/"):
        raise StyleTargetsError(f"{path}: not a style-targets file; delete it and rerun")
    if record["format"] != FORMAT:
        raise StyleTargetsError(f"{path}: made by another version of gatys ({record['format']}); delete it and rerun `gatys targets`")
    if record["key"] != key(settings):
        diff = sorted(k for k in key(settings) if record["key"].get(k) != key(settings)[k])
        raise StyleTargetsError(f"{path}: made for other settings ({', '.join(diff)}); delete it and rerun `gatys targets`")
    if record["style_sha256"] != sha256_of(style):
        raise StyleTargetsError(f"{path}: made from another image than {style}; delete it and rerun `gatys targets`")
    if precision not in record["grams"]:
        raise StyleTargetsError(
            f"{path}: holds no {precision} targets (made where {precision} does not run); "
            f"rerun `gatys targets` on a machine that runs {precision}, or set precision: fp32"
        )
    return {int(size): layers for size, layers in record["grams"][precision].items()}
