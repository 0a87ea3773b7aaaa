"""captcha_reader.reading: readers read the readable images in one batch and report the others in place."""

import numpy as np
import pytest
from helpers import png_bytes
from PIL import Image

from captcha_reader.base import ImageReadError, ModelSpec, TextFormatError
from captcha_reader.decoding import TextFormat
from captcha_reader.reading import BaseReader


class CountingReader(BaseReader):
    """A reader whose network always says '7' and counts its calls."""

    def __init__(self) -> None:
        super().__init__(ModelSpec("07", 16, 16, 1, min_label_length=1), {}, 2)
        self.batches: list[int] = []

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """'7' at the first step, the blank after it."""
        self.batches.append(len(batch))
        logits = np.full((len(batch), 4, 3), -9.0, np.float32)
        logits[:, 0, 2] = 9.0
        logits[:, 1:, 0] = 9.0
        return logits


def test_read_each_runs_the_network_once_and_keeps_errors_in_place():
    reader = CountingReader()
    good = png_bytes(Image.new("L", (16, 16), 255))
    results = reader.read_each([good, b"not an image", good])
    assert reader.batches == [2]
    assert [r.text for r in (results[0], results[2])] == ["7", "7"]
    assert isinstance(results[1], ImageReadError)


def test_read_each_of_nothing_readable_runs_no_network():
    reader = CountingReader()
    assert all(isinstance(r, ImageReadError) for r in reader.read_each([b"x", b"y"]))
    assert reader.batches == []


@pytest.mark.parametrize("text_format, greedy", [(TextFormat("7", (1, 1)), True), (TextFormat("9", None), False)])
def test_a_format_that_cannot_be_decoded_fails_before_the_network_runs(text_format, greedy):
    reader = CountingReader()
    with pytest.raises(TextFormatError):
        reader.read_arrays(np.zeros((3, 16, 16, 1), np.float32), text_format=text_format, greedy=greedy)
    assert reader.batches == []
