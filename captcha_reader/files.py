"""Writing files so that nothing is lost: atomic replacement, durable appends, a writable-folder check, a run lock.

A file is replaced by writing it beside its target under a temporary name and moving it into
place, so a crash leaves either the old file or the new one, never half of one; a log grows by
appends that are flushed to disk before they return.
"""

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from captcha_reader.base import DatasetError


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then move it into place."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically; a NaN or infinity is a bug, not a value to write as invalid JSON."""
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n"))


def check_writable(folder: Path, what: str = "the model") -> None:
    """Fail before any long work when the output folder cannot be created or written."""
    # os.path's checks answer False where Path's raise (a folder we may not search, a name too long).
    existing = next(path for path in (folder, *folder.absolute().parents) if os.path.lexists(path))
    if not os.path.isdir(existing):
        raise DatasetError(f"{existing}: is a file, not a folder; cannot write {what} in {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 65536)
        probe.unlink()
    except OSError as error:
        raise DatasetError(f"{folder}: cannot write {what} there ({error.strerror})") from None


def same_path(first: Path | str, second: Path | str) -> bool:
    """True when two paths name the same file or folder, whether or not it exists yet."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(first) == os.path.realpath(second)


def check_output_file(output: Path, what: str, inputs: dict[str, Path | str | None]) -> None:
    """Refuse, before any work, an output file that would overwrite one of the inputs or is a folder."""
    for name, source in inputs.items():
        if source is not None and same_path(output, source):
            raise DatasetError(f"{what} {output} would overwrite {name} {source}; choose another path")
    if output.is_dir():
        raise DatasetError(f"{what} {output} is a folder; give a file path")


def check_output_folder(folder: Path, what: str, input_folders: dict[str, Path | str | None]) -> None:
    """Refuse, before any work, to write outputs into a folder the tool reads images from."""
    for name, source in input_folders.items():
        if source is not None and same_path(folder, source):
            raise DatasetError(f"{what} would be written into {name} {source}, and its images would be read as"
                               " captchas next time; write them elsewhere")


def beside_model(model_path: Path, suffix: str) -> Path:
    """The model's own file or folder `<model name>.<suffix>` beside it: models in one folder keep theirs apart."""
    return model_path.with_name(f"{model_path.stem}.{suffix}")


def scratch_dir(model_path: Path) -> Path:
    """Folder beside the model for the checkpoints, log and lock of a training run in progress."""
    return beside_model(model_path, "training")


def labels_only_model(model_path: Path) -> Path:
    """Where --unlabelled keeps its first run's model (trained on the labels alone), with that run's plots."""
    return beside_model(model_path, "labels_only") / model_path.name


def has_backup(model_path: Path) -> bool:
    """True when an interrupted run left a backup that the same command would resume from."""
    return any(scratch_dir(model_path).glob("run-*/backup"))


def lock_file(fd: int, wait: bool) -> None:
    """Take the OS's exclusive lock on an open file, held until it is closed; without `wait`, OSError if taken."""
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, busy_message: str) -> Iterator[None]:
    """Hold an OS lock on `lock_path` for the duration; a second holder fails at once with `busy_message`.

    The operating system releases the lock when the process ends, however it ends, so a
    killed process never leaves a stale lock behind.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a")  # noqa: SIM115 - held until the block ends
    try:
        try:
            lock_file(handle.fileno(), wait=False)
        except OSError:
            raise DatasetError(busy_message) from None
        yield
    finally:
        handle.close()


def append_durably(path: Path, text: str) -> None:
    """Append `text` to `path` under a blocking OS lock and sync it to disk before returning.

    Writers in other threads or processes wait for the lock, so their lines never interleave;
    a file whose last line lacks its newline (cut by a crash) gets one first.
    """
    data = text.encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise DatasetError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        lock_file(fd, wait=True)
        end = os.fstat(fd).st_size
        if end:
            os.lseek(fd, end - 1, os.SEEK_SET)
            if os.read(fd, 1) != b"\n":
                data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
