"""Training on your own captchas: any charset and length, evaluation, fine-tuning, augmentation, audit."""

import json
import random
import shutil

import keras
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import ocr_captcha
import ocr_core
import ocr_evaluation


def write_text_images(folder, count, seed, charset="0123", lengths=(2, 5)):
    """Clean rendered text of random length: quick to learn, so a short run can prove decoding."""
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    font = ImageFont.load_default(size=22)
    for i in range(count):
        label = "".join(rng.choice(charset) for _ in range(rng.randint(*lengths)))
        image = Image.new("L", (120, 32), 255)
        ImageDraw.Draw(image).text((4 + rng.randint(0, 20), 3), label, font=font, fill=0)
        image.save(folder / f"{label}_{i}.png")
    return folder


def test_variable_length_labels_train_and_decode(tmp_path):
    train_dir = write_text_images(tmp_path / "train", 240, seed=0)
    test_dir = write_text_images(tmp_path / "test", 40, seed=1)
    model = tmp_path / "m.keras"
    assert ocr_captcha.main(["--data-dir", str(train_dir), "--model", str(model), "--epochs", "12",
                             "--img-height", "32", "--batch-size", "16", "--learning-rate", "3e-3",
                             "--no-augment", "--verbose", "0"]) == 0
    reader = ocr_captcha.load_reader(model)
    assert reader.spec.max_label_length == 5 and reader.spec.charset == "0123"
    report = ocr_evaluation.evaluate_folder(reader, str(test_dir), tmp_path / "report.json")
    assert report["seq_acc"] >= 0.9, report["misreads"]
    texts = [r.text for r in reader.read(sorted(test_dir.iterdir()))]
    assert {len(t) for t in texts} == {2, 3, 4, 5}


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


def test_extend_model_keeps_old_classes_and_adds_new(reader):
    base = reader.model
    spec = ocr_core.ModelSpec(reader.spec.charset + "abc", reader.spec.height, reader.spec.width, 6)
    extended = ocr_captcha.extend_model(base, spec)
    old_kernel, old_bias = base.get_layer("logits").get_weights()
    kernel, bias = extended.get_layer("logits").get_weights()
    assert kernel.shape == (old_kernel.shape[0], 14)
    assert np.array_equal(kernel[:, :11], old_kernel) and np.array_equal(bias[:11], old_bias)
    assert not np.array_equal(kernel[:, 11:], np.zeros_like(kernel[:, 11:]))  # new classes start fresh
    assert np.array_equal(extended.get_layer("bilstm_1").get_weights()[0],
                          base.get_layer("bilstm_1").get_weights()[0])


def test_init_from_a_model_of_another_architecture_fails_clearly(reader, tiny_data, tmp_path, capsys):
    other = tmp_path / "other.keras"
    base = reader.model
    # Another version's network: the same layers but without the dropout on the columns.
    columns = base.get_layer("projection").output
    context = base.get_layer("bilstm_2")(base.get_layer("bilstm_1")(columns))
    logits = base.get_layer("logits")(ocr_captcha.layers.Concatenate(name="context_and_columns")([context, columns]))
    ocr_captcha.keras.Model(base.inputs, base.get_layer("model_info")(logits)).save(other)
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--init-from", str(other), "--model",
                               str(tmp_path / "new.keras")])
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("error: --init-from") and "dropout" in error and "Traceback" not in error


def test_init_from_fine_tunes_with_new_characters(trained_model, reader, tiny_data, tmp_path, capsys):
    data = tmp_path / "new"
    data.mkdir()
    sources = sorted(tiny_data.iterdir())
    for i, label in enumerate(["12ab", "c301", "b222", "0a0a"] * 5):
        shutil.copy(sources[i], data / f"{label}_{i}.png")
    model = tmp_path / "tuned.keras"
    assert ocr_captcha.main(["--data-dir", str(data), "--init-from", str(trained_model), "--model", str(model),
                             "--epochs", "1", "--verbose", "0", "--img-height", "32"]) == 0
    out = capsys.readouterr().out
    assert "3 new characters 'abc'" in out and "augmentation on (18 training images)" in out
    tuned = ocr_captcha.load_reader(model)
    assert tuned.spec.charset == "0123456789abc"
    assert (tuned.spec.height, tuned.spec.width) == (reader.spec.height, reader.spec.width), "the model's geometry wins"


