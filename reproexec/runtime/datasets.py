"""Reading a dataset snapshot and turning it into seeded, worker-independent batches.

The snapshot is read-only and already verified by the host; nothing here writes to it. Images are
decoded once (RGB, resized) into uint8 tensors; the random part of the pipeline runs per sample
with its own generator seeded from (seed, epoch, sample index), so a batch is the same whichever
process builds it and however many workers there are.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from reproexec.config import Config
from reproexec.errors import ConfigError, DataError
from reproexec.runtime.seeding import derive_seed

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
# Above this many bytes of decoded, resized uint8 pixels, images are decoded per sample instead of
# held in memory (same code path, so the tensors are identical either way).
CACHE_LIMIT_BYTES = 1 << 30


# ----------------------------------------------------------------------------- image sources


def decode_image(path: Path, resize: tuple[int, int] | None) -> torch.Tensor:
    """File → RGB uint8 CHW tensor, resized (bilinear, antialiased) when `resize` is set."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(
            f"cannot decode image {path}: {e}", "remove or replace the file and re-snapshot the data"
        ) from None
    return _resized(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous(), resize)


def _resized(img: torch.Tensor, resize: tuple[int, int] | None) -> torch.Tensor:
    return img if resize is None else F.resize(img, list(resize), antialias=True)


class ImageSource:
    """Indexable uint8 CHW images: held in memory when small enough, else decoded on demand."""

    def __init__(
        self,
        ids: list[str],
        *,
        paths: list[Path] | None = None,
        pixels: torch.Tensor | None = None,
        resize: tuple[int, int] | None = None,
    ):
        self.ids = ids
        self._paths = paths
        self._pixels = pixels  # N×3×H×W uint8 (CIFAR), resized on access if needed
        self._resize = resize
        self._cache: list[torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def materialize(self) -> None:
        h, w = self._resize or (256, 256)  # unknown size: assume large-ish before deciding
        if len(self) * 3 * h * w <= CACHE_LIMIT_BYTES:
            self._cache = [self._load(i) for i in range(len(self))]

    def _load(self, i: int) -> torch.Tensor:
        if self._pixels is not None:
            return _resized(self._pixels[i], self._resize)
        assert self._paths is not None
        return decode_image(self._paths[i], self._resize)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._cache[i] if self._cache is not None else self._load(i)

    def subset(self, indices: Sequence[int]) -> ImageSource:
        idx = list(indices)
        return ImageSource(
            [self.ids[i] for i in idx],
            paths=[self._paths[i] for i in idx] if self._paths is not None else None,
            pixels=self._pixels[idx] if self._pixels is not None else None,
            resize=self._resize,
        )


@dataclass
class Split:
    images: ImageSource
    labels: list[int]

    def subset(self, indices: Sequence[int]) -> Split:
        return Split(self.images.subset(indices), [self.labels[i] for i in indices])


@dataclass
class DatasetBundle:
    classes: list[str]
    train: Split
    val: Split
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- loading


def load_dataset(config: Config, data_dir: Path, *, subset: int | None = None) -> DatasetBundle:
    """Read the snapshot per config.data; `subset` (smoke) overrides data.subset."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"dataset snapshot {data_dir} is not a folder", "pass the snapshot root as --data")
    resize = tuple(config.augment.resize) if config.augment.resize else None
    d = config.data
    if d.format == "imagefolder":
        classes, train = _read_imagefolder(data_dir, d.train_dir, None, resize)
        if d.val_dir is not None:
            _, val = _read_imagefolder(data_dir, d.val_dir, classes, resize)
    else:
        classes, train, val = _read_cifar10(data_dir, resize)
    if d.val_fraction is not None:
        n = len(train.labels)
        perm = _permutation(n, derive_seed(config.seed, "split"))
        n_val = min(n - 1, max(1, round(n * d.val_fraction)))
        val = train.subset(sorted(perm[:n_val]))
        train = train.subset(sorted(perm[n_val:]))
    if len(classes) != config.model.num_classes:
        raise ConfigError(
            f"model.num_classes = {config.model.num_classes}, but the dataset has {len(classes)} classes "
            f"({', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''})",
            f"set model.num_classes: {len(classes)}",
        )
    n_sub = subset if subset is not None else d.subset
    full = len(train.labels)
    if n_sub is not None and n_sub < full:
        perm = _permutation(full, derive_seed(config.seed, "subset"))
        train = train.subset(sorted(perm[:n_sub]))
    for split in (train, val):
        split.images.materialize()
    if not train.labels or not val.labels:
        raise DataError(f"dataset {data_dir} has an empty train or val split", "check data.train_dir/val_dir")
    info = {
        "format": d.format,
        "train_images": len(train.labels),
        "val_images": len(val.labels),
        "train_images_before_subset": full,
        "subset": n_sub,
    }
    return DatasetBundle(classes, train, val, info)


def _permutation(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def _read_imagefolder(
    root: Path, sub: str, classes: list[str] | None, resize: tuple[int, int] | None
) -> tuple[list[str], Split]:
    folder = root / sub
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist", f"the snapshot needs {sub}/<class>/<image> folders")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise DataError(f"{folder} has no class folders", f"put images in {sub}/<class name>/")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(
            f"{folder} has class folders not in the training set: {', '.join(unknown)}",
            "use the same class folders in train and val",
        )
    paths, labels, ids = [], [], []
    for label, name in enumerate(classes):
        cdir = folder / name
        if not cdir.is_dir():
            continue
        files = sorted(
            p
            for p in cdir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        for p in files:
            paths.append(p)
            labels.append(label)
            ids.append(p.relative_to(root).as_posix())
    if not paths:
        raise DataError(
            f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})", "check data.train_dir/val_dir"
        )
    return classes, Split(ImageSource(ids, paths=paths, resize=resize), labels)


# --- CIFAR-10 python batches: pickles from outside, so only plain data and numpy arrays may load.

_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),  # how Python 3 protocol-2 pickles spell bytes
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def load_cifar_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR-10 batch file as a dict with str keys; refuses anything but plain data and arrays."""
    try:
        raw = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataError(
            f"{path} is not a safe CIFAR-10 batch file: {e}",
            "use the original python-version CIFAR-10 batches (pickled dicts of arrays)",
        ) from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(raw).__name__}", "check the file")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


