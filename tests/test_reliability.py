"""Bad input, faults and untrusted files: one clear error line, nothing on disk damaged."""

import errno
import json
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest

import ocr_captcha
import ocr_core
import ocr_storage
from conftest import ROOT
from ocr_core import ImageReadError, ModelLoadError


def train(tmp_path, data_dir, *extra) -> int:
    """Run the training entry point in-process on a folder, one quick epoch."""
    return ocr_captcha.main(["--data-dir", str(data_dir), "--model", str(tmp_path / "out" / "m.keras"),
                             "--epochs", "1", "--batch-size", "16", "--verbose", "0", *extra])


def one_error_line(capsys) -> str:
    """The single stderr line of a failed run (asserting there is exactly one and no traceback)."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares a huge grayscale image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


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
    assert train(tmp_path, folder) == 1
    assert str(folder) in one_error_line(capsys)


def test_a_few_bad_files_are_skipped_and_listed(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    (data / "1111.png").write_bytes(b"")
    good = (tiny_data / sorted(p.name for p in tiny_data.iterdir())[0]).read_bytes()
    (data / "2222.png").write_bytes(good[: len(good) // 3])
    (data / "3333.png").write_bytes(bomb_png())
    assert train(tmp_path, data) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 3 unreadable files" in warnings[0]
    listed = (tmp_path / "out" / "bad_files.txt").read_text().splitlines()
    assert sorted(Path(line.split(":")[0]).name for line in listed) == ["1111.png", "2222.png", "3333.png"]
    assert len(json.loads((tmp_path / "out" / "split.json").read_text())["train"]) + 6 == 64


def test_too_many_bad_files_stop_training(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for i in range(8):
        (data / f"99{i:02d}.png").write_bytes(b"oops")
    assert train(tmp_path, data) == 1
    assert "8 of 72 files are unreadable" in one_error_line(capsys)
    assert not (tmp_path / "out" / "m.keras").exists()


def test_decompression_bomb_refused_from_header_without_allocating():
    tracemalloc.start()
    with pytest.raises(ImageReadError, match="too large"):
        ocr_core.read_image(bomb_png(), 48, 128)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000_000


def test_mixed_sizes_are_resized(reader, tmp_path):
    from PIL import Image
    sizes = [(160, 60), (70, 30), (400, 90), (33, 200)]
    paths = []
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, "white").save(paths[-1])
    assert reader.preprocess(paths).shape == (4, reader.spec.height, reader.spec.width)
    assert len(reader.read(paths)) == 4


def test_unwritable_output_folder_fails_before_training(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    status = ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(blocker / "m.keras")])
    assert status == 1
    assert "cannot write the model there" in one_error_line(capsys)


def test_full_disk_fails_before_training(tiny_data, tmp_path, capsys, monkeypatch):
    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", no_space)
    started = time.monotonic()
    assert train(tmp_path, tiny_data) == 1
    assert "No space left on device" in one_error_line(capsys)
    assert time.monotonic() - started < 5, "the check must come before loading and training"


def test_crash_during_save_keeps_previous_model(reader, trained_model, tmp_path, monkeypatch):
    target = tmp_path / "m.keras"
    shutil.copy(trained_model, target)
    before = target.read_bytes()

    def crash(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a model")
        raise OSError(errno.EIO, "disk went away")
    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError):
        ocr_storage.save_model(reader.model, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.prev.keras"]


def test_truncated_model_file_is_a_clear_error(trained_model, tmp_path):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(trained_model.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="not a usable ocr_captcha model"):
        ocr_captcha.load_reader(cut)


def test_lambda_layer_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x, m=str(marker): (open(m, "w").close(), x)[1])(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()
    with pytest.raises(ModelLoadError, match="Lambda"):
        ocr_captcha.load_reader(path)
    assert not marker.exists()


def test_unknown_class_is_refused(trained_model, tmp_path):
    path = tmp_path / "evil.keras"
    with zipfile.ZipFile(trained_model) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["module"] = "os"
                config["config"]["layers"][1]["class_name"] = "system"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(ModelLoadError):
        ocr_captcha.load_reader(path)


def test_keras_model_without_model_info_is_refused(tmp_path):
    inputs = keras.Input((4,))
    path = tmp_path / "other.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    with pytest.raises(ModelLoadError, match="not an ocr_captcha model"):
        ocr_captcha.load_reader(path)


def test_missing_test_png_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "predict_example.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().startswith("error: test.png: no such file")


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
    epochs = [line.split(",")[0] for line in (tmp_path / "training_log.csv").read_text().splitlines()[1:]]
    assert epochs[-1] == "3"


def test_restart_ignores_backup(tiny_data, tmp_path):
    model = tmp_path / "m.keras"
    stale = tmp_path / "m.training" / "run-0123456789abcdef" / "backup"
    stale.mkdir(parents=True)
    (stale / "latest.weights.h5").write_bytes(b"stale")
    assert ocr_captcha.main(["--data-dir", str(tiny_data), "--model", str(model), "--epochs", "1",
                             "--verbose", "0", "--restart"]) == 0
    assert model.exists()


def test_backup_killed_during_first_save_starts_over(tmp_path, capsys):
    spec = ocr_core.ModelSpec("01", 16, 16, 2)
    model = ocr_captcha.build_model(spec)
    ocr_captcha.compile_model(model, 1e-3, 10, 5)
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n half written")
    images = np.zeros((4, 16, 16), np.float32)
    labels = np.array([[1, 2], [2, 1], [1, 0], [2, 0]], np.int32)
    history = model.fit(images, labels, epochs=2, verbose=0,
                        callbacks=[ocr_storage.ResumableBackup(str(backup), double_checkpoint=True)])
    assert len(history.history["loss"]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_second_training_on_the_same_model_stops_at_once(tiny_data, tmp_path, capsys):
    model_path = tmp_path / "out" / "m.keras"
    model_path.parent.mkdir()
    with ocr_storage.exclusive_training(model_path):  # stands for a run in progress
        assert train(tmp_path, tiny_data) == 1
    assert "another training run is writing" in one_error_line(capsys)
    assert not model_path.exists()
    assert train(tmp_path, tiny_data) == 0  # the lock goes with the run that held it
    assert model_path.exists()
