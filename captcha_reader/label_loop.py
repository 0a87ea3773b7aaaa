"""The labelling loop without the web page: the answers log, the queue order, suggestions, reviews, training.

The page (`labelling`) and the labelling-cost benchmark both run on these functions.

labels.csv is an append-only log, `path,label,note`, where the last row for a file wins:

    a7.png,          waiting for a label: left out of training
    a7.png,x7Kp,     labelled
    b2.png,,unreadable   marked unreadable: left out of training
    a7.png,          an undo of a7's answer: it waits again

Opening a folder for labelling writes a waiting row for every image labels.csv does not list
yet, so an arbitrarily named file is never trained on with its file name as its label.
"""

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, Literal, NamedTuple, Sequence

from captcha_reader.base import (
    DatasetError,
    ImageReadError,
    ModelLoadError,
    ModelSpec,
    TextFormatError,
    UserError,
)
from captcha_reader.decoding import Reading, TextFormat, resolve_format
from captcha_reader.files import append_durably, beside_model, write_atomically
from captcha_reader.labels import (
    CSV_HEADER,
    LABELS_CSV,
    LabelRow,
    images_in,
    label_from_filename,
    list_images,
    read_label_rows,
)
from captcha_reader.reading import BaseReader
from captcha_reader.settings import epochs_to_see

WORK_DIR = ".labelling"  # inside the labelled folder: the page's model and reports
PAGE_MODEL = "model.keras"  # the page's own model in WORK_DIR; its reports are named after it
NOTE_UNREADABLE = "unreadable"
NOTE_REVIEWED = "reviewed"
NOTES = ("", NOTE_UNREADABLE, NOTE_REVIEWED)
ORDERS = ("uncertain", "confident", "name")
SUGGESTION_BATCH = 64
# Fine-tuning plans to see this many images (then early stopping), a quarter of what a run from scratch
# plans (MIN_TRAINING_IMAGES), in at least MIN_AUTO_EPOCHS epochs as any run.
FINE_TUNE_IMAGES = 24_000
MAX_LABEL_LENGTH = 64
# From this many labels on, suggestions take their format (lengths, kinds of character): a model trained
# on other captchas, such as the base model, then reads only what this folder's captchas can be.
FORMAT_MIN_LABELS = 20
KIND_NAMES = {"digit": "digits", "upper": "upper case", "lower": "lower case", "other": "other characters"}
TRAINING_MODULE = (sys.executable, "-u", "-m", "captcha_reader.label_training")
# The suggestions' thread and the server's /read both ask for a model's ONNX export: one export, not two.
EXPORT_LOCK = threading.Lock()


class BadAnswer(UserError):
    """An answer the labels log cannot take: unknown file, unusable label or note."""


class ReviewItem(NamedTuple):
    """A labelled image whose label a report doubts: keep it or fix it."""

    name: str
    label: str
    pred: str
    score: float  # the report's probability of the label (audit) or confidence of the reading (evaluation)
    source: str


# ---------------------------------------------------------------------------
# The answers log
# ---------------------------------------------------------------------------


