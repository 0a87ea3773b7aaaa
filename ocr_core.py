"""The TensorFlow-free core of ocr-captchas: images, labels, charset and CTC decoding.

Training (`ocr_captcha.py`), prediction (`predict_example.py`) and every export use
these functions, so that a captcha is read the same way everywhere. Only Pillow and
NumPy are imported here: a light runtime can reuse this module without TensorFlow.
"""

import contextlib
import csv
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path
from typing import NamedTuple, Sequence, Union

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
LABELS_CSV = "labels.csv"
# Index 0 of the model's output is the CTC blank; character i of the charset is class i + 1.
BLANK_INDEX = 0
# Captchas are small. A header that declares more pixels than this is refused before
# decoding, so that a decompression bomb cannot allocate gigabytes.
MAX_IMAGE_PIXELS = 4096 * 4096
# The convolutional stack halves the width twice: one CTC time step per 4 columns.
WIDTH_PER_TIME_STEP = 4
FORMAT_VERSION = 1

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]


class ImageReadError(ValueError):
    """An image that cannot be read: the message names the file and the problem."""


class DatasetError(ValueError):
    """A folder or label set that cannot be used: the message says why."""


class ModelLoadError(ValueError):
    """A model file that is missing, corrupt, or not an ocr_captcha model."""


@dataclass(frozen=True)
class ModelSpec:
    """What a saved model needs besides its weights: charset and geometry."""

    charset: str
    height: int
    width: int
    max_label_length: int

    @property
    def num_classes(self) -> int:
        """Output classes: one per character plus the CTC blank."""
        return len(self.charset) + 1

    @property
    def time_steps(self) -> int:
        """Number of CTC time steps the network emits per image."""
        return self.width // WIDTH_PER_TIME_STEP

    def to_dict(self) -> dict:
        """Plain-dict form, for JSON and Keras configs."""
        return asdict(self)


