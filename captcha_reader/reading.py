"""Readers: the same reading steps (preprocess, run the network, decode) whatever runs the network."""

import string
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from captcha_reader.base import ImageReadError, ModelLoadError, ModelSpec
from captcha_reader.decoding import Reading, TextFormat, decode, decoding_format
from captcha_reader.images import ImageSource, image_sources, read_image, stack_images

# The shipped base model, which `--init-from base` and `--model base` name (tools/train_base_model.py makes it).
BASE_MODEL_NAME = "base"
BASE_MODEL = Path(__file__).resolve().parent / "base_model" / "base.keras"
# Its input height, capacity and characters (tests/test_base_model.py checks them against the file).
BASE_HEIGHT = 48
BASE_CAPACITY = 1
BASE_CHARSET = string.digits + string.ascii_uppercase + string.ascii_lowercase


class BaseReader:
    """Preprocessing and decoding around a network; subclasses say how to run it (`logits`)."""

    def __init__(self, spec: ModelSpec, validation: dict, format_version: int) -> None:
        self.spec = spec
        self.validation = validation
        self.format_version = format_version

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Per-step logits (n, time steps, classes) for a preprocessed (n, height, width) batch."""
        raise NotImplementedError

    def preprocess(self, sources: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        """Read and resize images (or one image) into a float32 (n, height, width) batch."""
        arrays = [read_image(s, self.spec.height, self.spec.width) for s in image_sources(sources)]
        return stack_images(arrays, self.spec.height, self.spec.width)

    def read_arrays(self, batch: np.ndarray, batch_size: int = 256, text_format: TextFormat | None = None,
                    greedy: bool = False) -> list[Reading]:
        """Read a preprocessed batch from `preprocess` or `read_image`.

        Readings have the model's own text format (its charset, the label lengths seen in
        training) unless `text_format` says otherwise; `greedy` reads any length instead.
        """
        text_format = decoding_format(self.spec, text_format, greedy)  # a bad format fails before the network runs
        readings: list[Reading] = []
        for i in range(0, len(batch), batch_size):
            readings.extend(decode(self.logits(batch[i:i + batch_size]), self.spec, text_format, greedy))
        return readings

    def read(self, sources: ImageSource | Sequence[ImageSource], batch_size: int = 256, text_format: TextFormat | None = None,
             greedy: bool = False) -> list[Reading]:
        """Read images given as paths, bytes, arrays or PIL images (a list of them, or one; see `read_arrays`)."""
        return self.read_arrays(self.preprocess(sources), batch_size, text_format, greedy)

    def read_each(self, sources: Sequence[ImageSource], text_format: TextFormat | None = None,
                  greedy: bool = False) -> list[Reading | ImageReadError]:
        """A reading, or the error that stopped it, for every source: the readable ones in one batch."""
        arrays: dict[int, np.ndarray] = {}
        results: list[Reading | ImageReadError] = []
        for index, source in enumerate(sources):
            try:
                arrays[index] = read_image(source, self.spec.height, self.spec.width)
                results.append(None)
            except ImageReadError as error:
                results.append(error)
        batch = stack_images(list(arrays.values()), self.spec.height, self.spec.width)
        for index, reading in zip(arrays, self.read_arrays(batch, text_format=text_format, greedy=greedy)):
            results[index] = reading
        return results

    def info(self) -> dict:
        """What the model was trained for: charset, geometry, label lengths, validation scores, format."""
        return {**self.spec.to_dict(), "validation": self.validation, "format_version": self.format_version}


def named_model(name: str) -> str:
    """A model named on the command line: "base" is the shipped base model, anything else a path."""
    if name != BASE_MODEL_NAME:
        return name
    if not BASE_MODEL.is_file():
        raise ModelLoadError(f"the base model is not installed at {BASE_MODEL}; "
                             "make it with `python tools/train_base_model.py`")
    return str(BASE_MODEL)


def existing_model(path: Union[str, Path]) -> Path:
    """`path` as a Path, or a ModelLoadError that says how to make the model."""
    path = Path(path)
    if not path.name:  # "", "." or "/": a folder at best
        raise ModelLoadError(f"{str(path)!r}: not a model file; give a path such as model/mine.keras")
    trained = path.with_suffix(".keras")
    if not path.exists() and path.suffix == ".onnx" and trained.is_file():
        raise ModelLoadError(f"{path}: no such model; export it from {trained} with"
                             f" `python ocr_captcha.py --export-lite {path} --model {trained}`, or name {trained} instead")
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model; train one first with `python ocr_captcha.py`")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a model file")
    return path
