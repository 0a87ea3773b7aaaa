"""Writing a run's results safely: the model is replaced atomically, backups resume only their own run.

A failed or interrupted run never damages the model already on disk: every file is
written beside its target under a temporary name and moved into place, and the
previous model is kept as `<name>.prev.keras`. Backups of a run in progress live in a
scratch folder beside the model, keyed to the run's data and settings.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import keras

from ocr_core import DatasetError, ModelSpec

# A folder with more unreadable files than this is more likely the wrong folder than a few bad downloads.
MAX_BAD_FRACTION = 0.10


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that starts over, with a warning, when a kill left no readable backup.

    With double_checkpoint=True Keras falls back to the previous backup when the latest is
    corrupt, but a kill during the very first save leaves no previous one to fall back to.
    """

    def on_train_begin(self, logs=None):
        """Restore the last finished epoch, or start from scratch if the backup is unreadable."""
        initial_weights = self.model.get_weights()
        try:
            super().on_train_begin(logs)
        except OSError:
            print(f"warning: the backup in {self.backup_dir} is unreadable (killed while saving?); "
                  "starting over", file=sys.stderr)
            shutil.rmtree(self.backup_dir, ignore_errors=True)
            self.model.set_weights(initial_weights)
            for variable in self.model.optimizer.variables:
                variable.assign(keras.ops.zeros_like(variable))


def run_key(fingerprint: list[str], args: argparse.Namespace, spec: ModelSpec) -> str:
    """A short hash of the data and settings, so that a backup is only restored into the same run."""
    digest = hashlib.sha256("\n".join(fingerprint).encode())
    settings = [spec.to_dict(), args.epochs, args.batch_size, args.seed, args.val_split, args.learning_rate,
                args.strategy]
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def scratch_dir(model_path: Path) -> Path:
    """Folder beside the model for checkpoints and logs of runs in progress."""
    return model_path.with_name(model_path.stem + ".training")


def check_writable(folder: Path) -> None:
    """Fail before training when the output folder cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 65536)
        probe.unlink()
    except OSError as error:
        raise DatasetError(f"{folder}: cannot write the model there ({error.strerror})") from None


@contextlib.contextmanager
def exclusive_training(model_path: Path):
    """Hold a lock in the run's scratch folder while training: a second run on the same model fails at once.

    The operating system releases the lock when the process ends, however it ends, so a
    killed run never leaves a stale lock behind; a finished run removes the folder with it.
    """
    scratch_dir(model_path).mkdir(parents=True, exist_ok=True)
    handle = open(scratch_dir(model_path) / "lock", "a")  # noqa: SIM115 - held until the run ends
    try:
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DatasetError(f"{model_path}: another training run is writing this model; wait for it to "
                               "finish or give this one another --model") from None
        yield
    finally:
        handle.close()


def write_atomically(path: Path, write) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then move it into place."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(model: keras.Model, path: Path) -> None:
    """Replace the model file atomically, keeping the previous one as `<name>.prev.keras`."""
    if path.exists():
        previous = path.with_name(path.stem + ".prev.keras")
        write_atomically(previous, lambda tmp: shutil.copy2(path, tmp))
    # A fresh functional model over the same layers: saved without optimizer state or compile settings.
    inference_model = keras.Model(model.inputs, model.outputs, name=model.name)
    write_atomically(path, lambda tmp: inference_model.save(tmp))


def write_json(path: Path, data) -> None:
    """Write JSON atomically."""
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def report_bad_files(bad_files: list[str], total: int, data_dir: str, model_path: Path) -> None:
    """Warn about unreadable files in one line and list them beside the model; stop if there are too many."""
    if not bad_files:
        return
    if len(bad_files) == total:
        raise DatasetError(f"{data_dir}: no readable images among {total} files (first: {bad_files[0]})")
    if len(bad_files) > MAX_BAD_FRACTION * total:
        raise DatasetError(f"{data_dir}: {len(bad_files)} of {total} files are unreadable "
                           f"(first: {bad_files[0]}); is this the right folder?")
    listing = model_path.with_name("bad_files.txt")
    listing.write_text("\n".join(bad_files) + "\n")
    first = "; ".join(bad_files[:3])
    print(f"warning: skipped {len(bad_files)} unreadable files ({first}); full list in {listing}", file=sys.stderr)
