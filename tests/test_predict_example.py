"""predict_example.py: output formats, errors, and train-then-read as a new user."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import bomb_png, one_error_line

import ocr_captcha
import predict_example


def run_script(*args, cwd=ROOT):
    """Run a project script in a fresh Python process."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_single_image_prints_only_the_text(trained_model, tiny_data, reader):
    image = sorted(tiny_data.iterdir())[0]
    result = run_script(str(ROOT / "predict_example.py"), str(image), "--model", str(trained_model))
    assert result.returncode == 0, result.stderr
    assert result.stdout == reader.read([image])[0].text + "\n"
    assert "oneDNN" not in result.stderr and "absl" not in result.stderr


def test_cli_folder_json_with_a_bad_file(trained_model, tiny_data, tmp_path, reader):
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_data, folder)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "zz_bomb.png").write_bytes(bomb_png())
    result = run_script(str(ROOT / "predict_example.py"), str(folder), "--model", str(trained_model), "--json")
    assert result.returncode == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 66
    assert rows[-2]["path"] == str(folder / "zz_bomb.png") and "too large" in rows[-2]["error"]
    assert rows[-1]["path"] == str(folder / "zz_broken.png") and "zz_broken.png" in rows[-1]["error"]
    good = rows[:-2]
    expected = reader.read([row["path"] for row in good])
    assert [(r["text"], r["confidence"]) for r in good] == [(e.text, round(e.confidence, 6)) for e in expected]
    assert all(0.0 <= r["confidence"] <= 1.0 for r in good)
    assert all(len(r["char_confidences"]) == len(r["text"]) == 4 for r in good)
    assert all(0.0 <= c <= 1.0 for r in good for c in r["char_confidences"])
    assert result.stderr.count("error:") == 2


