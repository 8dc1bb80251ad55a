"""Fashion-MNIST for the course: the real data set, offline, checksummed.

    >>> images, labels = load_fashion_mnist("train")   # uint8 [60000, 28, 28], int64 [60000]

The four official files ship in the repo under ``data/fashion-mnist/``. Each is checked against
its SHA-256 the first time it is used (the result is cached per file version), so a truncated,
altered or swapped file is never used silently. Where the files are missing they are fetched
from the official mirror into a user cache with pooch, checksums included.

The apparel case study's *competition layout* (CSV files next to one PNG per image) is
``course_utils.competition``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from course_utils import env
from course_utils.atomic import replacing, write_atomically

CLASS_NAMES = (
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
)
TRAIN_MEAN = 0.2860  # mean pixel value of the training images, scaled to [0, 1]
TRAIN_STD = 0.3530

MIRROR_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
SPLIT_SIZES = {"train": 60000, "test": 10000}
REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist"


class DataError(Exception):
    """A data file or folder is missing or wrong; the message says which and how to fix it."""


# ---------------------------------------------------------------- locations and caches


def cache_dir() -> Path:
    """The user cache for downloads and verified checksums (``COURSE_CACHE_DIR`` overrides).

    >>> cache_dir().name
    'pytorch-foundations'
    """
    override = os.environ.get(env.CACHE_DIR)
    if override:
        return Path(override)
    import pooch

    return Path(pooch.os_cache("pytorch-foundations"))


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the Fashion-MNIST files are read from: ``root``, else ``COURSE_DATA_DIR``, else the repo's.

    >>> data_dir().name
    'fashion-mnist'
    """
    if root is not None:
        return Path(root)
    folder = os.environ.get(env.DATA_DIR)
    return Path(folder) if folder else REPO_DATA_DIR


