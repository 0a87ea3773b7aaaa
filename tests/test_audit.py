"""captcha_reader.audit: out-of-fold label probabilities rank mislabelled files first."""

import json

import numpy as np
from helpers import write_text_images

import ocr_captcha
from captcha_reader.audit import label_probabilities
from captcha_reader.base import ModelSpec
from captcha_reader.data import encode_labels
from captcha_reader.model import build_model


def test_audit_ranks_every_file_lowest_probability_first(tiny_data, tmp_path, capsys):
    report = tmp_path / "audit.json"
    assert ocr_captcha.main(["--audit", str(tiny_data), "--folds", "2", "--epochs", "1", "--img-height", "24",
                             "--model", str(tmp_path / "m.keras"), "--report", str(report), "--verbose", "0"]) == 0
    ranking = json.loads(report.read_text())
    assert len(ranking) == 64 and {r["path"] for r in ranking} == {str(p) for p in tiny_data.iterdir()}
    assert all(set(r) == {"path", "label", "pred", "p_label"} for r in ranking)
    probabilities = [r["p_label"] for r in ranking]
    assert probabilities == sorted(probabilities) and all(0.0 <= p <= 1.0 for p in probabilities)
    assert (tmp_path / "audit.png").stat().st_size > 0
    assert not (tmp_path / "m.keras").exists(), "the audit never writes a model"
    assert "fold 2/2" in capsys.readouterr().out


def test_the_audit_of_letters_starts_each_fold_from_the_base_model(tmp_path, capsys):
    folder = write_text_images(tmp_path / "letters", 16, seed=3, charset="ABCD", lengths=(3, 4))
    report = tmp_path / "audit.json"
    assert ocr_captcha.main(["--audit", str(folder), "--folds", "2", "--epochs", "1", "--model",
                             str(tmp_path / "m.keras"), "--report", str(report), "--verbose", "0"]) == 0
    assert "starting from the base model" in capsys.readouterr().out, "where a training run on the folder starts"
    assert len(json.loads(report.read_text())) == 16


def test_label_probabilities_match_a_confident_path():
    spec = ModelSpec("01", 8, 16, 2)
    model = build_model(spec)
    labels = encode_labels(["01", "10"], spec)
    probabilities = label_probabilities(model, np.zeros((2, 8, 16), np.float32), labels)
    assert probabilities.shape == (2,) and np.all((probabilities > 0) & (probabilities < 1))


def test_an_audit_whose_training_is_not_finite_stops_in_one_line(tiny_data, tmp_path, capsys):
    report = tmp_path / "audit.json"
    assert ocr_captcha.main(["--audit", str(tiny_data), "--folds", "2", "--epochs", "1", "--img-height", "16",
                             "--learning-rate", "1e30", "--model", str(tmp_path / "m.keras"), "--report", str(report),
                             "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert "fold 1: training became NaN or infinite" in err and len(err.strip().splitlines()) == 1
    assert not report.exists()
