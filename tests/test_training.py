"""captcha_reader.training: outputs of a run, fine-tuning, augmentation, the plan, resuming and locking."""

import dataclasses
import errno
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT
from helpers import one_error_line, train_one_epoch, write_text_images

import ocr_captcha
from captcha_reader.base import ModelSpec
from captcha_reader.data import encode_labels
from captcha_reader.evaluation import evaluate_folder
from captcha_reader.files import beside_model, exclusive_lock
from captcha_reader import training
from captcha_reader.model import (
    build_model,
)
from captcha_reader.readers import open_reader
from captcha_reader.settings import TrainingSettings, plan_training
from captcha_reader.training import (
    ResumableBackup,
    compile_model,
    fit,
    make_dataset,
    run_key,
    save_model,
    scratch_dir,
)


def test_training_writes_model_split_log_and_plots(trained_model, tiny_data):
    folder = trained_model.parent
    for name in ["split.json", "training_log.csv", "learning_curve.png", "model_structure.png",
                 "sample_predictions.png"]:
        assert beside_model(trained_model, name).stat().st_size > 0, name
    split = json.loads(beside_model(trained_model, "split.json").read_text())
    assert split["seed"] == 1337 and len(split["validation"]) == 6 and len(split["train"]) == 58
    assert set(split["train"]).isdisjoint(split["validation"])
    header = beside_model(trained_model, "training_log.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "loss", "val_loss", "val_seq_acc", "val_cer"} <= set(header)
    assert not list(folder.glob(".*tmp*")), "no temporary files left behind"


def test_retraining_replaces_model_and_keeps_previous(trained_model, tiny_data, tmp_path):
    model_path = tmp_path / "m.keras"
    shutil.copy(trained_model, model_path)  # a model a first run saved
    first = model_path.read_bytes()
    args = ["--data-dir", str(tiny_data), "--model", str(model_path), "--epochs", "1", "--verbose", "0"]
    assert ocr_captcha.main(args + ["--seed", "2"]) == 0
    assert (tmp_path / "m.prev.keras").read_bytes() == first
    assert model_path.read_bytes() != first


def test_variable_length_labels_train_and_decode(tmp_path):
    train_dir = write_text_images(tmp_path / "train", 240, seed=0)
    test_dir = write_text_images(tmp_path / "test", 40, seed=1)
    model = tmp_path / "m.keras"
    assert ocr_captcha.main(["--data-dir", str(train_dir), "--model", str(model), "--epochs", "12",
                             "--img-height", "32", "--batch-size", "16", "--learning-rate", "3e-3",
                             "--no-augment", "--verbose", "0"]) == 0
    reader = open_reader(model)
    assert reader.spec.max_label_length == 5 and reader.spec.charset == "0123"
    report = evaluate_folder(reader, str(test_dir), tmp_path / "report.json")
    assert report["seq_acc"] >= 0.9, report["misreads"]
    texts = [r.text for r in reader.read(sorted(test_dir.iterdir()))]
    assert {len(t) for t in texts} == {2, 3, 4, 5}


def test_init_from_a_model_of_another_architecture_fails_clearly(reader, tiny_data, tmp_path, capsys):
    other = tmp_path / "other.keras"
    base = reader.model
    # Another version's network: the same layers but without the dropout on the columns.
    columns = base.get_layer("projection").output
    context = base.get_layer("bilstm_2")(base.get_layer("bilstm_1")(columns))
    logits = base.get_layer("logits")(keras.layers.Concatenate(name="context_and_columns")([context, columns]))
    keras.Model(base.inputs, base.get_layer("model_info")(logits)).save(other)
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--init-from", str(other), "--model",
                               str(tmp_path / "new.keras")])
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("error: --init-from") and "dropout" in error and "Traceback" not in error


