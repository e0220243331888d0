"""The optimization: targets, optimizer, coarse-to-fine scales, one loss row per evaluation."""

from __future__ import annotations

import functools
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from . import imaging
from .backbone import CONV_NAMES, VGGFeatures, Weights, load_weights
from .lbfgs import CompactLBFGS
from .losses import ALPHA_OVER_BETA, CONTENT_LAYERS, STYLE_LAYERS, ContentLoss, GatysLoss, StyleLoss

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "recolored", "noise", "style")
PRESERVE_COLOR = ("none", "luminance", "histogram")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE = ("auto", "on", "off")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class Settings:
    """Every parameter of one run.

    The loss is the paper's (α/β = 1e-3, its layers, L-BFGS from the photo); the speed settings
    (bf16 where fast, early stopping, one scale) are what `benchmarks/time_to_quality.py`
    showed to reach the paper recipe's loss soonest.
    """

    size: int = 512  # long side of the output, px
    steps: int = 400  # loss evaluations per scale, at most (early stopping usually ends sooner)
    content_weight: float = 1.0  # α
    style_weight: float = 1.0 / ALPHA_OVER_BETA  # β
    tv_weight: float = 0.0  # γ
    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: w_l = 1 / number of layers
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02  # Adam only; the image is in [0, 1]
    init: str = "content"
    seed: int = 0
    scales: int = 1  # coarse-to-fine: sizes size/2^(scales-1) ... size
    style_scale: float = 1.0  # style image long side = style_scale * current size
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    preserve_color: str = "none"
    tolerance: float = 1e-3  # early stop: relative improvement of the best total over `window` evaluations
    window: int = 20
    pooling: str = "avg"
    features: str = "relu"
    normalize: bool = False  # the paper's normalized network (then use a much larger style_weight)
    calibration: str | None = None  # folder of calibration images; None: the run's own images
    backbone: str = "vgg19-caffe"
    backbone_sha256: str | None = None
    precision: str = "auto"  # bf16 autocast where the hardware runs it fast, else fp32
    history: int = 100  # L-BFGS: correction pairs kept
    first_decrease: float = 0.1  # L-BFGS's first trial step: the decrease it predicts, as a fraction of the loss; 0: torch's
    compile: str = "off"  # torch.compile the network: on, off, auto (on where it can compile)
    device: str = "auto"

    def __post_init__(self):
        self.content_layers = tuple(self.content_layers)
        self.style_layers = tuple(self.style_layers)
        if self.style_layer_weights is not None:
            self.style_layer_weights = tuple(float(w) for w in self.style_layer_weights)
        if self.style_blend is not None:
            self.style_blend = tuple(float(w) for w in self.style_blend)
        self.validate()

    def validate(self) -> None:
        choices = {
            "optimizer": OPTIMIZERS, "init": INITS, "preserve_color": PRESERVE_COLOR,
            "pooling": ("avg", "max"), "features": ("relu", "conv"), "precision": PRECISIONS, "compile": COMPILE,
            "device": ("auto", "cpu", "cuda", "mps"),
        }  # fmt: skip
        for key, allowed in choices.items():
            value = getattr(self, key)
            if value not in allowed and not (key == "device" and str(value).startswith("cuda:")):
                raise ValueError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
        for key in ("size", "steps", "scales", "window", "history"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}: must be a positive integer, got {getattr(self, key)!r}")
        for key in ("content_weight", "style_weight", "tv_weight", "tolerance", "first_decrease"):
            if not (getattr(self, key) >= 0 and math.isfinite(getattr(self, key))):
                raise ValueError(f"{key}: must be a finite number >= 0, got {getattr(self, key)!r}")
        if self.style_weight == 0:
            raise ValueError("style_weight: must be > 0, or there is nothing to transfer")
        if not (self.learning_rate > 0 and self.style_scale > 0):
            raise ValueError("learning_rate and style_scale: must be > 0")
        if self.size >> (self.scales - 1) < 16:
            raise ValueError(f"scales: {self.scales} scales make the first one smaller than 16 px at size {self.size}")
        for key in ("content_layers", "style_layers"):
            layers = getattr(self, key)
            unknown = [name for name in layers if name not in CONV_NAMES]
            if not layers or unknown:
                raise ValueError(f"{key}: {unknown or 'empty'} not VGG-19 conv layers; use names from {', '.join(CONV_NAMES)}")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise ValueError("style_layer_weights: give one weight per style layer")

    def sizes(self) -> list[int]:
        return [round(self.size / 2 ** (self.scales - 1 - k)) for k in range(self.scales)]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device cuda: no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


