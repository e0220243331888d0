"""Discovery and checking of the gallery's input images, before any compute."""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .imaging import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageError, atomic_path, load_image

PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ConfigError(ValueError):
    """The configuration or the input folders are wrong; the message says how to fix them."""


@dataclass(frozen=True)
class BadInput:
    path: Path
    reason: str

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


def find_images(folder: str | Path, key: str) -> dict[str, Path]:
    """Image files of a folder by stem (any case of the known extensions); duplicate stems are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"config key '{key}': folder {folder} does not exist; create it or point '{key}' elsewhere")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        usable = path.is_file() or path.is_symlink()  # a broken link is reported, not ignored
        if path.name.startswith(".") or not usable or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        stem = unicodedata.normalize("NFC", path.stem)
        if stem in found:
            raise ConfigError(
                f"config key '{key}': {found[stem]} and {path} have the same name '{stem}'; rename or remove one"
            )
        if "/" in stem or not stem.strip():
            raise ConfigError(f"config key '{key}': {path} has an unusable name; rename it")
        found[stem] = path
    if not found:
        raise ConfigError(
            f"config key '{key}': no images in {folder} (extensions: {', '.join(IMAGE_EXTENSIONS)}); add some"
        )
    return found


def check_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """None if the file decodes as an image, else the reason (cheap: header, then a small draft decode).

    Any failure, an oversized image included, is explained by :func:`load_image`, which refuses
    an oversized image before decoding it.
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height <= max_pixels:
                img.draft("RGB", (256, 256))
                img.load()
                return None
    except Exception:  # noqa: BLE001 - every decoder failure becomes one line through load_image
        pass
    try:
        load_image(path, max_pixels=max_pixels)
    except ImageError as err:
        return str(err).removeprefix(f"{path}: ")
    return None


def scan(folder: str | Path, key: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[dict[str, Path], list[BadInput]]:
    """The usable images of a folder by stem, and the unusable ones with their reasons."""
    good, bad = {}, []
    for stem, path in find_images(folder, key).items():
        reason = check_image(path, max_pixels)
        if reason is None:
            good[stem] = path
        else:
            bad.append(BadInput(path, reason))
    return good, bad


def write_skipped(bad: list[BadInput], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows([str(b.path), b.reason] for b in bad)


def check_presets(presets: dict) -> None:
    for name in presets:
        if not PRESET_NAME.match(str(name)):
            raise ConfigError(
                f"config key 'presets': name {name!r} is not usable in file paths; "
                "use letters, digits, '_' and '-', starting with a letter or digit"
            )


# Snakemake hands a cluster job its wildcards on a command line (sbatch --wrap, --target-jobs
# "rule:name=value,..."), where quotes, $, `, \\, ',', '=' and ';' do not survive. Letters of
# any script, digits, spaces and a few marks do.
CLUSTER_SAFE = re.compile(r"^[\w .()+@#-]+$")


def check_cluster_names(paths: list[Path]) -> None:
    bad = [p for p in paths if not CLUSTER_SAFE.match(p.stem)]
    if bad:
        allowed = "letters, digits, spaces and . ( ) + @ # - _"
        raise ConfigError(
            f"{len(bad)} file name(s) cannot be passed to cluster jobs; rename them using only {allowed} "
            "(local runs accept any name):\n" + "\n".join(f"{p}: rename using only {allowed}" for p in bad)
        )


def compile_mode(value) -> str:
    """The config's ``compile`` (YAML reads on/off/yes/no as booleans) as a setting: on, off or auto."""
    if value is True or value is False:
        return "on" if value else "off"
    return str(value)


def run_settings(config: dict, preset: str) -> dict:
    """The settings of one preset's runs: the config's shared keys, then the preset's own.

    ``compile`` appears only when not off, so the stylize commands of a config that leaves it
    off are those of earlier versions and their results stay up to date.
    """
    shared = {"size": config["size"], "seed": config["seed"], "device": config["device"]}
    mode = compile_mode(config.get("compile", False))
    if mode != "off":
        shared["compile"] = mode
    return {**shared, **config["presets"][preset]}


def check_config(config: dict) -> None:
    """What the JSON schema cannot say: every preset is a valid run, the backbone exists."""
    from .backbone import BACKBONES
    from .transfer import Settings

    check_presets(config["presets"])
    for name in config["presets"]:
        values = run_settings(config, name)
        try:
            Settings.from_dict({**values, "backbone": config["backbone"]})
        except ValueError as err:
            raise ConfigError(f"config key 'presets.{name}': {err}") from err
    backbone = config["backbone"]
    if backbone not in BACKBONES and not Path(backbone).is_file():
        raise ConfigError(
            f"config key 'backbone': {backbone!r} is neither one of {', '.join(BACKBONES)} "
            "nor an existing weights file"
        )
