"""Images in and out: loading any common file as upright RGB, resizing, atomic saving,
tensor conversion, and color preservation (Gatys et al. 2017)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
DEFAULT_MAX_PIXELS = 100_000_000
MIN_SIDE = 32


class ImageError(ValueError):
    """An input file is not an image we can use; the message names the file."""


def _flatten(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white."""
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        array = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(array * (255.0 if array.max() <= 1 else 1) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image file as upright 8-bit RGB (EXIF orientation applied, first frame only)."""
    path = Path(path)
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the check below is the guard, with the size in its message
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:  # from the header, before decoding anything
                raise Image.DecompressionBombError(f"{img.width}x{img.height}")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return _flatten(img)
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{path}: image is larger than max_pixels={max_pixels} ({err}); downscale it or raise max_pixels"
        ) from err
    except FileNotFoundError as err:
        if path.is_symlink():
            raise ImageError(f"{path}: broken link to {os.readlink(path)}; fix or remove the link") from err
        raise ImageError(f"{path}: file not found") from err
    except PermissionError as err:
        raise ImageError(f"{path}: not readable (permission denied); fix its permissions") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: {_why_unreadable(path, err)}; replace or remove the file") from err
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _why_unreadable(path: Path, err: Exception) -> str:
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return f"a text file, not an image (starts with {text.strip()[:20]!r})"
    if "truncated" in str(err).lower():
        return f"truncated image ({err})"
    return f"not a readable image ({err})"


def fit_long_side(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``long_side``, aspect ratio kept."""
    width, height = size
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_long_side(img: Image.Image, long_side: int) -> Image.Image:
    target = fit_long_side(img.size, long_side)
    if target == img.size:
        return img.copy()
    return img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_image(img: Image.Image, path: str | Path, **kwargs) -> None:
    """Save atomically; PNGs are written without timestamps so equal pixels give equal bytes."""
    fmt = "PNG" if str(path).lower().endswith(".png") else "JPEG"
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **kwargs)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (1, 3, H, W) in [0, 1], contiguous."""
    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (1, 3, H, W) in [0, 1] -> 8-bit PIL RGB (rounded, clamped)."""
    array = tensor.detach().float().cpu().clamp(0, 1).squeeze(0).permute(1, 2, 0).numpy()
    return Image.fromarray((array * 255.0 + 0.5).astype(np.uint8), mode="RGB")


# --- color preservation (Gatys, Bethge, Hertzmann & Shechtman 2017) -----------------

_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(x), x)


def yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ).to(x), x)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Luminance (Y of YIQ) replicated to 3 channels, so the network sees a gray image."""
    return rgb_to_yiq(x)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style luminance to the content's mean and std (2017, §3.1)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-6)
    return ((style_y - s_mean) * (content_y.std() / s_std) + content_y.mean()).clamp(0, 1)


def combine_luminance(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance of the stylized image with the content image's I and Q channels."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([rgb_to_yiq(stylized)[:, :1], yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def _sqrtm(cov: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vectors @ torch.diag(values.pow(power)) @ vectors.T


def color_stats(images: list[torch.Tensor], weights: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3 x 1) and covariance (3 x 3) of the pixels, float64; several images pool as a weighted mixture."""
    weights = [1.0] * len(images) if weights is None else [float(w) for w in weights]
    total = sum(weights)
    means, covs = [], []
    for x in images:
        flat = x.reshape(3, -1).double()
        mean = flat.mean(dim=1, keepdim=True)
        centered = flat - mean
        means.append(mean)
        covs.append(centered @ centered.T / flat.shape[1])
    mean = sum(w / total * m for w, m in zip(weights, means))
    cov = sum(w / total * (c + (m - mean) @ (m - mean).T) for w, m, c in zip(weights, means, covs))
    return mean, cov + 1e-5 * torch.eye(3, dtype=cov.dtype)


def recolor(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """Linear color transfer (2017, §3.2): x's pixels moved to the given mean and covariance."""
    x_mean, x_cov = color_stats([x])
    transform = _sqrtm(cov) @ _sqrtm(x_cov, inverse=True)
    out = transform @ (x.reshape(3, -1).double() - x_mean) + mean
    return out.reshape(x.shape).to(x.dtype).clamp(0, 1)


def match_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image in the content's colors (its mean and covariance), for ``preserve_color: histogram``."""
    return recolor(style, *color_stats([content]))
