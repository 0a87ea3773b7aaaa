"""Readers: the same reading steps (preprocess, run the network, decode) whatever runs the network."""

from pathlib import Path
from typing import NamedTuple, Sequence, Union

import numpy as np

from captcha_reader.base import ModelLoadError, ModelSpec
from captcha_reader.decoding import greedy_decode, softmax
from captcha_reader.images import ImageSource, image_sources, read_image


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

    def preprocess(self, sources: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        """Read and resize images (or one image) into a float32 (n, height, width) batch."""
        arrays = [read_image(s, self.spec.height, self.spec.width) for s in image_sources(sources)]
        return np.stack(arrays) if arrays else np.zeros((0, self.spec.height, self.spec.width), np.float32)

    def read_arrays(self, batch: np.ndarray, batch_size: int = 256) -> list[Reading]:
        """Read a preprocessed batch from `preprocess` or `read_image`."""
        if len(batch) == 0:
            return []
        logits = np.concatenate([self.logits(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)])
        return [Reading(text, confidence) for text, confidence in greedy_decode(softmax(logits), self.spec.charset)]

    def read(self, sources: ImageSource | Sequence[ImageSource], batch_size: int = 256) -> list[Reading]:
        """Read images given as paths, bytes, arrays or PIL images (a list of them, or one)."""
        return self.read_arrays(self.preprocess(sources), batch_size)

    def info(self) -> dict:
        """What the model was trained for: charset, geometry, longest label, validation scores, format."""
        return {**self.spec.to_dict(), "validation": self.validation, "format_version": self.format_version}


def existing_model(path: Union[str, Path]) -> Path:
    """`path` as a Path, or a ModelLoadError that says how to make the model."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model; train one first with `python ocr_captcha.py`")
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a model file")
    return path
