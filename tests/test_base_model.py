"""The shipped base model (captcha_reader/base_model/): small, safe to load, reads zero-shot, fine-tunes by name."""

import json
from pathlib import Path

import pytest
from helpers import fonts_missing, one_error_line, write_text_images

import ocr_captcha
import predict_example
from captcha_reader import reading, training
from captcha_reader.base import ModelLoadError, ModelSpec
from captcha_reader.decoding import TextFormat
from captcha_reader.labels import label_from_filename, list_images
from captcha_reader.readers import open_reader
from captcha_reader.reading import BASE_CHARSET, BASE_HEIGHT, BASE_MODEL, named_model
from captcha_reader.settings import SCRATCH, TrainingSettings
from captcha_reader.training import starting_model

MAX_BYTES = 5 * 2**20
TEST_PNG = str(Path(__file__).resolve().parent.parent / "test.png")


@pytest.fixture(scope="module")
def base_reader():
    """The shipped base model, opened by its name."""
    return open_reader(named_model("base"))


def test_base_model_is_small_and_records_its_recipe(base_reader):
    assert BASE_MODEL.stat().st_size <= MAX_BYTES
    recipe = json.loads(BASE_MODEL.with_suffix(".json").read_text())
    assert recipe["validation"] == base_reader.validation and recipe["mixture"]["seed"] is not None
    assert base_reader.spec.charset == BASE_CHARSET and base_reader.spec.height == BASE_HEIGHT
    assert (base_reader.spec.min_label_length,
                                                    base_reader.spec.max_label_length) == (3, 8)


def test_base_model_reads_the_shipped_family_zero_shot(base_reader, tiny_data):
    files = list_images(tiny_data)
    texts = [r.text for r in base_reader.read(files, text_format=TextFormat.parse("0123456789", "4"))]
    right = sum(text == label_from_filename(path) for text, path in zip(texts, files))
    assert right >= 0.8 * len(files), f"{right} of {len(files)} read right without training"


def test_predict_example_reads_with_the_base_model_by_name(capsys):
    assert predict_example.main([TEST_PNG, "--model", "base", "--charset", "0123456789", "--length", "4"]) == 0
    assert len(capsys.readouterr().out.strip()) == 4


def test_init_from_base_keeps_only_the_data_characters(tiny_data, tmp_path, capsys):
    model = tmp_path / "tuned.keras"
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--init-from", "base", "--model", str(model),
                             "--epochs", "1", "--verbose", "0"]) == 0
    assert "52 the data never uses are dropped" in capsys.readouterr().out
    assert open_reader(model).spec.charset == "0123456789"


START_CASES = [
    ({}, "aB3x", str(BASE_MODEL)),  # letters the base model knows: start from it
    ({}, "0123456789", None),  # digits alone read as well from scratch
    ({}, "ab-c", None),  # a character the base model does not know
    ({"init_from": SCRATCH}, "aB3x", None),
    ({"init_from": "mine.keras"}, "0123", "mine.keras"),
    ({"capacity": 2}, "aB3x", None),  # a network of its own
    ({"capacity": 1}, "aB3x", str(BASE_MODEL)),  # the base model's own capacity
    ({"img_height": 32}, "aB3x", None),
    ({"img_width": 200}, "aB3x", None),
]


@pytest.mark.parametrize("asked, charset, start", START_CASES)
def test_a_run_starts_from_the_base_model_only_for_letters_it_knows(asked, charset, start):
    assert starting_model(TrainingSettings(**asked), ModelSpec(charset, 48, 128, 4)) == start


@pytest.fixture(scope="module")
def letter_data(tmp_path_factory):
    """A small folder whose labels use letters and digits."""
    return write_text_images(tmp_path_factory.mktemp("letters") / "data", 40, seed=3, charset="abcd12")


@pytest.mark.parametrize("asked, start", [([], str(BASE_MODEL)), (["--init-from", "scratch"], None)])
def test_training_on_letters_starts_from_the_base_model_unless_told(letter_data, tmp_path, capsys, asked, start):
    model = tmp_path / "model.keras"
    assert ocr_captcha.main(["--data-dir", str(letter_data), "--model", str(model), "--epochs", "1",
                             "--verbose", "0", *asked]) == 0
    assert ("starting from the base model" in capsys.readouterr().out) == (start is not None)
    assert json.loads(model.with_name("model.split.json").read_text())["init_from"] == start
    assert open_reader(model).spec.charset == "12abcd"


def test_without_the_base_model_letters_start_a_new_network(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(training, "BASE_MODEL", tmp_path / "base.keras")
    assert starting_model(TrainingSettings(), ModelSpec("aB3x", 48, 128, 4)) is None
    assert "starting a new network, not the base model: it is not installed" in capsys.readouterr().out


def test_a_run_never_writes_over_the_base_model(letter_data, capsys):
    installed = BASE_MODEL.read_bytes()
    assert ocr_captcha.main(["--data-dir", str(letter_data), "--model", str(BASE_MODEL), "--epochs", "1"]) == 1
    assert "would overwrite the base model" in one_error_line(capsys)
    assert BASE_MODEL.read_bytes() == installed


def test_a_missing_base_model_is_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(reading, "BASE_MODEL", tmp_path / "base.keras")
    with pytest.raises(ModelLoadError, match="train_base_model.py"):
        named_model("base")
    assert predict_example.main([TEST_PNG, "--model", "base"]) == 1
    assert "the base model is not installed" in one_error_line(capsys)
    with pytest.raises(SystemExit) as stopped:
        ocr_captcha.main(["--init-from", "base", "--model", str(tmp_path / "m.keras")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "error: the base model is not installed" in err and "Traceback" not in err


def test_train_base_model_tool_draws_trains_and_records(tmp_path):
    import train_base_model

    if fonts_missing():
        pytest.skip(f"{fonts_missing()} (bash tools/system_packages.sh)")

    installed = BASE_MODEL.read_bytes()
    out = tmp_path / "base.keras"
    assert train_base_model.main(["--count", "30", "--epochs", "1", "--work", str(tmp_path / "run"), "--out", str(out)]) == 0
    recipe = json.loads(out.with_suffix(".json").read_text())
    assert recipe["mixture"]["diverse (make_diverse_captchas base style)"] == 20 and recipe["validation"]["n"] == 1
    assert open_reader(out).spec.height == 48 and BASE_MODEL.read_bytes() == installed
