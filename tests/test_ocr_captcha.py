"""ocr_captcha.py: bad input stops training with one clear error line, before any work is lost."""

import errno
import json
import shutil
import time
from pathlib import Path

import pytest
from helpers import bomb_png, one_error_line, train_one_epoch

import ocr_captcha
import predict_example


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
    listed = (tmp_path / "out" / "m.bad_files.txt").read_text().splitlines()
    assert sorted(Path(line.split(":")[0]).name for line in listed) == ["1111.png", "2222.png", "3333.png"]
    assert len(json.loads((tmp_path / "out" / "m.split.json").read_text())["train"]) + 6 == 64


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
    assert f"{blocker}: is a file, not a folder; cannot write the model in {blocker}" in one_error_line(capsys)


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


@pytest.mark.parametrize("flags, message", [
    (["--seed", "-1"], "--seed: must be at least 0, got -1"),
    (["--img-height", "1"], "--img-height: must be 8 to 256, got 1"),
    (["--img-height", "5000"], "--img-height: must be 8 to 256, got 5000"),
    (["--img-width", "100000"], "--img-width: must be at most 2048, got 100000"),
    (["--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["--val-split", "0.95"], "--val-split: must be between 0 and 0.9, got 0.95"),
    (["--audit", "x", "--folds", "1"], "--folds: must be at least 2, got 1"),
    (["--audit", "x", "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--evaluate", "x", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["--label", "x", "--seed", "-1"], "--seed: must be at least 0, got -1"),
    (["--learning-rate", "nan"], "--learning-rate: must be a number above 0, got nan"),
    (["--evaluate", "x", "--model", "."], "--model: '.' names no file"),
    (["--export-lite", "x.onnx", "--model", ""], "--model: '' names no file"),
])
def test_bad_flag_values_are_refused_by_the_parser(flags, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        ocr_captcha.main(flags)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f": error: {message}" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("script, flags", [(ocr_captcha, ["--int8"]), (ocr_captcha, ["--epochs", "two"]),
                                           (predict_example, ["--length"]), (predict_example, ["--runtime", "tf"])])
def test_a_misused_flag_is_one_line_not_the_usage(script, flags, capsys):
    with pytest.raises(SystemExit) as stopped:
        script.main(flags)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.splitlines()) == 1 and ": error: " in err, err


def test_images_far_wider_than_tall_are_refused_before_loading(tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "strips"
    folder.mkdir()
    for label in ("1234", "5678"):
        Image.new("L", (3000, 20), 255).save(folder / f"{label}.png")
    assert train_one_epoch(tmp_path, folder) == 1
    assert "150 times as wide as tall" in one_error_line(capsys)


def test_tf_config_that_is_not_json_is_one_line(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{cluster: nope")
    assert train_one_epoch(tmp_path, tiny_data, "--strategy", "multiworker") == 1
    assert "TF_CONFIG is not valid JSON" in one_error_line(capsys)


@pytest.mark.parametrize("model", ["folder", "folder.keras", "m.h5"])
def test_an_audit_refuses_a_model_path_it_cannot_name_its_report_after(model, tiny_data, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.keras").mkdir()
    assert ocr_captcha.main(["--audit", str(tiny_data), "--model", str(tmp_path / model)]) == 1
    assert "the audit names its report after a model file" in one_error_line(capsys)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder", "folder.keras"], "nothing written"


@pytest.mark.parametrize("name, message", [("m.h5", "must end in .keras"), ("folder.keras", "is a folder")])
def test_model_path_that_cannot_be_saved_fails_before_training(name, message, tiny_data, tmp_path, capsys):
    (tmp_path / "folder.keras").mkdir()
    started = time.monotonic()
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / name), "--epochs", "1"]) == 1
    assert message in one_error_line(capsys)
    assert time.monotonic() - started < 5, "the check must come before loading and training"


@pytest.mark.parametrize("flags", [
    ["--evaluate", "{data}", "--report", "{model}"],
    ["--audit", "{data}", "--report", "{model}"],
    ["--export-lite", "{model}"],
    ["--export-savedmodel", "{model}"],
    ["--init-from", "{model}", "--data-dir", "{data}"],
    ["--test-dir", "{data}", "--data-dir", "{data}", "--model", "{data}/m.keras"],
    ["--data-dir", "{data}", "--model", "{data}/m.keras"],
    ["--unlabelled", "{data}", "--model", "{data}/m.keras"],
    ["--unlabelled", "{data}", "--test-dir", "{data}", "--data-dir", "{data}/..", "--model", "{data}/../m.keras"],
    ["--evaluate", "{data}", "--report", "{data}"],
])
def test_no_output_overwrites_the_model_or_lands_among_the_inputs(flags, trained_model, tiny_data, tmp_path, capsys):
    model = tmp_path / "m.keras"
    shutil.copy(trained_model, model)
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = sorted(p.name for p in data.iterdir())
    args = [flag.format(model=model, data=data) for flag in flags]
    args = args if "--model" in args else [*args, "--model", str(model)]
    started = time.monotonic()
    assert ocr_captcha.main([*args, "--epochs", "1", "--verbose", "0"]) == 1
    assert "would" in one_error_line(capsys)
    assert model.read_bytes() == trained_model.read_bytes()
    assert sorted(p.name for p in data.iterdir()) == before
    assert time.monotonic() - started < 5, "the check must come before any work"


def test_report_into_a_missing_folder_is_created(trained_model, tiny_data, tmp_path):
    report = tmp_path / "reports" / "today" / "evaluation.json"
    assert ocr_captcha.main(["--evaluate", str(tiny_data), "--model", str(trained_model),
                             "--report", str(report)]) == 0
    assert json.loads(report.read_text())["n"] == 64


def test_export_savedmodel_onto_a_file_is_one_line(trained_model, tmp_path, capsys):
    target = tmp_path / "serving"
    target.write_text("a file")
    assert ocr_captcha.main(["--export-savedmodel", str(target), "--model", str(trained_model)]) == 1
    assert "not a folder" in one_error_line(capsys)
    assert target.read_text() == "a file"


def test_failed_run_leaves_no_scratch_folder(tiny_data, tmp_path, capsys):
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / "m.keras"),
                             "--img-width", "12"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("backup_left", [False, True])
def test_interrupted_run_says_resume_only_when_it_can(backup_left, tiny_data, tmp_path, capsys, monkeypatch):
    from captcha_reader import training

    def interrupted(settings, strategy, chief, **data):
        if backup_left:
            (training.scratch_dir(Path(settings.model)) / "run-0123456789abcdef" / "backup").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "train_and_save", interrupted)
    assert train_one_epoch(tmp_path, tiny_data) == 130
    err = capsys.readouterr().err
    assert ("run the same command again to resume" in err) == backup_left, err
    assert (tmp_path / "out" / "m.training").exists() == backup_left


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


@pytest.mark.parametrize("port", ["0", "70000"])
def test_label_port_must_be_a_port(port):
    with pytest.raises(SystemExit):
        ocr_captcha.parse_args(["--label", "folder", "--port", port])


def test_ctrl_c_on_the_label_page_just_stops(monkeypatch, tmp_path, capsys):
    from captcha_reader import labelling

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(labelling, "serve", interrupted)
    assert ocr_captcha.main(["--label", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("flag", ["--init-from", "--unlabelled"])
def test_training_flags_are_refused_with_another_mode(flag, tiny_data, capsys):
    with pytest.raises(SystemExit) as stopped:
        ocr_captcha.main([flag, str(tiny_data), "--evaluate", str(tiny_data)])
    assert stopped.value.code == 2
    assert f"{flag} is for training only" in capsys.readouterr().err
