"""Contact sheets: a labelled grid of images with thumbnails in the header row and column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .imaging import load_image, save_image

BACKGROUND = (250, 250, 248)
INK = (30, 30, 30)
MISSING = (225, 225, 225)


@dataclass
class Header:
    """A row or column header: a label and an optional thumbnail."""

    label: str
    thumb: str | Path | None = None


def _font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, covers accented and most non-Latin letters)."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size=size)


def _fit(path: str | Path | None, cell: int) -> Image.Image | None:
    if path is None:
        return None
    img = load_image(path)
    img.thumbnail((cell, cell), Image.Resampling.LANCZOS)
    return img


def _paste_centered(sheet: Image.Image, img: Image.Image | None, x: int, y: int, w: int, h: int) -> None:
    if img is None:
        ImageDraw.Draw(sheet).rectangle([x + 4, y + 4, x + w - 5, y + h - 5], fill=MISSING)
        return
    sheet.paste(img, (x + (w - img.width) // 2, y + (h - img.height) // 2))


def _label(draw: ImageDraw.ImageDraw, text: str, x: int, y: int, w: int, font) -> None:
    while text and draw.textlength(text, font=font) > w - 8 and len(text) > 4:
        text = text[:-4] + "..."
    tw = draw.textlength(text, font=font)
    draw.text((x + (w - tw) / 2, y), text, fill=INK, font=font)


def contact_sheet(
    cells: list[list[str | Path | None]],
    rows: list[Header],
    cols: list[Header],
    corner: Header | None = None,
    cell: int = 256,
    title: str | None = None,
) -> Image.Image:
    """A grid: ``cells[r][c]`` under column header ``cols[c]`` beside row header ``rows[r]``.

    Each header shows its thumbnail (if any) above its label; a missing cell is drawn gray.
    """
    if len(cells) != len(rows) or any(len(r) != len(cols) for r in cells):
        raise ValueError(f"contact sheet: {len(rows)}x{len(cols)} headers for a grid of {[len(r) for r in cells]}")
    font_size = max(12, cell // 14)
    font = _font(font_size)
    label_h = font_size + 10
    title_h = font_size + 16 if title else 0
    pad = 6
    width = (len(cols) + 1) * (cell + pad) + pad
    height = title_h + (len(rows) + 1) * (cell + label_h + pad) + pad
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        _label(draw, title, 0, 8, width, _font(font_size + 4))

    def slot(r: int, c: int) -> tuple[int, int]:
        return pad + c * (cell + pad), title_h + pad + r * (cell + label_h + pad)

    headers = [((0, c + 1), h) for c, h in enumerate(cols)] + [((r + 1, 0), h) for r, h in enumerate(rows)]
    if corner is not None:
        headers.append(((0, 0), corner))
    for (r, c), header in headers:
        x, y = slot(r, c)
        if header.thumb is not None:
            _paste_centered(sheet, _fit(header.thumb, cell), x, y, cell, cell)
        _label(draw, header.label, x, y + cell + 3, cell, font)
    for r, row in enumerate(cells):
        for c, path in enumerate(row):
            x, y = slot(r + 1, c + 1)
            _paste_centered(sheet, _fit(path, cell), x, y, cell, cell)
    return sheet


def save_sheet(sheet: Image.Image, path: str | Path) -> None:
    is_jpeg = str(path).lower().endswith((".jpg", ".jpeg"))
    save_image(sheet, path, **({"quality": 90, "optimize": True} if is_jpeg else {}))