@functools.cache  # read once per process, not at every run's construction
def cpu_has_fast_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True on CPUs with native bf16 arithmetic (AVX-512 BF16 or AMX); elsewhere bf16 is emulated."""
    try:
        text = open(cpuinfo).read()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_precision(name: str, device: torch.device) -> str:
    """``auto``: bf16 on CUDA GPUs that support it and on CPUs with native bf16, else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def can_compile(device: torch.device) -> bool:
    """Whether torch.compile's Inductor can build kernels here: Triton on CUDA, a C++ compiler on the CPU."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    if device.type == "cpu":
        compilers = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
        return any(name and shutil.which(name) for name in compilers)
    return False


def pick_compile(name: str, device: torch.device) -> bool:
    """``auto``: compile where Inductor can build kernels (see :func:`can_compile`)."""
    return name == "on" or (name == "auto" and can_compile(device))


def lbfgs(params: list[torch.Tensor], evaluations: int, history: int, first_decrease: float = 0.0) -> CompactLBFGS:
    """L-BFGS as every run uses it: unit steps with a strong-Wolfe line search, stopped only by the evaluation budget.

    torch.optim.LBFGS's iterates, with the history applied in two passes (`gatys.lbfgs`);
    ``first_decrease`` > 0 replaces torch's first trial step (see ``CompactLBFGS._first_step``).
    """
    return CompactLBFGS(
        params, lr=1, max_iter=evaluations, max_eval=evaluations, tolerance_grad=0, tolerance_change=0,
        history_size=history, first_decrease=first_decrease,
    )  # fmt: skip


@dataclass
class Result:
    image: Image.Image
    rows: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class _Stop(Exception):
    """Raised inside the closure to end a scale (budget spent or converged)."""


class StyleTransfer:
    """Owns the backbone on a device; ``stylize`` runs one transfer and reports every evaluation."""

    def __init__(self, settings: Settings, weights: Weights | None = None):
        self.settings = settings
        self.device = pick_device(settings.device)
        self.weights = weights or load_weights(settings.backbone, settings.backbone_sha256)
        layers = list(settings.content_layers) + list(settings.style_layers)
        self.model = VGGFeatures(self.weights, layers, settings.pooling, settings.features).to(self.device)
        if self.device.type in ("cpu", "cuda"):
            self.model.use_channels_last()
        self.precision = pick_precision(settings.precision, self.device)
        self.normalized = False
        self._compile = pick_compile(settings.compile, self.device)
        self._network: torch.nn.Module | None = None  # what evaluations run; built at the first one
        self.compiled: torch.nn.Module | None = None

    # --- targets ---------------------------------------------------------------------
    def _tensor(self, img: Image.Image, long_side: int) -> torch.Tensor:
        return imaging.to_tensor(imaging.resize_long_side(img, long_side)).to(self.device)

    def _autocast(self, precision: str | None = None):
        enabled = (precision or self.precision) == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    @torch.no_grad()
    def normalize(self, images: list[torch.Tensor]) -> None:
        self.model.normalize_([img.to(self.device) for img in images])
        self.normalized = True
        self._network = None  # rebuilt from the normalized weights

    def target_precisions(self) -> list[str]:
        """The precisions whose style targets `gatys targets` saves here: fp32, and bf16 where it runs."""
        bf16 = self.device.type == "cpu" or (self.device.type == "cuda" and torch.cuda.is_bf16_supported())
        return ["fp32", "bf16"] if bf16 else ["fp32"]

    def _network_in(self, precision: str) -> torch.nn.Module:
        """The (uncompiled) network that evaluations in ``precision`` run."""
        if precision == self.precision:
            return self.evaluation_network()
        return self.model.with_convolutions_in(torch.bfloat16) if precision == "bf16" else self.model

    @torch.no_grad()
    def style_grams(self, styles: list[torch.Tensor], precision: str | None = None) -> dict[str, torch.Tensor]:
        """Blended Gram targets of the style layers, fp32 matrices, from the network a run in ``precision`` evaluates.

        In bf16 that is the network with bf16 weights and activations: the image's features are
        rounded so, and targets from the exact network would put the optimum of the loss a run
        minimizes away from the exact loss's. With such targets bf16 runs stalled 0.04 % above the
        fp32 baseline's loss at 256 px; from the same network they pass it (README, Performance).
        """
        precision = precision or self.precision
        return self._grams_of(self._network_in(precision), precision, styles)

    @torch.no_grad()
    def _grams_of(self, network: torch.nn.Module, precision: str, styles: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        s = self.settings
        with self._autocast(precision):
            feats = [network(style) for style in styles]
        blend = list(s.style_blend or [1.0] * len(styles))
        return {layer: StyleLoss.get_target([f[layer].float() for f in feats], blend) for layer in s.style_layers}

    def style_grams_per_size(self, style_imgs: list[Image.Image]) -> dict[str, dict[int, dict[str, torch.Tensor]]]:
        """The Gram targets for each precision and every size of the coarse-to-fine schedule (what `gatys targets` saves)."""
        s = self.settings
        styles = {size: [self._tensor(img, max(16, round(size * s.style_scale))) for img in style_imgs] for size in s.sizes()}
        grams = {}
        for precision in self.target_precisions():
            network = self._network_in(precision)  # built once per precision, not per size
            grams[precision] = {size: self._grams_of(network, precision, images) for size, images in styles.items()}
        return grams

    @torch.no_grad()
    def targets(
        self, content: torch.Tensor, styles: list[torch.Tensor] | None = None, grams: dict[str, torch.Tensor] | None = None
    ) -> GatysLoss:
        """The loss of one scale: content targets in the run's precision, style Gram targets given or computed."""
        s = self.settings
        if grams is None:
            grams = self.style_grams(styles)
        with self._autocast():
            content_feats = self.model(content)
        layer_weights = s.style_layer_weights or [1.0 / len(s.style_layers)] * len(s.style_layers)
        return GatysLoss(
            ContentLoss({layer: content_feats[layer].float() for layer in s.content_layers}),
            StyleLoss({layer: grams[layer].to(self.device) for layer in s.style_layers}, dict(zip(s.style_layers, layer_weights))),
            (s.content_weight, s.style_weight, s.tv_weight),
        )

    # --- the run ---------------------------------------------------------------------
    def stylize(
        self,
        content_img: Image.Image,
        style_imgs: list[Image.Image],
        callback: Callable[[dict], None] | None = None,
        calibration: list[Image.Image] | None = None,
        observe: Callable[[dict, torch.Tensor], None] | None = None,
        grams: dict[int, dict[str, torch.Tensor]] | None = None,
    ) -> Result:
        """Stylize; ``grams`` are precomputed style targets per size (see `gatys.style_targets`)."""
        s = self.settings
        if s.style_blend is not None and len(s.style_blend) != len(style_imgs):
            raise ValueError(f"style_blend: {len(s.style_blend)} weights for {len(style_imgs)} style images")
        if s.style_blend is not None and (min(s.style_blend) < 0 or sum(s.style_blend) <= 0):
            raise ValueError("style_blend: weights must be >= 0 with a positive sum")
        torch.manual_seed(s.seed)
        generator = torch.Generator().manual_seed(s.seed)
        original_content = content_img
        if s.preserve_color == "histogram":
            ref = imaging.to_tensor(content_img)
            style_imgs = [imaging.to_image(imaging.match_histogram(imaging.to_tensor(im), ref)) for im in style_imgs]
        elif s.preserve_color == "luminance":
            content_y = imaging.luminance(imaging.to_tensor(content_img))
            style_imgs = [
                imaging.to_image(imaging.match_luminance(imaging.luminance(imaging.to_tensor(im)), content_y))
                for im in style_imgs
            ]
            content_img = imaging.to_image(content_y)

        if s.normalize and not self.normalized:
            calib = calibration or [content_img, *style_imgs]
            self.normalize([self._tensor(img, s.size) for img in calib])

        rows: list[dict] = []
        start = time.perf_counter()
        image = None
        sizes = s.sizes()
        for scale, size in enumerate(sizes):
            content = self._tensor(content_img, size)
            if grams is None:
                styles = [self._tensor(img, max(16, round(size * s.style_scale))) for img in style_imgs]
                loss_fn = self.targets(content, styles)
            else:
                loss_fn = self.targets(content, grams=grams[size])
            if image is None:
                image = self._init(content, style_imgs, size, generator)
            else:
                image = F.interpolate(image, size=content.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
            image = self._optimize(image.contiguous(), loss_fn, scale, size, rows, start, callback, observe)
        result = image
        if s.preserve_color == "luminance":
            result = imaging.combine_luminance(result, self._tensor(original_content, sizes[-1]))
        info = {
            "evaluations": len(rows),
            "elapsed_s": time.perf_counter() - start,
            "device": str(self.device),
            "precision": self.precision,
            "compiled": self.compiled is not None,
            "sizes": sizes,
        }
        return Result(imaging.to_image(result), rows, info)

    def _init(self, content: torch.Tensor, style_imgs: list[Image.Image], size: int, generator: torch.Generator) -> torch.Tensor:
        init = self.settings.init
        if init == "content":
            return content.clone()
        if init == "recolored":  # the photo in the style's colors (mean and covariance of its pixels)
            stats = imaging.color_stats([imaging.to_tensor(img) for img in style_imgs], self.settings.style_blend)
            return imaging.recolor(content.cpu(), *stats).to(self.device)
        if init == "style":
            style = self._tensor(style_imgs[0], size)
            return F.interpolate(style, size=content.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        return torch.rand(content.shape, generator=generator).to(self.device)

    def evaluate(self, image: torch.Tensor, loss_fn: GatysLoss) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One loss evaluation: forward (autocast in the run's precision), loss, gradient to the image.

        The loss is that of the image clamped to [0, 1], the one that will be saved: L-BFGS does
        not keep pixels in range, and a loss of the unclamped image rewards values beyond it.
        """
        image = image.clamp(0, 1)
        with self._autocast():
            feats = self._features(image)
        total, terms = loss_fn(image, feats)
        if torch.isfinite(total):
            total.backward()
        return total, terms

    def evaluation_network(self) -> torch.nn.Module:
        """The network as evaluations run it, built on first use.

        In bf16 a copy of the model whose convolution weights are bf16 already: autocast casts
        weights that need no gradient again at every call, which at 512 px took 2.5 % of an
        evaluation (README, Performance), for bit-identical results. Compiled where asked
        (kernels fused, built on the first call of each image shape, cached on disk by Inductor
        for later processes), else eager.
        """
        if self._network is None:
            self._network = self.model.with_convolutions_in(torch.bfloat16) if self.precision == "bf16" else self.model
            self.compiled = torch.compile(self._network) if self._compile else None
        return self._network

    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        network = self.evaluation_network()
        if self.compiled is not None:
            try:
                return self.compiled(image)
            except torch.cuda.OutOfMemoryError:
                raise  # not the compiler's fault: reported like any other out-of-memory
            except Exception as error:  # e.g. no working compiler: "auto" falls back to the eager network
                reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
                if self.settings.compile == "on":
                    raise RuntimeError(f"compile: torch.compile failed ({reason}); use --compile off") from error
                warnings.warn(f"torch.compile failed ({reason}); running the network uncompiled")
                self.compiled, self._compile = None, False
        return network(image)

    def _optimize(self, image, loss_fn, scale, size, rows, start, callback, observe) -> torch.Tensor:
        s = self.settings
        image = image.detach().requires_grad_(True)
        best = {"loss": math.inf, "image": image.detach().clone()}
        history: list[float] = []
        first = len(rows)

        def closure():
            if len(rows) - first >= s.steps:
                raise _Stop
            optimizer.zero_grad(set_to_none=True)
            total, terms = self.evaluate(image, loss_fn)
            if not torch.isfinite(total):
                raise NonFiniteLoss(
                    f"loss became {total.item()} at evaluation {len(rows) + 1} (scale {scale}, {size} px); "
                    "lower the style or tv weight, use --optimizer lbfgs, or a smaller --learning-rate"
                )
            row = {"step": len(rows) + 1, "scale": scale, "size": size, "elapsed_s": time.perf_counter() - start}
            row.update({name: float(value.detach()) for name, value in terms.items()})
            rows.append(row)
            if callback:
                callback(row)
            if observe:  # the image this row was evaluated on (benchmarks snapshot it)
                observe(row, image.detach())
            value = row["total"]
            if value < best["loss"]:
                best["loss"], best["image"] = value, image.detach().clone()
            history.append(best["loss"])
            if s.tolerance and len(history) > s.window:
                old = history[-1 - s.window]
                if (old - best["loss"]) <= s.tolerance * abs(old):
                    raise _Stop
            return total

        if s.optimizer == "lbfgs":
            optimizer = lbfgs([image], s.steps, s.history, s.first_decrease)
        else:
            optimizer = torch.optim.Adam([image], lr=s.learning_rate)
        try:
            while len(rows) - first < s.steps:
                before = len(rows)
                optimizer.step(closure)
                if s.optimizer == "adam":
                    with torch.no_grad():
                        image.clamp_(0, 1)
                elif len(rows) == before:
                    break
        except _Stop:
            pass
        if s.optimizer == "adam":  # the last step's result was never evaluated
            with torch.no_grad():
                _, terms = loss_fn(image, self.model(image))
            if float(terms["total"]) < best["loss"]:
                best["image"] = image.detach().clone()
        return best["image"].clamp(0, 1)

