"""ocr_captcha.py: bad input stops training with one clear error line, before any work is lost."""

import errno
import json
import shutil
import time
from pathlib import Path

import pytest
from helpers import bomb_png, one_error_line, train_one_epoch

import ocr_captcha


@pytest.mark.parametrize("case", ["missing", "file", "empty", "unreadable"])
def test_bad_data_dir_names_the_folder(case, tmp_path, capsys):
    folder = tmp_path / "data"
    if case == "file":
        folder.write_text("not a folder")
    elif case == "empty":
        folder.mkdir()
    elif case == "unreadable":
        folder.mkdir()
        for i in range(3):
            (folder / f"{i}.png").write_bytes(b"junk")
    assert train_one_epoch(tmp_path, folder) == 1
    assert str(folder) in one_error_line(capsys)


def test_a_few_bad_files_are_skipped_and_listed(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "1111.png").write_bytes(b"")
    good = (tiny_data / sorted(p.name for p in tiny_data.iterdir())[0]).read_bytes()
    (data / "2222.png").write_bytes(good[: len(good) // 3])
    (data / "3333.png").write_bytes(bomb_png())
    assert train_one_epoch(tmp_path, data) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 3 unreadable files" in warnings[0]
    listed = (tmp_path / "out" / "bad_files.txt").read_text().splitlines()
    assert sorted(Path(line.split(":")[0]).name for line in listed) == ["1111.png", "2222.png", "3333.png"]
    assert len(json.loads((tmp_path / "out" / "split.json").read_text())["train"]) + 6 == 64


def test_too_many_bad_files_stop_training(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for i in range(8):
        (data / f"99{i:02d}.png").write_bytes(b"oops")
    assert train_one_epoch(tmp_path, data) == 1
    assert "8 of 72 files are unreadable" in one_error_line(capsys)
    assert not (tmp_path / "out" / "m.keras").exists()


def test_unwritable_output_folder_fails_before_training(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(blocker / "m.keras")])
    assert status == 1
    assert "cannot write the model there" in one_error_line(capsys)


def test_full_disk_fails_before_training(tiny_data, tmp_path, capsys, monkeypatch):
    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", no_space)
    started = time.monotonic()
    assert train_one_epoch(tmp_path, tiny_data) == 1
    assert "No space left on device" in one_error_line(capsys)
    assert time.monotonic() - started < 5, "the check must come before loading and training"


def test_label_too_long_for_geometry_fails_before_training(tiny_data, tmp_path, capsys):
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / "m.keras"),
                               "--img-width", "12"])
    assert status == 1
    message = capsys.readouterr().err
    assert "CTC time steps" in message and "--img-width" in message
    assert not (tmp_path / "m.keras").exists()


def test_missing_data_dir_is_one_clear_line(tmp_path, capsys):
    assert ocr_captcha.main(["--data-dir", str(tmp_path / "nothing"), "--model", str(tmp_path / "m.keras")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nothing'}: no such folder"


@pytest.mark.parametrize("argv, message", [
    (["--label", "nowhere"], "nowhere: no such folder"),
    (["--label", "{tmp}", "--model", "missing.keras"], "missing.keras: no such model"),
])
def test_label_mode_bad_input_is_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    assert ocr_captcha.main([arg.format(tmp=tmp_path) for arg in argv]) == 1
    assert message in one_error_line(capsys)
    assert not (tmp_path / "labels.csv").exists()  # nothing written before the error


def test_review_goes_with_label():
    with pytest.raises(SystemExit):
        ocr_captcha.parse_args(["--review", "audit.json"])
