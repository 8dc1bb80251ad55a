"""course_utils.data: the real Fashion-MNIST, offline and checksummed."""

import shutil

import pytest
import torch

from course_utils import data


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty user cache and no COURSE_DATA_DIR from the environment."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)


@pytest.fixture
def test_split_copy(tmp_path):
    """A writable data folder holding copies of the two test-split files."""
    for name in data.FILES["test"]:
        shutil.copy(data.REPO_DATA_DIR / name, tmp_path / name)
    return tmp_path


# ---------------------------------------------------------------- loading


def test_train_split_is_the_official_one():
    images, labels = data.load_fashion_mnist("train")
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60000,) and labels.dtype == torch.int64
    assert labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(labels).tolist() == [6000] * 10
    assert round(images.float().div(255).mean().item(), 4) == data.TRAIN_MEAN
    assert round(images.float().div(255).std().item(), 4) == data.TRAIN_STD


def test_test_split_is_the_official_one():
    images, labels = data.load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_fashion_mnist("validation")


def test_root_argument_and_env_var_choose_the_folder(test_split_copy, monkeypatch):
    assert data.load_fashion_mnist("test", root=test_split_copy)[1].shape == (10000,)
    monkeypatch.setenv("COURSE_DATA_DIR", str(test_split_copy))
    assert data.data_dir() == test_split_copy


def test_checksum_is_paid_once_per_file_version(test_split_copy, monkeypatch):
    calls = []
    real = data.sha256_of
    monkeypatch.setattr(data, "sha256_of", lambda p: calls.append(p) or real(p))
    data.load_fashion_mnist("test", root=test_split_copy)
    assert len(calls) == 2
    data.load_fashion_mnist("test", root=test_split_copy)
    assert len(calls) == 2, "an unchanged file must not be hashed again"
    (test_split_copy / "t10k-labels-idx1-ubyte.gz").touch()  # a new file version
    data.load_fashion_mnist("test", root=test_split_copy)
    assert len(calls) == 3


def test_an_altered_file_is_refused_with_its_name_and_a_fix(test_split_copy):
    path = test_split_copy / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DataError) as err:
        data.load_fashion_mnist("test", root=test_split_copy)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value) and "SHA-256" in str(err.value)
    assert "Fix:" in str(err.value)


def test_a_truncated_file_is_refused(test_split_copy):
    path = test_split_copy / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz.*truncated"):
        data.load_fashion_mnist("test", root=test_split_copy)


def test_swapped_files_are_refused(test_split_copy):
    shutil.copy(data.REPO_DATA_DIR / "train-labels-idx1-ubyte.gz", test_split_copy / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataError, match="not the official t10k-labels-idx1-ubyte.gz"):
        data.load_fashion_mnist("test", root=test_split_copy)


def test_a_cached_verification_does_not_hide_a_later_change(test_split_copy):
    data.load_fashion_mnist("test", root=test_split_copy)
    path = test_split_copy / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(data.DataError):
        data.load_fashion_mnist("test", root=test_split_copy)


def test_missing_files_are_downloaded_with_pooch_into_the_user_cache(tmp_path, monkeypatch):
    import pooch

    fetched = []

    def fake_retrieve(url, known_hash, fname, path, progressbar):
        assert url == data.MIRROR_URL + fname and known_hash == f"sha256:{data.SHA256[fname]}"
        fetched.append(fname)
        path.mkdir(parents=True, exist_ok=True)
        shutil.copy(data.REPO_DATA_DIR / fname, path / fname)
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    images, labels = data.load_fashion_mnist("test", root=tmp_path / "empty")
    assert sorted(fetched) == sorted(data.FILES["test"]) and labels.shape == (10000,)
    fetched.clear()
    data.load_fashion_mnist("test", root=tmp_path / "empty")
    assert fetched == [], "files already in the user cache are not fetched again"


def test_without_network_the_error_names_the_missing_file_and_where_to_put_it(tmp_path, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: Network is unreachable")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(data.DataError) as err:
        data.load_fashion_mnist("test", root=tmp_path)
    message = str(err.value)
    assert "t10k-images-idx3-ubyte.gz is missing from" in message and str(tmp_path) in message
    assert "COURSE_DATA_DIR" in message and "Network is unreachable" in message


def test_a_damaged_idx_header_is_reported():
    with pytest.raises(data.DataError, match="magic number"):
        data._parse_idx(b"\x00\x00\x08\x01" + b"\x00" * 12, data.REPO_DATA_DIR / "x", 2051, 3)
    with pytest.raises(data.DataError, match="declares shape"):
        data._parse_idx(
            (2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x02", data.REPO_DATA_DIR / "x", 2049, 1
        )


# ---------------------------------------------------------------- Dataset and loaders


def test_dataset_items_are_normalised_float_images_with_labels():
    ds = data.FashionMNIST("test")
    x, y = ds[0]
    assert len(ds) == 10000 and x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.item() == 9
    raw, _ = data.load_fashion_mnist("test")
    torch.testing.assert_close(x[0], (raw[0].float() / 255 - data.TRAIN_MEAN) / data.TRAIN_STD)
    assert ds.classes[9] == "Ankle boot"


def test_dataset_without_normalisation_scales_to_unit_range_and_applies_the_transform():
    ds = data.FashionMNIST("test", normalize=False, transform=lambda img: img * 2)
    x, _ = ds[3]
    assert 0.0 <= x.min() and x.max() <= 2.0 and x.max() > 1.0


def test_class_names_are_the_ten_official_ones():
    assert data.CLASS_NAMES == (
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


def test_loaders_split_train_into_train_and_validation_reproducibly():
    train, val, test = data.make_loaders(batch_size=512, val_fraction=0.1, seed=0)
    assert (len(train.dataset), len(val.dataset), len(test.dataset)) == (54000, 6000, 10000)
    assert set(train.dataset.indices).isdisjoint(val.dataset.indices)
    again = data.make_loaders(batch_size=512, seed=0)[1]
    other = data.make_loaders(batch_size=512, seed=1)[1]
    assert again.dataset.indices == val.dataset.indices != other.dataset.indices
    x, y = next(iter(train))
    assert x.shape == (512, 1, 28, 28) and y.shape == (512,) and y.dtype == torch.int64


def test_training_order_is_the_same_for_the_same_seed():
    first = next(iter(data.make_loaders(64, seed=3)[0]))[1]
    second = next(iter(data.make_loaders(64, seed=3)[0]))[1]
    assert torch.equal(first, second)


def test_batched_fetch_equals_item_by_item_fetch():
    ds = data.FashionMNIST("test")
    fast = data.collate(ds.__getitems__([5, 1, 7]))
    slow = torch.utils.data.default_collate([ds[5], ds[1], ds[7]])
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])


def test_loader_arguments_are_checked():
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loaders(0)
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_indices(10, 1.0)