def _file_version(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks.

    >>> sha256_of("data/fashion-mnist/t10k-labels-idx1-ubyte.gz")[:8]
    '67da17c7'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified_cache_path() -> Path:
    return cache_dir() / "verified-sha256.json"


def _read_verified() -> dict:
    try:
        return json.loads(_verified_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _remember_verified(path: Path, version: str) -> None:
    cache = _read_verified()
    cache[str(path.resolve())] = version
    try:
        write_atomically(_verified_cache_path(), json.dumps(cache, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache only means we verify again next time


def verify_file(path: str | os.PathLike) -> Path:
    """Check a Fashion-MNIST file's SHA-256 (cached per file version); return its path.

    >>> verify_file("data/fashion-mnist/t10k-labels-idx1-ubyte.gz").name
    't10k-labels-idx1-ubyte.gz'
    """
    path = Path(path)
    expected = SHA256[path.name]
    version = _file_version(path)
    if _read_verified().get(str(path.resolve())) == version:
        return path
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{path} is not the official {path.name}: its SHA-256 is {actual}, expected {expected} "
            f"(size {path.stat().st_size} bytes). The file is truncated, altered or swapped with another. "
            f"Fix: delete it and copy the original back (git checkout -- data/fashion-mnist/{path.name} "
            f"in the course repo), or delete it and let load_fashion_mnist() download it again."
        )
    _remember_verified(path, version)
    return path


def _download(name: str) -> Path:
    """Fetch one official file into the user cache with pooch (checksum checked by pooch)."""
    import pooch

    target = cache_dir() / "fashion-mnist"
    return Path(
        pooch.retrieve(
            MIRROR_URL + name, known_hash=f"sha256:{SHA256[name]}", fname=name, path=target, progressbar=False
        )
    )


def locate_file(name: str, root: str | os.PathLike | None = None) -> Path:
    """The verified path of one Fashion-MNIST file: in the data folder, the user cache, or downloaded.

    >>> locate_file("t10k-labels-idx1-ubyte.gz").name
    't10k-labels-idx1-ubyte.gz'
    """
    folder = data_dir(root)
    for candidate in (folder / name, cache_dir() / "fashion-mnist" / name):
        if candidate.is_file():
            return verify_file(candidate)
    try:
        return verify_file(_download(name))
    except Exception as exc:  # pooch raises requests/OSError/ValueError; all mean "not here"
        raise DataError(
            f"Fashion-MNIST file {name} is missing from {folder} and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Fix: put the official file {name} in {folder} "
            f"(or set COURSE_DATA_DIR to a folder that holds all four files), or connect to the "
            f"network and call load_fashion_mnist() again to fetch it from {MIRROR_URL}."
        ) from None


# ---------------------------------------------------------------- IDX parsing


def _parse_idx(raw: bytes, path: Path, magic: int, dims: int) -> np.ndarray:
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise DataError(f"{path} has IDX magic number {found_magic}, expected {magic}: wrong kind of file.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} declares shape {shape} but holds {body.size} values: the file is damaged.")
    return body.reshape(shape)


def _decoded_cache_path(gz_path: Path) -> Path:
    return cache_dir() / "decoded" / f"{SHA256[gz_path.name]}.npy"


def _read_idx(gz_path: Path, magic: int, dims: int) -> np.ndarray:
    """Decode a verified IDX .gz file, caching the decoded array by the file's checksum."""
    cached = _decoded_cache_path(gz_path)
    if cached.is_file():
        try:
            return np.load(cached)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    with gzip.open(gz_path, "rb") as f:
        array = _parse_idx(f.read(), gz_path, magic, dims).copy()
    try:
        with replacing(cached, suffix=".npy") as tmp:
            np.save(tmp, array)
    except OSError:
        pass
    return array


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The official images (uint8 [N, 28, 28]) and labels (int64 [N]) of one split, in order.

    >>> images, labels = load_fashion_mnist("test"); images.shape
    torch.Size([10000, 28, 28])
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    image_name, label_name = FILES[split]
    image_path, label_path = locate_file(image_name, root), locate_file(label_name, root)
    images = _read_idx(image_path, 2051, 3)
    labels = _read_idx(label_path, 2049, 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels) or len(labels) != SPLIT_SIZES[split]:
        raise DataError(
            f"{image_path} holds {images.shape} images and {label_path} {labels.shape} labels; expected "
            f"{SPLIT_SIZES[split]} images of 28x28 and as many labels. Replace them with the official files."
        )
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------- Dataset and loaders


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1], then standardised with the training mean and std.

    >>> normalize_images(torch.zeros(1, 28, 28, dtype=torch.uint8)).mean().item() < 0
    True
    """
    return (images.float() / 255.0 - TRAIN_MEAN) / TRAIN_STD


class FashionMNIST(Dataset):
    """Fashion-MNIST as a Dataset of (float32 image [1, 28, 28], int64 label).

        >>> x, y = FashionMNIST("test")[0]; x.shape, y.item()
        (torch.Size([1, 28, 28]), 9)

    Images are scaled to [0, 1] and, with ``normalize=True``, standardised with the training
    mean and std. ``transform`` (optional) is applied to each image tensor.
    """

    def __init__(self, split: str, root=None, transform=None, normalize: bool = True):
        images, self.labels = load_fashion_mnist(split, root)
        self.images = (normalize_images(images) if normalize else images.float() / 255.0).unsqueeze(1)
        self.transform = transform
        self.classes = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[index]

    def __getitems__(self, indices):
        """A whole batch in one indexing step: DataLoader uses this instead of N single lookups."""
        if self.transform is not None:
            return [self[i] for i in indices]
        index = torch.as_tensor(indices)
        return _Batch((self.images.index_select(0, index), self.labels.index_select(0, index)))


class _Batch(tuple):
    """A batch that is already collated (returned by FashionMNIST.__getitems__)."""


def collate(samples):
    """DataLoader collate: a pre-collated batch passes through, a list of samples is stacked.

    >>> collate([(torch.zeros(1), torch.tensor(1))])[1]
    tensor([1])
    """
    if isinstance(samples, _Batch):
        return tuple(samples)
    return torch.utils.data.default_collate(samples)


def split_indices(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible random split of range(n) into (train indices, validation indices).

    >>> [len(part) for part in split_indices(10, 0.2)]
    [8, 2]
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_fraction))
    return order[n_val:].sort().values, order[:n_val].sort().values


def make_loaders(
    batch_size: int,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    normalize: bool = True,
    transform=None,
    root=None,
    num_workers: int = 0,
) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Train / validation / test DataLoaders; the validation split and shuffling follow ``seed``.

    >>> train, val, test = make_loaders(256); len(val.dataset)
    6000
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size}.")
    train_full = FashionMNIST("train", root, transform=transform, normalize=normalize)
    eval_full = train_full if transform is None else FashionMNIST("train", root, normalize=normalize)
    test = FashionMNIST("test", root, normalize=normalize)
    train_idx, val_idx = split_indices(len(train_full), val_fraction, seed)
    shuffle_gen = torch.Generator().manual_seed(seed)
    common = dict(batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    return (
        DataLoader(Subset(train_full, train_idx.tolist()), shuffle=True, generator=shuffle_gen, **common),
        DataLoader(Subset(eval_full, val_idx.tolist()), shuffle=False, **common),
        DataLoader(test, shuffle=False, **common),
    )
