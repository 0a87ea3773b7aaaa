"""Shared fixtures: a small generated dataset and one tiny model trained once per session."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import make_captchas  # noqa: E402

import ocr_captcha  # noqa: E402
from captcha_reader.readers import open_reader  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """64 generated 4-digit captchas."""
    folder = tmp_path_factory.mktemp("tiny_data")
    make_captchas.main(["--out", str(folder), "--count", "64", "--seed", "7"])
    return folder


@pytest.fixture(scope="session")
def trained_model(tiny_data, tmp_path_factory) -> Path:
    """A model trained for two epochs on tiny_data: enough to test the plumbing, not accuracy."""
    model_path = tmp_path_factory.mktemp("model") / "ocr_captcha.keras"
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(model_path),
                               "--epochs", "2", "--batch-size", "16", "--verbose", "0"])
    assert status == 0
    return model_path


@pytest.fixture(scope="session")
def lite_model(trained_model, tmp_path_factory) -> Path:
    """The tiny model exported with --export-lite, alone in its folder."""
    path = tmp_path_factory.mktemp("lite") / "tiny.onnx"
    assert ocr_captcha.main(["--export-lite", str(path), "--model", str(trained_model)]) == 0
    return path


@pytest.fixture(scope="session")
def reader(trained_model):
    """The tiny model loaded back as a Reader."""
    return open_reader(trained_model)