def csv_line(name: str, label: str, note: str) -> str:
    """One labels.csv row, quoted as the csv module quotes it."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([name, label, note])
    return out.getvalue()


def clean_label(label: str) -> str:
    """The label as stored: surrounding spaces removed; a BadAnswer for one no file can hold."""
    label = label.strip()
    if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
        raise BadAnswer(f"a label must be printable text of at most {MAX_LABEL_LENGTH} characters, got {label!r}")
    return label


class LabelStore:
    """A folder's labels.csv: every answer is appended and synced before it counts; the last row per file wins."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.csv_path = self.folder / LABELS_CSV
        # A folder without images is refused before labels.csv or the work folder is written into it.
        self.names = [p.name for p in images_in(self.folder, " to label")]
        self._known = set(self.names)
        self._lock = threading.Lock()
        self.rows: dict[str, LabelRow] = read_label_rows(self.csv_path) if self.csv_path.is_file() else {}

    def open_for_labelling(self) -> int:
        """Write a waiting row for every image labels.csv does not list yet; returns how many."""
        new = [name for name in self.names if name not in self.rows]
        header = "" if self.csv_path.is_file() and self.csv_path.stat().st_size else csv_line(*CSV_HEADER)
        if new or header:
            self._append([(name, "", "") for name in new], header)
        return len(new)

    def take_new_images(self) -> list[str]:
        """List the folder again: images added since it was opened wait for a label; returns the new ones."""
        names = [p.name for p in list_images(self.folder)]
        with self._lock:
            new = [name for name in names if name not in self._known]
            self.names, self._known = names, set(names)
        self.open_for_labelling()
        return new

    def answer(self, name: str, label: str, note: str = "") -> LabelRow:
        """Record an answer: a label, "" to wait again (undo), or the note `unreadable` with no label."""
        if not self.is_image(name):
            raise BadAnswer(f"{name!r} is not an image of {self.folder}")
        if note not in NOTES:
            raise BadAnswer(f"note must be one of {NOTES}, got {note!r}")
        label = "" if note == NOTE_UNREADABLE else clean_label(label)
        if note == NOTE_REVIEWED and not label:
            raise BadAnswer("a reviewed image keeps a label: give one, or mark it unreadable")
        self._append([(name, label, note)])
        return self.rows[name]

    def _append(self, rows: Sequence[tuple[str, str, str]], prefix: str = "") -> None:
        """Append rows in one durable write, then take them as the current state."""
        with self._lock:
            append_durably(self.csv_path, prefix + "".join(csv_line(*row) for row in rows))
            for name, label, note in rows:
                self.rows[name] = LabelRow(label, note)

    def is_image(self, name: str) -> bool:
        """True for the file name of one of the folder's images."""
        return name in self._known

    def state(self, name: str) -> LabelRow:
        """The current row of an image; an image labels.csv does not list is labelled by its file name."""
        return self.rows.get(name) or LabelRow(label_from_filename(name), "")

    def waiting(self) -> list[str]:
        """Images with no label and no note: the labelling queue, in file name order."""
        return [name for name in self.names if self.rows.get(name) == LabelRow("", "")]

    def labelled(self) -> list[str]:
        """Images that have a label (from labels.csv or their file name): what training uses."""
        return [name for name in self.names if self.state(name).label]

    def labels(self) -> list[str]:
        """The labels of the labelled images."""
        return [self.state(name).label for name in self.labelled()]

    def counts(self) -> dict:
        """How many images there are, labelled, unreadable and waiting."""
        unreadable = sum(self.state(name).note == NOTE_UNREADABLE for name in self.names)
        return {"total": len(self.names), "labelled": len(self.labelled()), "unreadable": unreadable,
                "waiting": len(self.waiting())}


# ---------------------------------------------------------------------------
# Suggestions and the queue order
# ---------------------------------------------------------------------------


def character_kind(char: str) -> Literal["digit", "lower", "upper", "other"]:
    """The kind of a character, as captcha formats choose them: digit, lower, upper or other."""
    if char.isdigit():
        return "digit"
    return "lower" if char.islower() else "upper" if char.isupper() else "other"


def labels_format(labels: Sequence[str], spec: ModelSpec) -> TextFormat | None:
    """The labels' lengths, and the model's characters of the kinds they use: the format for its suggestions."""
    if len(labels) < FORMAT_MIN_LABELS:  # too few to tell: the model's own format
        return None
    kinds = {character_kind(char) for label in labels for char in label}
    charset = "".join(char for char in spec.charset if character_kind(char) in kinds)
    try:  # the longest length is cut to what the model's time steps hold
        return resolve_format(spec, TextFormat(charset, (min(map(len, labels)), max(map(len, labels)))))
    except TextFormatError:  # no character of those kinds, or even the shortest label is too long: its own format
        return None


def describe_format(text_format: TextFormat) -> str:
    """A format in words for the page, such as `5-6 characters: digits, lower case`."""
    low, high = text_format.lengths
    kinds = dict.fromkeys(KIND_NAMES[character_kind(char)] for char in text_format.charset)
    return f"{low if low == high else f'{low}-{high}'} characters: {', '.join(kinds)}"


class Suggestions(NamedTuple):
    """A batch of suggestions: the readings by file name, and why each unreadable file could not be read."""

    readings: dict[str, Reading]
    problems: dict[str, str]


