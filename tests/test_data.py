"""captcha_reader.data: a labelled folder as arrays, its geometry and its seeded split."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from captcha_reader.base import DatasetError, ModelSpec
from captcha_reader.data import (
    infer_spec,
    labelled_items,
    load_images,
    spec_for_data,
    split_indices,
)
from captcha_reader.labels import list_labelled_images
from captcha_reader.settings import DEFAULT_CAPACITY


def test_split_is_seeded_and_disjoint():
    train, val = split_indices(100, 0.1, seed=5)
    again = split_indices(100, 0.1, seed=5)
    other = split_indices(100, 0.1, seed=6)
    assert len(val) == 10 and len(train) == 90
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(100))
    assert np.array_equal(val, again[1]) and not np.array_equal(val, other[1])


def test_labels_csv_feeds_training(tiny_data, tmp_path):
    folder = tmp_path / "csv"
    shutil.copytree(tiny_data, folder)
    names = sorted(p.name for p in folder.iterdir())
    (folder / "labels.csv").write_text(f"path,label\n{names[0]},A_b\n{names[1]},x/y\n")
    items = labelled_items(folder)
    spec = infer_spec(items, 48, None)
    data = load_images(items, spec)
    assert "A_b" in data.labels and "x/y" in data.labels
    assert {"A", "_", "b", "x", "/", "y"} <= set(spec.charset)
    assert (spec.min_label_length, spec.max_label_length) == (3, 4)


def test_a_file_name_with_an_empty_label_is_refused_before_training(tiny_data, tmp_path):
    folder = tmp_path / "unnamed"
    shutil.copytree(tiny_data, folder)
    shutil.copy(sorted(folder.iterdir())[0], folder / "_x.png")
    with pytest.raises(DatasetError, match=r"_x\.png: the file name gives an empty label"):
        labelled_items(folder)
    (folder / "labels.csv").write_text("path,label\n_x.png,1234\n")  # labels.csv may name it instead
    assert ("1234" in {label for _, label in labelled_items(folder)})


@pytest.mark.parametrize("name", ["0427 (1).png", "0427(2).png", "0427 copy.png", "download (3).png"])
def test_a_copys_file_name_is_refused_unless_labels_csv_labels_it(name, tiny_data, tmp_path):
    folder = tmp_path / "copies"
    shutil.copytree(tiny_data, folder)
    shutil.copy(sorted(folder.iterdir())[0], folder / name)
    message = f"{name}: the file name gives the label '{Path(name).stem}', a copy's name"
    with pytest.raises(DatasetError, match=re.escape(message)):
        labelled_items(folder)
    (folder / "labels.csv").write_text("path,label\n1234.png,1234\n")  # labels.csv names other files only
    with pytest.raises(DatasetError, match=re.escape(message)):
        labelled_items(folder)
    (folder / "labels.csv").write_text(f"path,label\n{name},ab cd\n")  # labels.csv may give it any label
    assert (folder / name, "ab cd") in labelled_items(folder)


def numbered_copies(tiny_data, folder, count):
    """`count` of tiny_data's images saved as img_0000.png and on: names a browser gives, not labels."""
    folder.mkdir()
    for number, path in enumerate(sorted(tiny_data.glob("*.png"))[:count]):
        shutil.copy(path, folder / f"img_{number:04d}.png")


def test_names_that_are_not_labels_are_refused(tiny_data, tmp_path):
    folder = tmp_path / "downloads"
    numbered_copies(tiny_data, folder, 40)
    with pytest.raises(DatasetError, match=r"40 of 40 images have the label 'img' \(such as img_0000\.png\).*--label"):
        labelled_items(folder)
    # labels.csv rows for a few of them leave the rest named `img`: still refused
    (folder / "labels.csv").write_text("path,label\n" + "".join(f"img_{n:04d}.png,{n:04d}\n" for n in range(15)))
    with pytest.raises(DatasetError, match="25 of 40 images have the label 'img'"):
        labelled_items(folder)
    # labelled, every one: accepted, though one label may repeat on a few images
    (folder / "labels.csv").write_text("path,label\n" + "".join(f"img_{n:04d}.png,{min(n, 30):04d}\n" for n in range(40)))
    assert len(labelled_items(folder)) == 40
    # one-character captchas over a small charset: each label on a third of the images, none far ahead
    (folder / "labels.csv").write_text("path,label\n" + "".join(f"img_{n:04d}.png,{'abc'[n % 3]}\n" for n in range(40)))
    assert len(labelled_items(folder)) == 40


def test_a_label_for_a_file_the_folder_lacks_is_reported(tiny_data, tmp_path, capsys):
    folder = tmp_path / "typo"
    shutil.copytree(tiny_data, folder)
    name = sorted(folder.iterdir())[0].name
    (folder / "labels.csv").write_text(f"path,label\n{name},1234\nmg_0001.png,5678\n")
    assert len(labelled_items(folder)) == 64
    assert "labels 1 file that the folder does not hold (such as mg_0001.png)" in capsys.readouterr().err
    (folder / "labels.csv").write_text(f"path,label\n{name},1234\n")
    labelled_items(folder)
    assert capsys.readouterr().err == ""


def test_fine_tuned_spec_takes_charset_lengths_and_aspect_of_its_new_data():
    base = ModelSpec("0123456789", 48, 128, 4, 4)
    found = ModelSpec("ab", 30, 90, 7, 5)
    spec = spec_for_data(found, base)
    assert spec == ModelSpec("ab", 48, 144, 7, 5)  # the base's height, the data's aspect ratio of 3


def test_capacity_is_a_setting_from_scratch_and_the_base_models_when_fine_tuning():
    found = ModelSpec("ab", 30, 90, 7, 5)
    assert spec_for_data(found, None).capacity == DEFAULT_CAPACITY
    assert spec_for_data(found, None, 3).capacity == 3
    base = ModelSpec("0123456789", 48, 128, 4, 4, capacity=2)
    assert spec_for_data(found, base).capacity == 2
    with pytest.raises(DatasetError, match="capacity 2, which its weights fix"):
        spec_for_data(found, base, 3)


def test_geometry_flags_and_inference(tiny_data):
    items = list_labelled_images(tiny_data)
    assert infer_spec(items, 48, None).width == 128  # 160x60 images: median aspect 2.67
    spec = infer_spec(items, 30, 200)
    assert (spec.height, spec.width) == (30, 200)
