"""captcha_reader.files: durable appends from several processes."""

import multiprocessing

import pytest

from captcha_reader.base import DatasetError
from captcha_reader.files import append_durably


def append_rows(path, tag):
    """Append 200 rows tagged by the writer."""
    for i in range(200):
        append_durably(path, f"{tag},{i}\n")


def test_appends_from_two_processes_never_interleave(tmp_path):
    path = tmp_path / "log.csv"
    writers = [multiprocessing.get_context("spawn").Process(target=append_rows, args=(path, tag)) for tag in "ab"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(f"{tag},{i}" for tag in "ab" for i in range(200))


def test_a_cut_last_line_gets_its_newline_first(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("a,1\nb,")
    append_durably(path, "c,3\n")
    assert path.read_text() == "a,1\nb,\nc,3\n"


def test_an_unwritable_log_is_a_one_line_error(tmp_path):
    (tmp_path / "labels.csv").mkdir()
    with pytest.raises(DatasetError, match="cannot write .*labels.csv"):
        append_durably(tmp_path / "labels.csv", "a,1\n")