def test_init_from_fine_tunes_to_the_characters_of_the_data(trained_model, reader, tiny_data, tmp_path, capsys):
    data = tmp_path / "new"
    data.mkdir()
    sources = sorted(tiny_data.iterdir())
    for i, label in enumerate(["12ab", "c301", "b222", "0a0a"] * 5):
        shutil.copy(sources[i], data / f"{label}_{i}.png")
    model = tmp_path / "tuned.keras"
    assert ocr_captcha.main(["--data-dir", str(data), "--init-from", str(trained_model), "--model", str(model),
                             "--epochs", "1", "--verbose", "0", "--img-height", "32"]) == 0
    out = capsys.readouterr().out
    assert "3 new ones start fresh 'abc'" in out and "6 the data never uses are dropped" in out
    assert "augmentation on (18 training images)" in out
    tuned = open_reader(model)
    assert tuned.spec.charset == "0123abc", "only the characters of the data stay readable"
    assert tuned.spec.height == reader.spec.height, "the base model's height wins over --img-height"
    assert tuned.spec.width == 128, "the data's own aspect ratio (160x60 images) at that height"


def test_no_augment_reaches_a_small_run(tiny_data, tmp_path, capsys):
    # Small data is augmented by default (the plan test below); the flag must reach the run itself.
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(tmp_path / "m.keras"), "--epochs", "1",
                             "--verbose", "0", "--img-height", "24", "--no-augment"]) == 0
    assert "augmentation off (58 training images, chosen by setting)" in capsys.readouterr().out


@pytest.mark.parametrize("n_train, flags, expected", [
    (1999, [], (True, 16, 49, 24)),  # small data: augmented, batches of 16, epochs enough for 96,000 images
    (2000, [], (False, 32, 48, 24)),
    (7200, [], (False, 32, 14, 10)),
    (19199, [], (False, 32, 6, 10)),  # 5 epochs would see fewer than 96,000 images
    (19200, [], (False, 32, 5, 10)),
    (21600, [], (False, 32, 5, 10)),  # the shipped data: more distinct images, fewer passes
    (200_000, [], (False, 32, 5, 10)),  # never fewer than MIN_AUTO_EPOCHS
    (300, ["--batch-size", "64", "--no-augment", "--epochs", "3", "--patience", "2"], (False, 64, 3, 2)),
    (7200, ["--augment"], (True, 32, 14, 10)),
])
def test_training_plan_follows_the_data_size_unless_flags_say_otherwise(n_train, flags, expected, capsys):
    plan = plan_training(ocr_captcha.parse_args(flags).settings, n_train)
    assert (plan.augment, plan.batch_size, plan.epochs, plan.patience) == expected


def test_augmentation_keeps_shape_and_range():
    images = np.random.default_rng(0).random((8, 48, 128), dtype=np.float32)
    labels = np.ones((8, 4), np.int32)
    batch, _ = next(iter(make_dataset(images, labels, 8, shuffle_seed=1, augment=True)))
    assert batch.shape == (8, 48, 128)
    assert float(batch.numpy().min()) >= 0.0 and float(batch.numpy().max()) <= 1.0
    assert not np.allclose(np.sort(batch.numpy().ravel()), np.sort(images.ravel()))


def test_augmented_epochs_repeat_exactly_under_one_seed():
    images = np.random.default_rng(0).random((64, 48, 128), dtype=np.float32)
    labels = np.ones((64, 4), np.int32)

    def two_epochs() -> np.ndarray:
        keras.utils.set_random_seed(5)
        dataset = make_dataset(images, labels, 8, shuffle_seed=5, augment=True)
        return np.concatenate([batch.numpy() for _ in range(2) for batch, _ in dataset])

    first, second = two_epochs(), two_epochs()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[:64], first[64:]), "each epoch draws new distortions"


