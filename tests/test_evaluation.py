"""captcha_reader.evaluation through `--evaluate`: scores, misreads, characters outside the charset."""

import json
import shutil

import pytest
from helpers import one_error_line

import ocr_captcha
from captcha_reader.evaluation import CONFIDENCE_BARS, by_confidence


def test_evaluate_reports_misreads_and_foreign_characters(trained_model, tiny_data, tmp_path, capsys):
    folder = tmp_path / "eval"
    shutil.copytree(tiny_data, folder)
    first = sorted(folder.iterdir())[0]
    first.rename(folder / "12x4.png")
    report_path = tmp_path / "r.json"
    status = ocr_captcha.main(["--evaluate", str(folder), "--model", str(trained_model), "--report", str(report_path)])
    assert status == 0
    report = json.loads(report_path.read_text())
    assert set(report) >= {"n", "seq_acc", "cer", "misreads"} and report["n"] == 64
    assert report["chars_outside_charset"] == "x"
    foreign = [m for m in report["misreads"] if m["truth"] == "12x4"]
    assert len(foreign) == 1 and foreign[0]["outside_charset"] == "x"
    assert all(set(m) >= {"path", "truth", "pred", "confidence"} for m in report["misreads"])
    out = capsys.readouterr().out
    assert "12x4" in out and "'x'" in out and f"{len(report['misreads'])} misreads in 64 images" in out


def test_evaluate_default_report_is_named_after_the_model(trained_model, tiny_data, tmp_path):
    for name in ("copy", "other"):
        shutil.copy(trained_model, tmp_path / f"{name}.keras")
        assert ocr_captcha.main(["--evaluate", str(tiny_data), "--model", str(tmp_path / f"{name}.keras")]) == 0
    assert sorted(path.name for path in tmp_path.glob("*.json")) == ["copy.evaluation.json", "other.evaluation.json"]
    assert json.loads((tmp_path / "copy.evaluation.json").read_text())["n"] == 64


def test_evaluate_refuses_a_folder_without_one_readable_image(trained_model, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for label in ("1234", "5678"):
        (folder / f"{label}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report_path = tmp_path / "r.json"
    status = ocr_captcha.main(["--evaluate", str(folder), "--model", str(trained_model), "--report", str(report_path)])
    assert status != 0 and not report_path.exists()
    err = capsys.readouterr().err
    assert "no readable images among 2 files" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("broken, stops", [(1, False), (8, True)])
def test_evaluate_skips_a_few_unreadable_files_and_stops_at_many(broken, stops, trained_model, tiny_data, tmp_path,
                                                                 capsys):
    folder = tmp_path / "test"
    shutil.copytree(tiny_data, folder)
    for i in range(broken):
        (folder / f"{i:04d}_broken.png").write_bytes(b"not a png")
    status = ocr_captcha.main(["--evaluate", str(folder), "--model", str(trained_model), "--report",
                               str(tmp_path / "r.json")])
    if stops:  # 8 of 72 files: over the 10% that training stops at too
        assert status == 1 and "8 of 72 files are unreadable" in one_error_line(capsys)
        assert not (tmp_path / "r.json").exists()
    else:
        assert status == 0 and json.loads((tmp_path / "r.json").read_text())["n"] == 64


def test_evaluate_prints_a_file_name_with_a_newline_on_one_line(trained_model, tiny_data, tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(sorted(tiny_data.iterdir())[0], folder / "12\n34.png")  # a label the model cannot read: a misread
    assert ocr_captcha.main(["--evaluate", str(folder), "--model", str(trained_model),
                             "--report", str(tmp_path / "r.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("odd/12\\n34.png: truth '12\\n34'" in line for line in lines)
    assert not any(line.startswith("34.png") for line in lines)


def test_accuracy_by_confidence_counts_only_readings_at_least_that_sure():
    right = [True, True, False, True]
    bars = {bar["min_confidence"]: bar for bar in by_confidence(right, [0.99, 0.85, 0.95, 0.4])}
    assert set(bars) == set(CONFIDENCE_BARS)
    assert (bars[0.5]["answered"], bars[0.5]["seq_acc"]) == (0.75, 2 / 3)
    assert (bars[0.9]["answered"], bars[0.9]["seq_acc"]) == (0.5, 0.5)
    assert (bars[0.99]["answered"], bars[0.99]["seq_acc"]) == (0.25, 1.0)
    assert by_confidence([False], [0.3])[0] == {"min_confidence": 0.5, "answered": 0.0, "seq_acc": None}


def test_evaluate_prints_and_reports_accuracy_by_confidence(trained_model, tiny_data, tmp_path, capsys):
    assert ocr_captcha.main(["--evaluate", str(tiny_data), "--model", str(trained_model),
                             "--report", str(tmp_path / "r.json")]) == 0
    bars = json.loads((tmp_path / "r.json").read_text())["by_confidence"]
    assert [bar["min_confidence"] for bar in bars] == list(CONFIDENCE_BARS)
    out = capsys.readouterr().out
    assert "readings at least this sure:" in out and f"{bars[0]['answered']:.1%}" in out