@pytest.mark.parametrize("flag, expected", [([], "augmentation on"), (["--no-augment"], "augmentation off"),
                                            (["--augment"], "augmentation on")])
def test_augmentation_default_and_flags(tiny_data, tmp_path, capsys, flag, expected):
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / "m.keras"), "--epochs", "1",
                             "--verbose", "0", "--img-height", "24", *flag]) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize("n_train, flags, expected", [
    (1999, [], (True, 16, 49, 12)),  # small data: augmented, batches of 16, epochs enough for 96,000 images
    (2000, [], (False, 32, 48, 12)),
    (7200, [], (False, 32, 15, 5)),
    (300, ["--batch-size", "64", "--no-augment", "--epochs", "3", "--patience", "2"], (False, 64, 3, 2)),
])
def test_training_plan_follows_the_data_size_unless_flags_say_otherwise(n_train, flags, expected, capsys):
    plan = ocr_captcha.training_plan(ocr_captcha.parse_args(flags), n_train, replicas=1)
    assert (plan.augment, plan.batch_size, plan.epochs, plan.patience) == expected
    assert f"global batch {expected[1]}" in capsys.readouterr().out


def test_augmentation_keeps_shape_and_range():
    images = np.random.default_rng(0).random((8, 48, 128), dtype=np.float32)
    labels = np.ones((8, 4), np.int32)
    batch, _ = next(iter(ocr_captcha.make_dataset(images, labels, 8, shuffle_seed=1, augment=True)))
    assert batch.shape == (8, 48, 128)
    assert float(batch.numpy().min()) >= 0.0 and float(batch.numpy().max()) <= 1.0
    assert not np.allclose(np.sort(batch.numpy().ravel()), np.sort(images.ravel()))


def test_augmented_epochs_repeat_exactly_under_one_seed():
    images = np.random.default_rng(0).random((64, 48, 128), dtype=np.float32)
    labels = np.ones((64, 4), np.int32)

    def two_epochs() -> np.ndarray:
        keras.utils.set_random_seed(5)
        dataset = ocr_captcha.make_dataset(images, labels, 8, shuffle_seed=5, augment=True)
        return np.concatenate([batch.numpy() for _ in range(2) for batch, _ in dataset])

    first, second = two_epochs(), two_epochs()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[:64], first[64:]), "each epoch draws new distortions"


def test_geometry_flags_and_inference(tiny_data):
    items = ocr_core.list_labelled_images(tiny_data)
    assert ocr_captcha.infer_spec(items, 48, None).width == 128  # 160x60 images: median aspect 2.67
    spec = ocr_captcha.infer_spec(items, 30, 200)
    assert (spec.height, spec.width) == (30, 200)


def test_labels_csv_feeds_training(tiny_data, tmp_path):
    folder = tmp_path / "csv"
    shutil.copytree(tiny_data, folder)
    names = sorted(p.name for p in folder.iterdir())
    (folder / "labels.csv").write_text(f"path,label\n{names[0]},A_b\n{names[1]},x/y\n")
    args = ocr_captcha.parse_args(["--data-dir", str(folder)])
    _, spec, data = ocr_captcha.load_labelled_folder(str(folder), tmp_path / "m.keras", None, args)
    assert "A_b" in data.labels and "x/y" in data.labels
    assert {"A", "_", "b", "x", "/", "y"} <= set(spec.charset)


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


def test_label_probabilities_match_a_confident_path():
    spec = ocr_core.ModelSpec("01", 8, 16, 2)
    model = ocr_captcha.build_model(spec)
    labels = ocr_captcha.encode_labels(["01", "10"], spec)
    probabilities = ocr_evaluation.label_probabilities(model, np.zeros((2, 8, 16), np.float32), labels)
    assert probabilities.shape == (2,) and np.all((probabilities > 0) & (probabilities < 1))