def suggest(reader: BaseReader, paths: Sequence[Path], text_format: TextFormat | None = None,
            batch_size: int = SUGGESTION_BATCH) -> Iterator[Suggestions]:
    """Read `paths` in `text_format`, one batch of suggestions at a time."""
    for start in range(0, len(paths), batch_size):
        batch = list(paths[start:start + batch_size])
        results = dict(zip((path.name for path in batch), reader.read_each(batch, text_format)))
        yield Suggestions({name: result for name, result in results.items() if not isinstance(result, ImageReadError)},
                          {name: str(result) for name, result in results.items() if isinstance(result, ImageReadError)})


def order_queue(names: Sequence[str], suggestions: dict[str, Reading], order: str) -> list[str]:
    """The queue: least confident first (teaches the model most), most confident first (fast confirming), or by name.

    Images without a suggestion count as the least confident.
    """
    if order not in ORDERS:
        raise BadAnswer(f"order must be one of {ORDERS}, got {order!r}")
    if order == "name":
        return sorted(names)

    def confidence(name: str) -> float:
        """The suggestion's confidence; -1 for an image without one."""
        return suggestions[name].confidence if name in suggestions else -1.0

    sign = 1 if order == "uncertain" else -1
    return sorted(names, key=lambda name: (sign * confidence(name), name))


# ---------------------------------------------------------------------------
# Review queues: the label audit's suspects and an evaluation's misreads
# ---------------------------------------------------------------------------


def read_review_report(report: str | Path, store: LabelStore) -> list[ReviewItem]:
    """Images of the store's folder whose label a report doubts, most doubtful first.

    An audit report (`--audit`) ranks every file: the ones whose out-of-fold reading differs
    from the label are kept. An evaluation report (`--evaluate`) lists its misreads.
    """
    report = Path(report)
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{report}: not a readable JSON report ({error})") from None
    if not isinstance(data, list) and not (isinstance(data, dict) and "misreads" in data):
        raise DatasetError(f"{report}: neither an audit report (a list) nor an evaluation report (with misreads)")
    try:
        if isinstance(data, list):
            entries = [(e["path"], e["label"], e["pred"], e["p_label"]) for e in data if e.get("pred") != e.get("label")]
        else:
            entries = [(e["path"], e["truth"], e["pred"], e["confidence"]) for e in data["misreads"]]
        known = set(store.names)
        items = [ReviewItem(Path(path).name, str(label), str(pred), float(score), report.name)
                 for path, label, pred, score in entries if Path(path).name in known]
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise DatasetError(f"{report}: an entry is not one of an audit or evaluation report ({error!r})") from None
    # An audit's score is the label's probability, an evaluation's the reading's confidence: a sure misread doubts most.
    sign = 1 if isinstance(data, list) else -1
    return sorted(items, key=lambda item: sign * item.score)


def open_reviews(store: LabelStore, reports: Sequence[str | Path]) -> list[ReviewItem]:
    """Review items still to decide from `reports`, or from the folder's own .labelling/ reports."""
    work = store.folder / WORK_DIR
    own = [beside_model(work / PAGE_MODEL, name) for name in ("audit.json", "evaluation.json")]
    sources = list(reports) or [path for path in own if path.is_file()]
    items, seen = [], set()
    for report in sources:
        for item in read_review_report(report, store):
            row = store.state(item.name)
            # Already decided, or changed since the report: nothing left to review.
            if item.name in seen or row.note == NOTE_REVIEWED or row.label != item.label:
                continue
            seen.add(item.name)
            items.append(item)
    return items


# ---------------------------------------------------------------------------
# Training on the labelled images: a subprocess, and its progress
# ---------------------------------------------------------------------------


class TrainingProgress(NamedTuple):
    """Where a training run stands, from its output lines."""

    epoch: int = 0
    epochs: int = 0
    val_seq_acc: float | None = None
    warning: str | None = None  # the run's verdict on a validation set too small to trust


