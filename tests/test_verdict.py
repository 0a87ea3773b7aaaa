"""captcha_reader.verdict: the confidence interval, confused characters, and runs that learned nothing."""

import math

import numpy as np
import pytest

import ocr_captcha
from captcha_reader.base import ModelSpec
from captcha_reader.model import load_keras_reader, model_info
from captcha_reader.training import reads_better
from captcha_reader.verdict import (
    confusions,
    ink_width,
    judge_validation,
    likely_causes,
    wilson_interval,
)

SPEC = ModelSpec("0123456789", 48, 128, 4)


def test_wilson_interval_is_wide_for_few_images_and_narrow_for_many():
    low, high = wilson_interval(99, 100)
    assert low < 0.97 < 0.99 < high  # 100 images cannot tell 97% from 99%
    low, high = wilson_interval(9900, 10000)
    assert 0.987 < low < 0.99 < high < 0.993
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_confusions_count_character_swaps_and_wrong_lengths():
    pairs = confusions(["B8S5", "1234", "7885", "0000"], ["88S5", "1234", "78885", "0000"])
    assert pairs[("B", "8")] == 1 and pairs[("length 4", "5")] == 1 and sum(pairs.values()) == 2


def test_small_validation_sets_get_a_warning_and_the_confusions():
    verdict = judge_validation(["1234"] * 50, ["1234"] * 49 + ["1284"], np.ones((50, 48, 128)), SPEC)
    text = "\n".join(verdict.lines)
    assert not verdict.learned_nothing
    assert "cannot tell" in text and "3->8 x1" in text


def test_one_reading_for_every_image_is_a_run_that_learned_nothing():
    truths = [f"{i:04d}" for i in range(40)]
    verdict = judge_validation(truths, ["8364"] * 40, np.ones((40, 48, 128)), SPEC)
    assert verdict.learned_nothing
    assert any(line.startswith("likely cause") for line in verdict.lines)


def test_noise_spelled_at_the_right_length_is_a_run_that_learned_nothing():
    truths = [f"{i:04d}" for i in range(40)]
    noise = [f"{(7 * i) % 10}{(3 * i) % 10}77" for i in range(40)]  # format-aware decoding of an untrained model
    assert judge_validation(truths, noise, np.ones((40, 48, 128)), SPEC).learned_nothing
    nearly = [t[:3] + "9" for t in truths]  # three characters in four right: learned a lot, not yet enough
    assert not judge_validation(truths, nearly, np.ones((40, 48, 128)), SPEC).learned_nothing


def test_likely_causes_name_what_they_can_check():
    images = np.ones((4, 48, 128), np.float32)
    images[:, 20:28, 0:20] = 0.0  # text in a sixth of the width
    assert ink_width(images) == pytest.approx(20 / 128)
    causes = " ".join(likely_causes(["same"] * 4, images, ModelSpec("aems", 16, 16, 4)))
    assert "same label" in causes and "crop" in causes and "--img-width" in causes and "--img-height" in causes


@pytest.mark.parametrize("model_score, previous_score", [(0.0, 0.9)])
def test_a_run_that_learned_nothing_displaces_no_better_model(trained_model, tiny_data, tmp_path, capsys,
                                                             model_score, previous_score):
    """Neither the model it replaces nor the .prev.keras that saving overwrites is lost when one reads better."""
    model_path, previous = tmp_path / "m.keras", tmp_path / "m.prev.keras"
    existing = load_keras_reader(trained_model).model
    for path, recorded in ((model_path, model_score), (previous, previous_score)):
        if recorded is not None:
            model_info(existing).validation = {"seq_acc": recorded, "cer": 0.5, "n": 100}
            existing.save(path)
    before = {path: path.read_bytes() for path in (model_path, previous) if path.exists()}
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(model_path), "--epochs", "1",
                               "--verbose", "0"])
    captured = capsys.readouterr()
    assert status == 1 and "learned nothing" in captured.out and "likely cause" in captured.out
    assert captured.err.startswith("error: ") and "were left as they were" in captured.err
    assert "\n" not in captured.err.strip() and "Traceback" not in captured.err
    assert {path: path.read_bytes() for path in (model_path, previous) if path.exists()} == before
    assert not (tmp_path / "m.training").exists()


@pytest.mark.parametrize("recorded, kept", [(0.9, True), (0.1, False), (None, True), (math.nan, True), ("x", True),
                                            ("missing", False), ("not a model", False)])
def test_which_models_a_run_that_learned_nothing_keeps(trained_model, tmp_path, recorded, kept):
    """Better or unscored models are kept; a worse one, a missing file or one nothing can load are not."""
    path = tmp_path / "m.keras"
    if recorded == "not a model":
        path.write_bytes(b"PK not a model")
    elif recorded != "missing":
        existing = load_keras_reader(trained_model).model
        model_info(existing).validation = {"seq_acc": recorded, "cer": 0.5, "n": 100}
        existing.save(path)
    assert reads_better(path, 0.2) is kept
