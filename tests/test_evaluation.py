"""captcha_reader.evaluation through `--evaluate`: scores, misreads, characters outside the charset."""

import json
import shutil

import ocr_captcha


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


def test_evaluate_default_report_beside_model(trained_model, tiny_data, tmp_path):
    model = tmp_path / "copy.keras"
    shutil.copy(trained_model, model)
    assert ocr_captcha.main(["--evaluate", str(tiny_data), "--model", str(model)]) == 0
    assert json.loads((tmp_path / "evaluation.json").read_text())["n"] == 64