def test_several_images_print_path_tab_text(trained_model, tiny_data, capsys, reader):
    images = [str(p) for p in sorted(tiny_data.iterdir())[:3]]
    assert predict_example.main([*images, "--model", str(trained_model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{p}\t{r.text}" for p, r in zip(images, reader.read(images))]


def test_every_path_given_prints_a_line_in_order(trained_model, tiny_data, capsys, reader):
    first, second = (str(p) for p in sorted(tiny_data.iterdir())[:2])
    assert predict_example.main([first, second, first, "--model", str(trained_model)]) == 0
    texts = [r.text for r in reader.read([first, second])]
    assert capsys.readouterr().out.splitlines() == [f"{first}\t{texts[0]}", f"{second}\t{texts[1]}", f"{first}\t{texts[0]}"]


def test_info_reports_the_model(trained_model, capsys):
    assert predict_example.main(["--info", "--json", "--model", str(trained_model)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["charset"] == "0123456789" and info["height"] == 48 and info["width"] == 128
    assert info["min_label_length"] == info["max_label_length"] == 4 and info["format_version"] == 3
    assert info["capacity"] == 1
    assert set(info["validation"]) == {"seq_acc", "cer", "n"}


def test_a_model_without_validation_images_has_null_scores_not_nan(tiny_data, tmp_path, capsys):
    model = tmp_path / "m.keras"
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(model), "--epochs", "1",
                             "--val-split", "0", "--verbose", "0"]) == 0
    capsys.readouterr()
    assert predict_example.main(["--info", "--json", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    info = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert info["validation"] == {"seq_acc": None, "cer": None, "n": 0}


def test_length_charset_and_greedy_flags(trained_model, tiny_data, capsys, reader):
    images = [str(p) for p in sorted(tiny_data.iterdir())[:6]]
    assert predict_example.main([*images, "--model", str(trained_model), "--length", "2-3", "--charset", "019"]) == 0
    texts = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    assert len(texts) == 6 and all(2 <= len(t) <= 3 and set(t) <= set("019") for t in texts)
    assert predict_example.main([*images, "--model", str(trained_model), "--greedy"]) == 0
    texts = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    assert texts == [r.text for r in reader.read(images, greedy=True)]


@pytest.mark.parametrize("flags, message", [
    (["--length", "4-x"], "length must look like"),
    (["--charset", "01z"], "not 'z'"),
    (["--length", "99"], "time steps"),
    (["--greedy", "--length", "4"], "greedy reads any length and character: it cannot be combined"),
])
def test_bad_format_flags_are_one_line_errors(trained_model, tiny_data, capsys, flags, message):
    image = str(sorted(tiny_data.iterdir())[0])
    assert predict_example.main([image, "--model", str(trained_model), *flags]) == 1
    assert message in one_error_line(capsys)


def test_missing_model_says_what_to_run(tmp_path, tiny_data, capsys):
    image = str(sorted(tiny_data.iterdir())[0])
    assert predict_example.main([image, "--model", str(tmp_path / "none.keras")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "python ocr_captcha.py" in err and "\n" not in err


@pytest.mark.parametrize("kind", ["empty folder", "folder of text", "empty path"])
def test_inputs_that_hold_no_image_are_one_line_errors(trained_model, tmp_path, capsys, kind):
    folder = tmp_path / "inputs"
    folder.mkdir()
    if kind == "folder of text":
        (folder / "notes.txt").write_text("no captcha here")
    given = "" if kind == "empty path" else str(folder)
    assert predict_example.main([given, "--model", str(trained_model)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1
    assert ("empty path" if kind == "empty path" else f"{folder}: no images") in captured.err


def test_not_a_model_file_is_a_clear_error(tmp_path, tiny_data, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"PK\x03\x04 this is not a zip")
    assert predict_example.main([str(sorted(tiny_data.iterdir())[0]), "--model", str(fake)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {fake}: not a usable ocr_captcha model") and "\n" not in err


@pytest.mark.parametrize("model", [".", "", "/"])
def test_a_model_path_that_names_no_file_is_one_line(model, tiny_data, capsys):
    assert predict_example.main([str(sorted(tiny_data.iterdir())[0]), "--model", model]) == 1
    assert one_error_line(capsys).startswith(f"error: {str(Path(model))!r}: not a model file")


def test_train_then_predict_as_a_new_user(tiny_data, tmp_path):
    """`python ocr_captcha.py` then `python predict_example.py` in a fresh folder, defaults only."""
    shutil.copytree(tiny_data, tmp_path / "captcha_images")
    shutil.copy(sorted(tiny_data.iterdir())[0], tmp_path / "test.png")
    trained = run_script(str(ROOT / "ocr_captcha.py"), "--epochs", "1", "--verbose", "0", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "validation: sequence accuracy" in trained.stdout
    assert (tmp_path / "model" / "ocr_captcha.keras").is_file()
    predicted = run_script(str(ROOT / "predict_example.py"), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 1


def test_missing_test_png_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "predict_example.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().startswith("error: test.png: no such file")


def test_file_names_with_newlines_or_bad_bytes_stay_on_their_line(trained_model, tiny_data, tmp_path, capsys,
                                                                   monkeypatch):
    folder = tmp_path / "odd"
    folder.mkdir()
    image = sorted(tiny_data.iterdir())[0]
    names = ["a\nb\tc.png", os.fsdecode(b"d\xffe.png"), "plain.png", "x\\ny.png"]
    for name in names:
        shutil.copy(image, folder / name)
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a strict UTF-8 pipe
    monkeypatch.setattr(sys, "stdout", stdout)
    assert predict_example.main([str(folder), "--model", str(trained_model)]) == 0
    stdout.seek(0)
    lines = stdout.read().splitlines()
    assert [line.rsplit("\t", 1)[0] for line in lines] == [
        f"{folder}/a\\nb\\tc.png", f"{folder}/d\\xffe.png", f"{folder}/plain.png", f"{folder}/x\\\\ny.png"]


@pytest.mark.parametrize("script, flags", [
    ("predict_example.py", ["{data}", "--model", "{model}"]),
    ("ocr_captcha.py", ["--evaluate", "{data}", "--model", "{model}", "--report", "{tmp}/report.json"]),
    ("ocr_captcha.py", ["--help"]),
])
def test_output_piped_into_a_reader_that_quits_is_no_traceback(script, flags, lite_model, tiny_data, tmp_path):
    """`... | head -1`: the reader closes the pipe before the output comes; the rest goes nowhere, quietly."""
    command = [sys.executable, str(ROOT / script),
               *(flag.format(data=tiny_data, model=lite_model, tmp=tmp_path) for flag in flags)]
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # as users run it
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
