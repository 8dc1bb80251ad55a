"""course_utils.competition: the case study's folder of CSVs and PNGs, submissions and their score."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from course_utils import competition, data


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty user cache and no COURSE_DATA_DIR from the environment."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    folder = tmp_path_factory.mktemp("apparel")
    return competition.export_competition_layout(folder, n_train=60, n_test=25)


def test_export_writes_the_case_study_layout(layout):
    train = pd.read_csv(layout / "train" / "train.csv")
    test = pd.read_csv(layout / "test" / "test.csv")
    assert list(train.columns) == ["id", "label"] and list(test.columns) == ["id"]
    assert train["id"].tolist() == list(range(1, 61)) and test["id"].iloc[0] == competition.TEST_ID_OFFSET
    assert len(list((layout / "train" / "images").glob("*.png"))) == 60
    with Image.open(layout / "test" / "images" / "60001.png") as image:
        assert image.mode == "L" and image.size == (28, 28)
    sample = pd.read_csv(layout / "sample_submission.csv")
    assert list(sample.columns) == ["id", "label"] and len(sample) == 25


def test_layout_reads_back_the_same_pixels_and_labels(layout):
    ids, images, labels = competition.read_competition_layout(layout, "train")
    official_images, official_labels = data.load_fashion_mnist("train")
    assert ids.tolist() == list(range(1, 61))
    assert torch.equal(images, official_images[:60]) and torch.equal(labels, official_labels[:60])
    test_ids, test_images, test_labels = competition.read_competition_layout(layout, "test")
    assert test_labels is None and torch.equal(test_images, data.load_fashion_mnist("test")[0][:25])


def test_second_read_uses_the_decoded_cache(layout, monkeypatch):
    first = competition.read_competition_layout(layout, "train")[1]
    monkeypatch.setattr(competition, "_read_pngs", lambda job: pytest.fail("decoded the PNGs again"))
    assert torch.equal(competition.read_competition_layout(layout, "train")[1], first)


def test_exporting_the_same_layout_again_is_a_no_op(layout, monkeypatch):
    monkeypatch.setattr(competition, "_write_pngs", lambda job: pytest.fail("wrote the PNGs again"))
    assert competition.export_competition_layout(layout, n_train=60, n_test=25) == layout


def test_export_sizes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="n_train must be between 0 and 60000"):
        competition.export_competition_layout(tmp_path, n_train=60001)


@pytest.fixture
def small_layout(tmp_path):
    return competition.export_competition_layout(tmp_path / "small", n_train=12, n_test=4)


def test_a_changed_image_invalidates_the_cache(small_layout):
    competition.read_competition_layout(small_layout, "train")
    Image.fromarray(np.full((28, 28), 7, np.uint8), mode="L").save(small_layout / "train" / "images" / "3.png")
    assert (competition.read_competition_layout(small_layout, "train")[1][2] == 7).all()


def _rewrite_csv(layout, frame):
    frame.to_csv(layout / "train" / "train.csv", index=False)
    return layout / "train" / "train.csv"


def test_missing_csv_says_how_to_make_it(tmp_path):
    with pytest.raises(data.DataError, match="train.csv is missing.*export_competition_layout"):
        competition.read_competition_layout(tmp_path, "train")


def test_missing_image_names_the_file_and_the_row(small_layout):
    (small_layout / "train" / "images" / "5.png").unlink()
    with pytest.raises(data.DataError, match=r"5\.png \(CSV row 6, id 5\) is missing"):
        competition.read_competition_layout(small_layout, "train")


def test_wrong_columns_are_named(small_layout):
    frame = pd.read_csv(small_layout / "train" / "train.csv").rename(columns={"label": "class"})
    _rewrite_csv(small_layout, frame)
    with pytest.raises(data.DataError, match=r"columns \['id', 'class'\]; expected exactly \['id', 'label'\]"):
        competition.read_competition_layout(small_layout, "train")


def test_duplicate_ids_name_the_row(small_layout):
    frame = pd.read_csv(small_layout / "train" / "train.csv")
    frame.loc[4, "id"] = 2
    _rewrite_csv(small_layout, frame)
    with pytest.raises(data.DataError, match="row 6: id 2 appears more than once"):
        competition.read_competition_layout(small_layout, "train")


@pytest.mark.parametrize(
    "bad, message",
    [(10, "label 10 is outside 0-9"), (-1, "label -1 is outside 0-9"), ("shoe", "label 'shoe' is not a whole number")],
)
def test_bad_labels_name_the_row(small_layout, bad, message):
    frame = pd.read_csv(small_layout / "train" / "train.csv").astype(object)
    frame.loc[7, "label"] = bad
    _rewrite_csv(small_layout, frame)
    with pytest.raises(data.DataError, match=f"train.csv row 9: {message}"):
        competition.read_competition_layout(small_layout, "train")


@pytest.mark.parametrize("size, mode", [((30, 28), "L"), ((28, 28), "RGB")])
def test_an_image_that_is_not_28x28_grayscale_is_named(small_layout, size, mode):
    Image.new(mode, size).save(small_layout / "train" / "images" / "4.png")
    with pytest.raises(data.DataError, match=rf"4\.png \(CSV row 5, id 4\) is a {size[0]}x{size[1]} {mode} image"):
        competition.read_competition_layout(small_layout, "train")


def test_a_file_that_is_not_a_png_is_named(small_layout):
    (small_layout / "train" / "images" / "2.png").write_text("not an image")
    with pytest.raises(data.DataError, match=r"2\.png \(CSV row 3, id 2\) cannot be read as a PNG"):
        competition.read_competition_layout(small_layout, "train")


# ---------------------------------------------------------------- submissions


def test_write_submission_round_trips_and_scores(tmp_path):
    _, truth = data.load_fashion_mnist("test")
    ids = torch.arange(competition.TEST_ID_OFFSET, competition.TEST_ID_OFFSET + 10000)
    predicted = truth.clone()
    predicted[:2500] = (predicted[:2500] + 1) % 10
    path = competition.write_submission(ids, predicted, tmp_path / "out" / "submission.csv")
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", "label"] and frame["label"].tolist() == predicted.tolist()
    assert competition.score_submission(path) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "ids, labels, message",
    [
        ([1, 2], [0], "2 ids but 1 labels"),
        ([1, 2], [0, 10], "row 1: label 10 for id 2 is outside 0-9"),
        ([1, 1], [0, 1], "id 1 appears 2 times"),
        ([1, 2], [0.5, 1.0], "labels must be whole numbers"),
        ([1, 2], [[0.1, 0.9], [0.8, 0.2]], "must be 1-D.*argmax"),
    ],
)
def test_write_submission_validates_before_writing(tmp_path, ids, labels, message):
    target = tmp_path / "submission.csv"
    with pytest.raises(ValueError, match=message):
        competition.write_submission(ids, labels, target)
    assert not target.exists()


def test_score_submission_requires_every_test_id(tmp_path):
    path = competition.write_submission([60001, 60002], [9, 2], tmp_path / "s.csv")
    with pytest.raises(data.DataError, match="needs one per test image"):
        competition.score_submission(path)


def test_two_processes_exporting_one_folder_take_turns(tmp_path):
    from concurrent.futures import ProcessPoolExecutor

    folder = tmp_path / "shared"
    with ProcessPoolExecutor(2) as pool:
        done = list(pool.map(competition.export_competition_layout, [folder, folder], [40, 40], [10, 10]))
    assert done == [folder, folder]
    ids, images, labels = competition.read_competition_layout(folder, "train")
    assert len(ids) == 40 and torch.equal(images, data.load_fashion_mnist("train")[0][:40])
