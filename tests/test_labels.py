"""captcha_reader.labels: labels from file names and labels.csv, the charset, CTC time steps."""

import os

import pytest

from captcha_reader.base import BLANK_INDEX, DatasetError, ModelSpec
from captcha_reader.data import labelled_items
from captcha_reader.labels import (
    LabelRow,
    charset_from_labels,
    check_time_steps,
    decode_indices,
    encode_label,
    label_from_filename,
    list_images,
    list_labelled_images,
    min_time_steps,
    read_label_rows,
    read_labels_csv,
)


@pytest.mark.parametrize("name, label", [
    ("0427.png", "0427"), ("0427_13.png", "0427"), ("dir/ab_c_d.JPG", "ab"), ("x.y.png", "x.y"),
])
def test_label_from_filename(name, label):
    assert label_from_filename(name) == label


def test_list_images_filters_and_sorts(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.webp", "notes.txt", "d.Jpeg", "e.gif", "f.bmp"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp", "d.Jpeg", "e.gif", "f.bmp"]


def test_labels_csv_overrides_file_names(tmp_path):
    for name in ["1.png", "2.png", "0000_3.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text("path,label\n1.png,a_b\n2.png,A/B:\n")
    assert [(p.name, label) for p, label in list_labelled_images(tmp_path)] == [
        ("0000_3.png", "0000"), ("1.png", "a_b"), ("2.png", "A/B:")]


def test_charset_round_trip():
    labels = ["0427", "9x1", "zz"]
    charset = charset_from_labels(labels)
    assert charset == "012479xz"
    for label in labels:
        indices = encode_label(label, charset)
        assert BLANK_INDEX not in indices
        assert decode_indices(indices, charset) == label


@pytest.mark.parametrize("label, steps", [("0427", 4), ("1111", 7), ("1122", 6), ("", 0)])
def test_min_time_steps_counts_repeats(label, steps):
    assert min_time_steps(label) == steps


def test_check_time_steps_names_the_label():
    spec = ModelSpec("01", 32, 16, 4)
    with pytest.raises(DatasetError, match="'0011'"):
        check_time_steps(["01", "0011"], spec)


def test_labels_csv_with_a_byte_order_mark_keeps_the_first_label(tmp_path):
    for name in ["1.png", "2.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_bytes("1.png,ab\n2.png,cd\n".encode("utf-8-sig"))
    assert [label for _, label in list_labelled_images(tmp_path)] == ["ab", "cd"]


@pytest.mark.parametrize("content, problem", [
    (b"1.png,\xe9t\xe9\n", "not UTF-8"),
    (b"1.png," + b"a" * 200_000 + b"\n", "line 1"),
])
def test_unusable_labels_csv_is_a_dataset_error(tmp_path, content, problem):
    (tmp_path / "1.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_bytes(content)
    with pytest.raises(DatasetError, match=problem):
        list_labelled_images(tmp_path)


def test_file_name_that_is_not_utf8_is_a_dataset_error(tmp_path):
    (tmp_path / os.fsdecode(b"12\xff4.png")).write_bytes(b"")
    with pytest.raises(DatasetError, match=r"12\\xff4.png: the file name is not valid UTF-8"):
        list_labelled_images(tmp_path)


def test_labels_csv_last_row_wins_and_empty_label_leaves_out(tmp_path):
    for name in ["a.png", "b.png", "c.png", "d.png", "7777.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text(
        "path,label,note\na.png,\nb.png,\nc.png,\nd.png,\n"
        "a.png,x1\nb.png,,unreadable\nc.png,c3\nc.png,\nd.png,4,\nd.png,\"4,2\"\n")
    assert [(p.name, label) for p, label in list_labelled_images(tmp_path)] == [
        ("7777.png", "7777"), ("a.png", "x1"), ("d.png", "4,2")]
    rows = read_label_rows(tmp_path / "labels.csv")
    assert rows["b.png"] == LabelRow("", "unreadable")
    assert rows["c.png"] == LabelRow("", "")
    assert read_labels_csv(tmp_path / "labels.csv")["a.png"] == "x1"


@pytest.mark.parametrize("row", ["a.png", "a.png,1,2,3", ",1"])
def test_labels_csv_bad_row_names_its_line(tmp_path, row):
    (tmp_path / "labels.csv").write_text(f"path,label\nb.png,1\n{row}\n")
    with pytest.raises(DatasetError, match=r"labels.csv: line 3:"):
        read_label_rows(tmp_path / "labels.csv")


@pytest.mark.parametrize("text, message", [
    ('path,label\na.png,"12\nb.png,34\nc.png,56\n', r"line 2: a label or note runs over several lines \(a quote"),
    ("path,lable\na.png,12\n", "line 1: the header must be `path,label` or `path,label,note`, got 'path,lable'"),
])
def test_labels_csv_typos_are_named_not_trained(tmp_path, text, message):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_label_rows(tmp_path / "labels.csv")


def test_labels_csv_labels_lose_surrounding_spaces(tmp_path):
    (tmp_path / "labels.csv").write_text("a.png, Q0W4 \nb.png,ab cd\n")
    assert read_labels_csv(tmp_path / "labels.csv") == {"a.png": "Q0W4", "b.png": "ab cd"}


def test_folder_with_every_image_left_out_says_so(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("a.png,\n")
    with pytest.raises(DatasetError, match=r"no labelled images .*--label .*, or, if the file names are the labels,"
                                           r" delete labels.csv"):
        labelled_items(tmp_path)