def _read_cifar10(root: Path, resize: tuple[int, int] | None) -> tuple[list[str], Split, Split]:
    base = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    meta_path = base / "batches.meta"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} is missing", "the cifar10 format needs batches.meta, data_batch_1..5, test_batch")
    names = load_cifar_pickle(meta_path).get("label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{meta_path} has no label_names list", "check the file")
    classes = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    train_files = [base / f"data_batch_{i}" for i in range(1, 6) if (base / f"data_batch_{i}").is_file()]
    if not train_files:
        raise DataError(f"{base} has no data_batch_* files", "the cifar10 format needs data_batch_1..5")
    train = _cifar_split(train_files, len(classes), root, resize)
    test = base / "test_batch"
    val = _cifar_split([test], len(classes), root, resize) if test.is_file() else Split(ImageSource([]), [])
    return classes, train, val


def _cifar_split(files: list[Path], n_classes: int, root: Path, resize: tuple[int, int] | None) -> Split:
    arrays, labels, ids = [], [], []
    for f in files:
        d = load_cifar_pickle(f)
        data, lab = d.get("data"), d.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{f}: 'data' must be a uint8 array of shape N×3072", "check the file")
        if (
            not isinstance(lab, list)
            or len(lab) != len(data)
            or not all(isinstance(v, int) and 0 <= v < n_classes for v in lab)
        ):
            raise DataError(f"{f}: 'labels' must be {len(data)} ints in 0..{n_classes - 1}", "check the file")
        rel = f.relative_to(root).as_posix()
        arrays.append(data)
        labels += lab
        ids += [f"{rel}#{i}" for i in range(len(lab))]
    pixels = torch.from_numpy(np.concatenate(arrays).reshape(-1, 3, 32, 32).copy())
    return Split(ImageSource(ids, pixels=pixels, resize=resize), labels)


