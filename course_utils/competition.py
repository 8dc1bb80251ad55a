"""The apparel case study's competition layout: a folder of CSV files next to one PNG per image.

    >>> folder = export_competition_layout("apparel_data")          # 70,000 PNGs, once  # doctest: +SKIP
    >>> ids, images, labels = read_competition_layout(folder, "train")  # doctest: +SKIP
    >>> write_submission(test_ids, predicted, folder / "submission.csv")  # doctest: +SKIP

``export_competition_layout`` writes Fashion-MNIST the way a practice competition hands it out
(``train/train.csv`` with ``id,label``, ``test/test.csv`` with ``id``, ``*/images/{id}.png`` and a
``sample_submission.csv``); ``read_competition_layout`` reads it back, checking every row;
``write_submission`` validates predictions before writing them and ``score_submission`` plays the
leaderboard against the official test labels.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from course_utils.atomic import replacing, write_atomically
from course_utils.data import FILES, SPLIT_SIZES, DataError, load_fashion_mnist

TEST_ID_OFFSET = 60001  # competition ids: train images are 1..60000, test images 60001..70000


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


def export_competition_layout(directory, n_train: int | None = None, n_test: int | None = None, root=None) -> Path:
    """Write Fashion-MNIST as a competition folder; return the folder.

        >>> export_competition_layout("apparel", n_train=100, n_test=20).name
        'apparel'

    Writes ``train/train.csv`` (id,label), ``train/images/{id}.png``, ``test/test.csv`` (id),
    ``test/images/{id}.png`` and ``sample_submission.csv``. A folder already holding the same
    export (same sizes, complete) is left as it is; two processes exporting to one folder take turns.
    """
    out = Path(directory)
    sizes = {}
    for split, n in (("train", n_train), ("test", n_test)):
        total = SPLIT_SIZES[split]
        n = total if n is None else n
        if not 0 <= n <= total:
            raise ValueError(f"n_{split} must be between 0 and {total}, not {n}.")
        sizes[split] = n
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".export.lock", "w") as lock:  # two notebooks exporting to one folder take turns
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _export_locked(out, sizes, root)


def _export_locked(out: Path, sizes: dict, root) -> Path:
    import pandas as pd

    manifest = out / "layout.json"
    if manifest.is_file() and json.loads(manifest.read_text()) == sizes:
        return out
    manifest.unlink(missing_ok=True)  # an export in progress is never taken for a complete one
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
                out / "sample_submission.csv", index=False
            )
        jobs += _chunks(ids, images[:n].numpy(), image_dir, 4 * _workers())
    with ProcessPoolExecutor(_workers()) as pool:
        list(pool.map(_write_pngs, jobs))
    write_atomically(manifest, json.dumps(sizes))
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
                    return (
                        "error",
                        f"{where} is a {image.size[0]}x{image.size[1]} {image.mode} image; "
                        f"expected 28x28 grayscale (mode L). Re-export it or remove its row.",
                    )
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
    jobs = [(str(image_dir), part_ids, 2 + int(start)) for part_ids, start in _split_with_offsets(ids, 4 * _workers())]
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
        with replacing(cache, suffix=".npz") as tmp:
            np.savez(tmp, images=images, fingerprint=np.array(fingerprint))
    except OSError:
        pass
    return _as_tensors(ids, images, labels)


def _split_with_offsets(ids: np.ndarray, parts: int):
    bounds = np.linspace(0, len(ids), parts + 1).astype(int)
    return [(ids[a:b], a) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _as_tensors(ids, images, labels):
    return (
        torch.from_numpy(ids.copy()),
        torch.from_numpy(images),
        None if labels is None else torch.from_numpy(labels.copy()),
    )


def write_submission(ids, labels, path) -> Path:
    """Validate predictions and write them as a submission CSV (id,label); return the path.

    >>> write_submission([60001, 60002], [9, 2], "submission.csv").name
    'submission.csv'
    """
    import pandas as pd

    ids = torch.as_tensor(ids).reshape(-1) if not isinstance(ids, torch.Tensor) else ids.detach().cpu()
    labels = torch.as_tensor(labels) if not isinstance(labels, torch.Tensor) else labels.detach().cpu()
    if ids.dim() != 1 or labels.dim() != 1:
        raise ValueError(
            f"ids and labels must be 1-D; got shapes {tuple(ids.shape)} and {tuple(labels.shape)}. "
            f"Use predictions.argmax(dim=1) to turn scores into labels."
        )
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