EPOCH_LINE = re.compile(r"^Epoch (\d+)/(\d+)")
VAL_ACC = re.compile(r"val_seq_acc: ([0-9.]+(?:e[-+]?[0-9]+)?)")  # Keras prints 0.0005 as 5.0000e-04
# The kept model's score, printed once training ends: the best epoch's, which the last epoch's need not be.
KEPT_VAL_ACC = re.compile(r"^validation: sequence accuracy ([0-9.]+)")
SMALL_VALIDATION = re.compile(r"^warning: (\d+ validation images cannot tell .*?);")


def update_progress(progress: TrainingProgress, line: str) -> TrainingProgress:
    """The progress after one line of `--verbose 2` Keras output."""
    epoch = EPOCH_LINE.match(line)
    if epoch:
        return progress._replace(epoch=int(epoch.group(1)), epochs=int(epoch.group(2)))
    accuracy = KEPT_VAL_ACC.match(line) or VAL_ACC.search(line)
    if accuracy:
        return progress._replace(val_seq_acc=float(accuracy.group(1)))
    small = SMALL_VALIDATION.match(line)
    if small:
        return progress._replace(warning=small.group(1))
    return progress


def fine_tune_epochs(labelled: int) -> int:
    """Epochs for fine-tuning on `labelled` images: enough to see FINE_TUNE_IMAGES of them, at most MAX_AUTO_EPOCHS."""
    return epochs_to_see(FINE_TUNE_IMAGES, labelled)


def fine_tuning_start(model: Path, init_from: Path) -> Path:
    """The file a run fine-tunes: `init_from`, or a copy of it when it is the model the run writes.

    Training never writes over its own start; the page retrains its model in place, so it starts from a copy.
    """
    if init_from.resolve() != model.resolve() or not model.is_file():
        return init_from
    start = beside_model(model, "start.keras")
    write_atomically(start, lambda tmp: shutil.copy2(model, tmp))
    return start


def training_command(folder: Path, model: Path, init_from: Path | None, labelled: int,
                     epochs: int | None = None, new_images_wait: bool = False) -> list[str]:
    """The command that trains `model` on the folder's labelled images (fine-tuning `init_from` if given).

    A run from scratch uses the training defaults; fine-tuning needs fewer epochs; `epochs` overrides both.
    With `new_images_wait`, images labels.csv does not list yet wait for a label, not trained by file name.
    """
    command = [*TRAINING_MODULE, "train", str(folder.resolve()), str(model.resolve())]
    if new_images_wait:
        command.append("--new-images-wait")
    if init_from is not None:
        command += ["--init-from", str(fine_tuning_start(model, init_from).resolve())]
        epochs = epochs or fine_tune_epochs(labelled)
    return command + (["--epochs", str(epochs)] if epochs else [])


def export_command(model: Path, onnx: Path) -> list[str]:
    """The command that writes a .keras model as ONNX, so that suggestions are read without TensorFlow."""
    return [*TRAINING_MODULE, "export", str(model.resolve()), str(onnx.resolve())]


def package_root() -> Path:
    """The folder that holds the captcha_reader package: where `python -m` finds it."""
    return Path(__file__).resolve().parent.parent


def is_fresh(copy: Path, model: Path) -> bool:
    """True when `copy` exists and is at least as new as `model`."""
    return copy.is_file() and copy.stat().st_mtime >= model.stat().st_mtime


def onnx_for(model: Path, work: Path) -> Path:
    """An ONNX file to read suggestions with, without TensorFlow in this process.

    A .keras model is read through its ONNX export beside it when that is fresh, else through
    one exported into `work` by a subprocess (seconds: it imports TensorFlow there).
    """
    if model.suffix != ".keras":
        return model
    if is_fresh(model.with_suffix(".onnx"), model):
        return model.with_suffix(".onnx")
    stat = model.stat()
    identity = hashlib.sha256(f"{model.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    export = work / f"suggest-{identity}.onnx"  # one per model file and version: never a stale one
    with EXPORT_LOCK:
        if not export.is_file():
            work.mkdir(exist_ok=True)
            done = subprocess.run(export_command(model, export), cwd=package_root(), capture_output=True, text=True)
            if done.returncode:
                last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the ONNX export failed"
                raise ModelLoadError(f"{model}: {last}")
    return export
