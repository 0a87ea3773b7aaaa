"""Fuzz the shared image reader: whatever the bytes, it returns a valid array or raises ImageReadError."""

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captcha_reader.base import ImageReadError
from captcha_reader.images import read_image

CI_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
DEEP_EXAMPLES = 20_000
MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F", "YCbCr"]
FORMATS = {"PNG": ["1", "L", "P", "RGB", "RGBA", "LA", "I;16"], "JPEG": ["L", "RGB", "CMYK"],
           "GIF": ["L", "P"], "BMP": ["1", "L", "P", "RGB"], "WEBP": ["RGB", "RGBA"]}


def encoded_images():
    """Strategy: a small random image in a random mode, encoded in an accepted format."""
    def build(fmt, mode_index, width, height, seed):
        modes = FORMATS[fmt]
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(modes[mode_index % len(modes)])
        out = io.BytesIO()
        image.save(out, format=fmt)
        return out.getvalue()
    return st.builds(build, st.sampled_from(sorted(FORMATS)), st.integers(0, 7), st.integers(1, 90),
                     st.integers(1, 40), st.integers(0, 2**32 - 1))


def damaged(data: bytes, draw) -> bytes:
    """Truncate, flip bytes in, or splice random bytes into an encoded image."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "intact"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "flip":
        position = draw(st.integers(0, len(data) - 1))
        return data[:position] + bytes([data[position] ^ draw(st.integers(1, 255))]) + data[position + 1:]
    if kind == "splice":
        position = draw(st.integers(0, len(data)))
        return data[:position] + draw(st.binary(max_size=64)) + data[position:]
    return data


@st.composite
def hostile_bytes(draw):
    """Random bytes, or a real image that may be truncated or corrupted."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    return damaged(draw(encoded_images()), draw)


def check_reader(data: bytes) -> None:
    """The property: a float32 array in [0, 1] of the asked shape, or ImageReadError."""
    try:
        array = read_image(data, 24, 64)
    except ImageReadError as error:
        assert str(error)
        return
    assert array.shape == (24, 64) and array.dtype == np.float32
    assert np.isfinite(array).all() and 0.0 <= array.min() and array.max() <= 1.0


@settings(max_examples=CI_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bytes())
def test_reader_never_raises_anything_else(data):
    check_reader(data)


@settings(max_examples=CI_EXAMPLES, deadline=None)
@given(st.sampled_from(MODES), st.integers(1, 300), st.integers(1, 120))
def test_reader_handles_every_mode_and_size(mode, width, height):
    image = Image.new("L", (width, height), 128).convert(mode) if mode not in ("I;16", "I", "F") else Image.new(
        mode, (width, height))
    array = read_image(image, 24, 64)
    assert array.shape == (24, 64)


@pytest.mark.deep
@settings(max_examples=DEEP_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bytes())
def test_reader_deep_fuzz(data):
    check_reader(data)