@contextlib.contextmanager
def silenced_stderr():
    """Send file descriptor 2 to the null device for the duration, C libraries included."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# ---------------------------------------------------------------------------
# Labels: from file names, or from a labels.csv that overrides them
# ---------------------------------------------------------------------------


def label_from_filename(path: Union[str, Path]) -> str:
    """The label of a file: its stem, or the part of it before the first `_`."""
    return Path(path).stem.split("_", 1)[0]


def is_image_file(path: Path) -> bool:
    """True for a regular file with an accepted image extension (any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def list_images(folder: Union[str, Path]) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def read_labels_csv(csv_path: Path) -> dict[str, str]:
    """Map file name to label from a `path,label` CSV file (a header row is optional)."""
    labels = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row or (line_number == 1 and row == ["path", "label"]):
                continue
            if len(row) != 2 or not row[1]:
                raise DatasetError(f"{csv_path}:{line_number}: expected `path,label`, got {row!r}")
            labels[Path(row[0]).name] = row[1]
    return labels


def list_labelled_images(folder: Union[str, Path]) -> list[tuple[Path, str]]:
    """(path, label) for every image in `folder`; `labels.csv` there overrides file names."""
    paths = list_images(folder)
    csv_path = Path(folder) / LABELS_CSV
    if not csv_path.is_file():
        return [(p, label_from_filename(p)) for p in paths]
    overrides = read_labels_csv(csv_path)
    return [(p, overrides.get(p.name, label_from_filename(p))) for p in paths]


# ---------------------------------------------------------------------------
# Charset: characters <-> class indices (0 is the CTC blank)
# ---------------------------------------------------------------------------


def charset_from_labels(labels: list[str]) -> str:
    """The sorted set of characters used by `labels`."""
    return "".join(sorted(set("".join(labels))))


def encode_label(label: str, charset: str) -> list[int]:
    """Class indices of `label`'s characters (1-based: 0 is the blank)."""
    return [charset.index(c) + 1 for c in label]


def decode_indices(indices, charset: str) -> str:
    """Text for a sequence of class indices, skipping the blank."""
    return "".join(charset[i - 1] for i in indices if i != BLANK_INDEX)


def chars_outside(label: str, charset: str) -> str:
    """The characters of `label` that `charset` lacks, each once, in order."""
    return "".join(dict.fromkeys(c for c in label if c not in charset))


def min_time_steps(label: str) -> int:
    """Fewest CTC time steps that can emit `label`: a blank must separate repeated characters."""
    repeats = sum(a == b for a, b in zip(label, label[1:]))
    return len(label) + repeats


# ---------------------------------------------------------------------------
# Images: any mode and format in, a float32 (height, width) array in [0, 1] out
# ---------------------------------------------------------------------------


def describe(source: ImageSource) -> str:
    """A short name for an image source, for error messages."""
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def open_image(source: ImageSource) -> Image.Image:
    """Open an image lazily and check its declared size before any pixel is decoded."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = Image.fromarray(source)
    else:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; ours is lower and checked just after.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(BytesIO(source) if isinstance(source, bytes) else source)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageReadError(f"{describe(source)}: empty image ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageReadError(
            f"{describe(source)}: image too large ({width}x{height} pixels, limit {MAX_IMAGE_PIXELS:,});"
            " refused before decoding"
        )
    return image


def to_grayscale(image: Image.Image) -> Image.Image:
    """The first frame as 8-bit grayscale; transparent pixels become white."""
    image.seek(0)
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Pillow clips 16-bit values to 255 when converting to "L"; scale them instead.
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if pixels.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(pixels / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    if image.mode in ("L", "1", "P", "RGB", "CMYK", "YCbCr"):
        return image.convert("L")
    return image.convert("RGB").convert("L")


def read_image(source: ImageSource, height: int, width: int) -> np.ndarray:
    """Read an image as a float32 (height, width) array in [0, 1], resized to the model geometry."""
    try:
        with_header_checked = open_image(source)
        gray = to_grayscale(with_header_checked)
        resized = gray.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.float32) / 255.0
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{describe(source)}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{describe(source)}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{describe(source)}: image too large; refused before decoding") from None
    # Pillow's decoders raise many kinds of exception on corrupt data (OSError,
    # SyntaxError, ValueError, struct.error, EOFError, ...): all mean "unreadable".
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{describe(source)}: not a readable image ({reason})") from None


def image_size(path: Union[str, Path]) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding it."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable header
        raise ImageReadError(f"{path}: not a readable image ({type(exc).__name__})") from None


def geometry_for(sizes: list[tuple[int, int]], height: int) -> tuple[int, int]:
    """(height, width) for the model: a fixed height and a width from the median aspect ratio."""
    aspect = float(np.median([w / h for w, h in sizes]))
    width = max(WIDTH_PER_TIME_STEP, round(height * aspect / WIDTH_PER_TIME_STEP) * WIDTH_PER_TIME_STEP)
    return height, width


# ---------------------------------------------------------------------------
# Decoding: greedy CTC with a confidence
# ---------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def greedy_decode(probabilities: np.ndarray, charset: str) -> list[tuple[str, float]]:
    """Greedy CTC decoding of (batch, time, classes) probabilities into (text, confidence).

    The best class is taken at each step; repeats collapse and blanks drop out. The
    confidence is the product of the per-step maximum probabilities along that path.
    """
    best = probabilities.argmax(axis=-1)
    step_max = probabilities.max(axis=-1).astype(np.float64)
    confidence = np.exp(np.log(np.maximum(step_max, 1e-30)).sum(axis=-1))
    changed = np.ones_like(best, dtype=bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = changed & (best != BLANK_INDEX)
    return [
        (decode_indices(row[mask], charset), float(conf))
        for row, mask, conf in zip(best, keep, confidence)
    ]


def character_errors(truth: str, prediction: str) -> int:
    """Levenshtein distance between two strings (insertions, deletions, substitutions)."""
    previous = list(range(len(prediction) + 1))
    for i, t in enumerate(truth, start=1):
        current = [i]
        for j, p in enumerate(prediction, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (t != p)))
        previous = current
    return previous[-1]


def score(truths: list[str], predictions: list[str]) -> tuple[float, float]:
    """(sequence accuracy, character error rate) of predictions against truths."""
    if not truths:
        return math.nan, math.nan
    right = sum(t == p for t, p in zip(truths, predictions))
    errors = sum(character_errors(t, p) for t, p in zip(truths, predictions))
    return right / len(truths), errors / max(1, sum(len(t) for t in truths))


# ---------------------------------------------------------------------------
# Readers: the same reading steps whatever runs the network
# ---------------------------------------------------------------------------


class Reading(NamedTuple):
    """What the model read in one image."""

    text: str
    confidence: float


class BaseReader:
    """Preprocessing and decoding around a network; subclasses say how to run it (`logits`)."""

    def __init__(self, spec: ModelSpec, validation: dict, format_version: int) -> None:
        self.spec = spec
        self.validation = validation
        self.format_version = format_version

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Per-step logits (n, time steps, classes) for a preprocessed (n, height, width) batch."""
        raise NotImplementedError

    def preprocess(self, sources: Sequence[ImageSource]) -> np.ndarray:
        """Read and resize images into a float32 (n, height, width) batch."""
        arrays = [read_image(s, self.spec.height, self.spec.width) for s in sources]
        return np.stack(arrays) if arrays else np.zeros((0, self.spec.height, self.spec.width), np.float32)

    def read_arrays(self, batch: np.ndarray, batch_size: int = 256) -> list[Reading]:
        """Read a preprocessed batch from `preprocess` or `read_image`."""
        if len(batch) == 0:
            return []
        logits = np.concatenate([self.logits(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)])
        return [Reading(text, confidence) for text, confidence in greedy_decode(softmax(logits), self.spec.charset)]

    def read(self, sources: Sequence[ImageSource], batch_size: int = 256) -> list[Reading]:
        """Read images given as paths, bytes, arrays or PIL images."""
        return self.read_arrays(self.preprocess(sources), batch_size)


def existing_model(path: Union[str, Path]) -> Path:
    """`path` as a Path, or a ModelLoadError that says how to make the model."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model; train one first with `python ocr_captcha.py`")
    return path
