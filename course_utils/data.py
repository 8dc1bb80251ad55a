"""Fashion-MNIST for the course: the real data set, offline, checksummed.

    >>> images, labels = load_fashion_mnist("train")   # uint8 [60000, 28, 28], int64 [60000]

The four official files ship in the repo under ``data/fashion-mnist/``. Each is checked against
its SHA-256 the first time it is used (the result is cached per file version), so a truncated,
altered or swapped file is never used silently. Where the files are missing they are fetched
from the official mirror into a user cache with pooch, checksums included.

The second half of this module writes and reads the *competition layout* of the apparel case
study: CSV files of ids and labels next to one PNG per image.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
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
TEST_ID_OFFSET = 60001  # competition ids: train images are 1..60000, test images 60001..70000


class DataError(Exception):
    """A data file or folder is missing or wrong; the message says which and how to fix it."""


# ---------------------------------------------------------------- locations and caches


def cache_dir() -> Path:
    """The user cache for downloads and verified checksums (``COURSE_CACHE_DIR`` overrides).

        >>> cache_dir().name
        'pytorch-foundations'
    """
    override = os.environ.get("COURSE_CACHE_DIR")
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
    env = os.environ.get("COURSE_DATA_DIR")
    return Path(env) if env else REPO_DATA_DIR


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
    target = _verified_cache_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        os.replace(tmp, target)
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
    return Path(pooch.retrieve(MIRROR_URL + name, known_hash=f"sha256:{SHA256[name]}",
                               fname=name, path=target, progressbar=False))


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
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
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
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, cached)
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


def make_loaders(batch_size: int, val_fraction: float = 0.1, seed: int = 0, *, normalize: bool = True,
                 transform=None, root=None, num_workers: int = 0) -> tuple[DataLoader, DataLoader, DataLoader]:
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


# ---------------------------------------------------------------- competition layout


def competition_ids(split: str, n: int) -> np.ndarray:
    """The ids of the first ``n`` images of a split in the competition layout (train 1.., test 60001..).

        >>> competition_ids("test", 2).tolist()
        [60001, 60002]
    """
    start = 1 if split == "train" else TEST_ID_OFFSET
    return np.arange(start, start + n, dtype=np.int64)


def _write_pngs(job):
    folder, ids, images = job
    from PIL import Image

    for image_id, image in zip(ids, images):
        Image.fromarray(image, mode="L").save(os.path.join(folder, f"{image_id}.png"), compress_level=1)
    return len(ids)


def _chunks(ids, images, folder, parts):
    bounds = np.linspace(0, len(ids), parts + 1).astype(int)
    return [(str(folder), ids[a:b], images[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def export_competition_layout(directory, n_train: int | None = None, n_test: int | None = None,
                              root=None) -> Path:
    """Write Fashion-MNIST as a competition folder; return the folder.

        >>> export_competition_layout("apparel", n_train=100, n_test=20).name
        'apparel'

    Writes ``train/train.csv`` (id,label), ``train/images/{id}.png``, ``test/test.csv`` (id),
    ``test/images/{id}.png`` and ``sample_submission.csv``. A folder already holding the same
    export (same sizes, complete) is left as it is.
    """
    import pandas as pd

    out = Path(directory)
    sizes = {}
    for split, n in (("train", n_train), ("test", n_test)):
        total = SPLIT_SIZES[split]
        n = total if n is None else n
        if not 0 <= n <= total:
            raise ValueError(f"n_{split} must be between 0 and {total}, not {n}.")
        sizes[split] = n
    manifest = out / "layout.json"
    if manifest.is_file() and json.loads(manifest.read_text()) == sizes:
        return out
    jobs = []
    for split, n in sizes.items():
        images, labels = load_fashion_mnist(split, root)
        ids = competition_ids(split, n)
        image_dir = out / split / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame({"id": ids, "label": labels[:n].numpy()})
        frame[["id", "label"] if split == "train" else ["id"]].to_csv(out / split / f"{split}.csv", index=False)
        if split == "test":
            pd.DataFrame({"id": ids, "label": np.zeros(n, dtype=np.int64)}).to_csv(
                out / "sample_submission.csv", index=False)
        jobs += _chunks(ids, images[:n].numpy(), image_dir, 4 * _workers())
    with ProcessPoolExecutor(_workers()) as pool:
        list(pool.map(_write_pngs, jobs))
    manifest.write_text(json.dumps(sizes))
    return out


def _read_pngs(job):
    folder, ids, first_row = job
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(ids), 28, 28), dtype=np.uint8)
    for i, image_id in enumerate(ids):
        path = os.path.join(folder, f"{image_id}.png")
        where = f"{path} (CSV row {first_row + i}, id {image_id})"
        try:
            with Image.open(path) as image:
                if image.mode != "L" or image.size != (28, 28):
                    return ("error", f"{where} is a {image.size[0]}x{image.size[1]} {image.mode} image; "
                                     f"expected 28x28 grayscale (mode L). Re-export it or remove its row.")
                out[i] = np.asarray(image)
        except FileNotFoundError:
            return ("error", f"{where} is missing. Put the image back or remove its row from the CSV.")
        except (UnidentifiedImageError, OSError) as exc:
            return ("error", f"{where} cannot be read as a PNG ({exc}). Replace the file.")
    return ("ok", out)


def _csv_fingerprint(csv_path: Path, image_dir: Path) -> str:
    digest = hashlib.sha256(csv_path.read_bytes())
    entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(image_dir) if e.is_file())
    digest.update(repr(entries).encode())
    return digest.hexdigest()


def _validate_frame(frame, csv_path: Path, split: str):
    expected = ["id", "label"] if split == "train" else ["id"]
    columns = [str(c).strip() for c in frame.columns]
    if columns != expected and not (split == "test" and columns == ["id", "label"]):
        raise DataError(f"{csv_path} has columns {columns}; expected exactly {expected}.")
    for column in expected:
        values = frame[column]
        bad = values.isna() | ~values.astype(str).str.strip().str.fullmatch(r"-?\d+")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{csv_path} row {row + 2}: {column} {values.iloc[row]!r} is not a whole number.")
    ids = frame["id"].astype(np.int64).to_numpy()
    duplicated = frame["id"].astype(np.int64).duplicated().to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataError(f"{csv_path} row {row + 2}: id {ids[row]} appears more than once. Ids must be unique.")
    labels = None
    if split == "train":
        labels = frame["label"].astype(np.int64).to_numpy()
        outside = (labels < 0) | (labels > 9)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise DataError(f"{csv_path} row {row + 2}: label {labels[row]} is outside 0-9.")
    return ids, labels


def read_competition_layout(directory, split: str):
    """Read one split of a competition folder: (ids int64 [N], images uint8 [N, 28, 28], labels or None).

        >>> ids, images, labels = read_competition_layout("apparel", "train")

    PNGs are decoded in parallel; the decoded arrays are cached next to the CSV, keyed by the
    CSV and the images' names, sizes and times, so a second read of an unchanged folder is fast.
    """
    import pandas as pd

    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}.")
    folder = Path(directory) / split
    csv_path, image_dir = folder / f"{split}.csv", folder / "images"
    if not csv_path.is_file():
        raise DataError(f"{csv_path} is missing. Export the layout with export_competition_layout({str(directory)!r}).")
    if not image_dir.is_dir():
        raise DataError(f"{image_dir} is missing: the folder of {split} PNG images must sit next to {csv_path.name}.")
    try:
        frame = pd.read_csv(csv_path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path} is not a readable CSV file ({exc}).") from None
    ids, labels = _validate_frame(frame, csv_path, split)
    fingerprint = _csv_fingerprint(csv_path, image_dir)
    cache = folder / ".decoded-cache.npz"
    if cache.is_file():
        try:
            with np.load(cache) as stored:
                if str(stored["fingerprint"]) == fingerprint:
                    return _as_tensors(ids, stored["images"], labels)
        except (OSError, ValueError, KeyError):
            pass
    jobs = [(str(image_dir), part_ids, 2 + int(start))
            for part_ids, start in _split_with_offsets(ids, 4 * _workers())]
    if len(ids) <= 2000:
        results = [_read_pngs(job) for job in jobs]
    else:
        with ProcessPoolExecutor(_workers()) as pool:
            results = list(pool.map(_read_pngs, jobs))
    for status, payload in results:
        if status == "error":
            raise DataError(payload)
    images = np.concatenate([payload for _, payload in results]) if results else np.empty((0, 28, 28), np.uint8)
    try:
        tmp = folder / f".decoded-cache.{os.getpid()}.tmp.npz"
        np.savez(tmp, images=images, fingerprint=np.array(fingerprint))
        os.replace(tmp, cache)
    except OSError:
        pass
    return _as_tensors(ids, images, labels)


def _split_with_offsets(ids: np.ndarray, parts: int):
    bounds = np.linspace(0, len(ids), parts + 1).astype(int)
    return [(ids[a:b], a) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _as_tensors(ids, images, labels):
    return (torch.from_numpy(ids.copy()), torch.from_numpy(images),
            None if labels is None else torch.from_numpy(labels.copy()))


def write_submission(ids, labels, path) -> Path:
    """Validate predictions and write them as a submission CSV (id,label); return the path.

        >>> write_submission([60001, 60002], [9, 2], "submission.csv").name
        'submission.csv'
    """
    import pandas as pd

    ids = torch.as_tensor(ids).reshape(-1) if not isinstance(ids, torch.Tensor) else ids.detach().cpu()
    labels = torch.as_tensor(labels) if not isinstance(labels, torch.Tensor) else labels.detach().cpu()
    if ids.dim() != 1 or labels.dim() != 1:
        raise ValueError(f"ids and labels must be 1-D; got shapes {tuple(ids.shape)} and {tuple(labels.shape)}. "
                         f"Use predictions.argmax(dim=1) to turn scores into labels.")
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels: give one label per id.")
    for name, values in (("ids", ids), ("labels", labels)):
        if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise ValueError(f"{name} must be whole numbers, not {values.dtype}. Use .long() on class indices.")
    outside = ((labels < 0) | (labels > 9)).nonzero()
    if len(outside):
        row = int(outside[0])
        raise ValueError(f"row {row}: label {int(labels[row])} for id {int(ids[row])} is outside 0-9.")
    unique, counts = ids.unique(return_counts=True)
    if (counts > 1).any():
        dup = int(unique[counts > 1][0])
        raise ValueError(f"id {dup} appears {int(counts[counts > 1][0])} times; each id must appear once.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids.numpy(), "label": labels.numpy()}).to_csv(path, index=False)
    return path


def score_submission(path, root=None) -> float:
    """Accuracy of a submission CSV against the official test labels (ids 60001..70000).

        >>> score_submission("submission.csv")  # doctest: +SKIP
        0.8812
    """
    import pandas as pd

    path = Path(path)
    frame = pd.read_csv(path, dtype=str)
    ids, predicted = _validate_frame(frame, path, "train")
    _, truth = load_fashion_mnist("test", root)
    index = ids - TEST_ID_OFFSET
    if ((index < 0) | (index >= len(truth))).any():
        row = int(np.flatnonzero((index < 0) | (index >= len(truth)))[0])
        raise DataError(f"{path} row {row + 2}: id {ids[row]} is not a test id (60001-70000).")
    if len(ids) != len(truth):
        raise DataError(f"{path} has {len(ids)} rows; a submission needs one per test image ({len(truth)}).")
    return float((truth.numpy()[index] == predicted).mean())