def test_training_keeps_the_moving_average_of_the_weights(tmp_path):
    spec = ModelSpec("0123456789", 48, 128, 4)
    rng = np.random.default_rng(0)
    images = rng.random((48, 48, 128), dtype=np.float32)
    labels = encode_labels(["".join(rng.choice(list("0123456789"), 4)) for _ in range(48)], spec)
    last_step = {}

    class LastStepWeights(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            last_step["weights"] = [w.numpy().copy() for w in self.model.trainable_weights]

    model = build_model(spec)
    elements = tf.data.Dataset.from_tensor_slices((images[:32], labels[:32]))
    settings = TrainingSettings(epochs=1, batch_size=4, verbose=0)
    fit(model, elements, 32, images[32:], labels[32:], settings, tmp_path, [LastStepWeights()])
    kept = [w.numpy() for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(kept, last_step["weights"])), \
        "after one epoch the model should hold the average, not the last step's weights"
    assert model.optimizer.ema_momentum == 0.9  # a quarter of 8 steps per epoch, at the lower bound


def test_crash_during_save_keeps_previous_model(reader, trained_model, tmp_path, monkeypatch):
    target = tmp_path / "m.keras"
    shutil.copy(trained_model, target)
    before = target.read_bytes()

    def crash(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a model")
        raise OSError(errno.EIO, "disk went away")
    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError):
        save_model(reader.model, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.prev.keras"]


def test_killed_training_resumes_from_last_finished_epoch(tiny_data, tmp_path):
    model = tmp_path / "m.keras"
    command = [sys.executable, str(ROOT / "ocr_captcha.py"), "--data-dir", str(tiny_data), "--model", str(model),
               "--epochs", "4", "--batch-size", "16", "--verbose", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    backups = tmp_path / "m.training"
    while not list(backups.glob("run-*/backup/training_metadata.json")):  # written after the weights
        assert process.poll() is None and time.monotonic() < deadline, "no backup written before the kill"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not model.exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the last finished epoch" in resumed.stdout
    assert "Epoch 1/4" not in resumed.stdout and "Epoch 4/4" in resumed.stdout
    assert model.exists() and not backups.exists()
    epochs = [line.split(",")[0] for line in (tmp_path / "m.training_log.csv").read_text().splitlines()[1:]]
    assert epochs[-1] == "3"


def test_restart_ignores_backup(tiny_data, tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.keras"
    monkeypatch.setattr(training, "run_key", lambda *args: "0123456789abcdef")  # the stale backup is this run's
    stale = tmp_path / "m.training" / "run-0123456789abcdef" / "backup"
    stale.mkdir(parents=True)
    (stale / "latest.weights.h5").write_bytes(b"stale")
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(model), "--epochs", "1",
                             "--verbose", "0", "--restart"]) == 0
    out, err = capsys.readouterr()
    assert "resuming" not in out and "unreadable" not in err, "--restart must not look at the old backup"
    assert model.exists()


def test_backup_killed_during_first_save_starts_over(tmp_path, capsys):
    spec = ModelSpec("01", 16, 16, 2)
    model = build_model(spec)
    compile_model(model, 1e-3, 10, 5)
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n half written")
    images = np.zeros((4, 16, 16), np.float32)
    labels = np.array([[1, 2], [2, 1], [1, 0], [2, 0]], np.int32)
    history = model.fit(images, labels, epochs=2, verbose=0,
                        callbacks=[ResumableBackup(str(backup), double_checkpoint=True)])
    assert len(history.history["loss"]) == 2
    assert "unreadable" in capsys.readouterr().err


class KilledAfter(keras.callbacks.Callback):
    """Stops a run at the end of an epoch, after the backup of that epoch is written, as a kill would."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Raise once `epochs` epochs are done."""
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_backup_cut_short_by_a_kill_resumes_from_the_one_before(tmp_path, capsys):
    """A kill while the weights are written can leave an HDF5 file that opens but lacks weights."""
    images = np.zeros((4, 16, 16), np.float32)
    labels = np.array([[1, 2], [2, 1], [1, 0], [2, 0]], np.int32)
    backup = tmp_path / "backup"

    def fit(epochs: int, *callbacks: keras.callbacks.Callback) -> dict:
        """A fresh model fitted with the backup in `backup`."""
        model = build_model(ModelSpec("01", 16, 16, 2))
        compile_model(model, 1e-3, 10, 5)
        return model.fit(images, labels, epochs=epochs, verbose=0,
                         callbacks=[ResumableBackup(str(backup), double_checkpoint=True), *callbacks]).history

    with pytest.raises(KeyboardInterrupt):
        fit(3, KilledAfter(2))  # backups of epochs 1 (the previous) and 2 (the latest)
    with h5py.File(backup / "latest.weights.h5", "a") as weights:  # the latest lacks a batch norm's last variable
        del weights["layers/batch_normalization/vars/3"]
    history = fit(3)
    assert len(history["loss"]) == 2, "epoch 1 was restored from the previous backup: two of three epochs left"
    assert "resuming from the one before it" in capsys.readouterr().err


def test_second_training_on_the_same_model_stops_at_once(tiny_data, tmp_path, capsys):
    model_path = tmp_path / "out" / "m.keras"
    model_path.parent.mkdir()
    with exclusive_lock(scratch_dir(model_path) / "lock", "another training run is writing"):  # a run in progress
        assert train_one_epoch(tmp_path, tiny_data) == 1
    assert "another training run is writing" in one_error_line(capsys)
    assert not model_path.exists()
    with exclusive_lock(scratch_dir(model_path) / "lock", "still held"):  # the lock went with the run that held it
        pass


KEY_CASES = [
    ("data_dir", "elsewhere"), ("init_from", "base.keras"), ("epochs", 7), ("batch_size", 8),
    ("learning_rate", 1e-3), ("patience", 9), ("seed", 1), ("val_split", 0.2), ("img_height", 32),
    ("img_width", 64), ("capacity", 2), ("augment", True), ("strategy", "mirrored"),
]


@pytest.mark.parametrize("field, other", KEY_CASES)
def test_every_setting_that_changes_a_run_changes_its_backup_key(field, other, tmp_path):
    (tmp_path / "base.keras").write_bytes(b"a model")
    spec = ModelSpec("0123456789", 48, 128, 4)
    first = TrainingSettings(data_dir=str(tmp_path / "data"))
    changed = dataclasses.replace(first, **{field: str(tmp_path / other) if field == "init_from" else other})
    assert (run_key(["a.png\t1234\t100"], first, spec, first.init_from)
            != run_key(["a.png\t1234\t100"], changed, spec, changed.init_from))


def test_a_new_start_model_under_the_same_path_is_a_new_run(tmp_path):
    start = tmp_path / "base.keras"
    start.write_bytes(b"one model")
    settings = TrainingSettings(init_from=str(start))
    spec = ModelSpec("0123456789", 48, 128, 4)
    before = run_key([], settings, spec, str(start))
    start.write_bytes(b"another model, trained since")
    assert run_key([], settings, spec, str(start)) != before


def test_settings_that_only_change_output_keep_the_key():
    spec = ModelSpec("0123456789", 48, 128, 4)
    first = TrainingSettings()
    same = dataclasses.replace(first, model="other.keras", test_dir="tests", restart=True, verbose=0)
    assert run_key([], first, spec, None) == run_key([], same, spec, None)


def test_the_key_test_covers_every_setting_that_changes_a_run():
    covered = {field for field, _ in KEY_CASES}
    assert covered == set(TrainingSettings().run_fields())


def test_models_sharing_a_folder_keep_their_own_split_and_log(trained_model, tiny_data, tmp_path):
    first = tmp_path / "first.keras"
    shutil.copy(trained_model, first)
    for name in ("split.json", "training_log.csv"):
        shutil.copy(beside_model(trained_model, name), beside_model(first, name))
    recorded = beside_model(first, "split.json").read_bytes()
    second = tmp_path / "second.keras"
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(second), "--epochs", "1", "--seed", "7",
                             "--verbose", "0"]) == 0
    assert beside_model(first, "split.json").read_bytes() == recorded, "the first model's split is kept"
    assert json.loads(beside_model(second, "split.json").read_text())["seed"] == 7
    assert beside_model(second, "training_log.csv").is_file() and beside_model(first, "training_log.csv").is_file()
    assert not (tmp_path / "split.json").exists()


def test_run_whose_loss_is_not_finite_fails_and_keeps_the_model(trained_model, tiny_data, tmp_path, capsys):
    model = tmp_path / "m.keras"
    shutil.copy(trained_model, model)
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(model), "--epochs", "2",
                               "--learning-rate", "1e30", "--img-height", "16", "--verbose", "0"])
    assert status == 1
    assert "not finite" in one_error_line(capsys)
    assert model.read_bytes() == trained_model.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"], "no .prev, no scratch folder, no plots"