# ----------------------------------------------------------------------------- transforms & batches


def build_random_transform(config: Config) -> v2.Transform | None:
    """The seeded, per-sample part of the train pipeline (uint8 in, uint8 out), or None if there is none."""
    a = config.augment
    ops: list[v2.Transform] = []
    if a.random_crop is not None:
        ops.append(v2.RandomCrop(list(a.random_crop.size), padding=a.random_crop.padding or None))
    if a.hflip_prob > 0:
        ops.append(v2.RandomHorizontalFlip(a.hflip_prob))
    if a.rotation_degrees > 0:
        ops.append(v2.RandomRotation(a.rotation_degrees))
    cj = a.color_jitter
    if cj is not None and any((cj.brightness, cj.contrast, cj.saturation, cj.hue)):
        ops.append(v2.ColorJitter(cj.brightness, cj.contrast, cj.saturation, cj.hue))
    return v2.Compose(ops) if ops else None


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # DataLoader workers run with one intra-op thread; the main process (num_workers 0) may have
    # more. Image ops can split work by thread count, so batches are always built with one thread.
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class SeededImageDataset(torch.utils.data.Dataset):
    """Keys are (epoch, index); a sample's random transform depends on nothing else."""

    def __init__(self, split: Split, config: Config, *, train: bool):
        self.split = split
        self.seed = config.seed
        self.random_tf = build_random_transform(config) if train else None
        a = config.augment
        self.center_crop = list(a.random_crop.size) if (not train and a.random_crop is not None) else None
        self.mean = torch.tensor(a.normalize.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(a.normalize.std).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.split.labels)

    def _image(self, epoch: int | None, i: int) -> torch.Tensor:
        img = self.split.images[i]
        if self.random_tf is not None:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(derive_seed(self.seed, "augment", epoch, i))
                img = self.random_tf(img)
        elif self.center_crop is not None:
            img = F.center_crop(img, self.center_crop)
        return img

    def image(self, i: int) -> torch.Tensor:
        """Sample `i` as uint8 CHW before normalisation (epoch-free: for plotting val images)."""
        return self._image(None, i)

    def __getitem__(self, key: tuple[int | None, int]) -> tuple[torch.Tensor, int]:
        x, y, _ = self.__getitems__([key])
        return x[0], int(y[0])

    def __getitems__(self, keys: list[tuple[int | None, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with _one_thread():
            imgs = [self._image(e, i) for e, i in keys]
            shapes = {tuple(t.shape) for t in imgs}
            if len(shapes) > 1:
                raise DataError(
                    f"images in one batch have different sizes: {sorted(shapes)[:3]}",
                    "set augment.resize so every image has the same size",
                )
            x = torch.stack(imgs).to(torch.float32).div_(255.0).sub_(self.mean).div_(self.std)
            y = torch.tensor([self.split.labels[i] for _, i in keys], dtype=torch.long)
            idx = torch.tensor([i for _, i in keys], dtype=torch.long)
        return x, y, idx


def collate_passthrough(batch: Any) -> Any:
    """`__getitems__` already returns a collated batch."""
    return batch


class EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, index): a fresh permutation per epoch from a generator seeded with (seed, epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in _permutation(self.n, derive_seed(self.seed, "shuffle", self.epoch)):
            yield (self.epoch, i)


def seed_worker(worker_id: int) -> None:
    """Seed Python and NumPy in a DataLoader worker from torch's per-worker seed (itself seeded)."""
    import random

    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)
