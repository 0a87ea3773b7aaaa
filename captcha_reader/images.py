"""Images: any mode and format in, a float32 (height, width) array in [0, 1] out.

Training, every reader and every export read a captcha through `read_image`, so it is
read the same way everywhere. Only Pillow and NumPy are imported here.
"""

import contextlib
import os
import stat
import struct
import warnings
from io import BytesIO
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
from PIL import Image

from captcha_reader.base import ImageReadError, first_line, printable, width_for

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
# The formats Pillow may open, whatever a file's name says: Pillow knows dozens more, and some of
# them start external programs (EPS: Ghostscript) or decode whole images while opening (ICO).
PILLOW_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
# Captchas are small. A header that declares more pixels than this is refused before
# decoding, so that a decompression bomb cannot allocate gigabytes.
MAX_IMAGE_PIXELS = 4096 * 4096
# Nor is a file larger than this read: no image of MAX_IMAGE_PIXELS needs more.
MAX_IMAGE_BYTES = 64 * 2**20

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]


def describe(source: ImageSource) -> str:
    """A short name for an image source, for error messages: one line whatever the file name."""
    if isinstance(source, (str, Path)):
        return printable(str(source))
    return f"<{type(source).__name__}>"


def image_sources(sources: object) -> list:
    """A list of image sources: one path, bytes, 2-D array or PIL image stands for itself, not for its items."""
    if isinstance(sources, (str, Path, bytes, bytearray, Image.Image)):
        return [bytes(sources) if isinstance(sources, bytearray) else sources]
    if isinstance(sources, np.ndarray) and sources.ndim == 2:
        return [sources]
    return list(sources)


def image_bytes(source: Union[str, Path, bytes]) -> bytes:
    """The bytes of an image file or buffer, if small enough to be an image; never read from a FIFO or a device."""
    if isinstance(source, bytes):
        data = source
    else:
        # Opened without blocking, then checked: opening a FIFO for reading would wait for a writer forever.
        descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(descriptor, "rb") as handle:
            kind = os.fstat(descriptor).st_mode
            if stat.S_ISDIR(kind):
                raise ImageReadError(f"{describe(source)}: is a folder, not an image")
            if not stat.S_ISREG(kind):
                raise ImageReadError(f"{describe(source)}: not a regular file")
            data = handle.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageReadError(f"{describe(source)}: file too large (more than {MAX_IMAGE_BYTES:,} bytes)")
    return data


def check_pixels(image: Image.Image, source: ImageSource, max_pixels: int) -> Image.Image:
    """The image, if its size is within `max_pixels`; refused before its pixels are decoded otherwise."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageReadError(f"{describe(source)}: empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{describe(source)}: image too large ({width}x{height} pixels, limit {max_pixels:,});"
            " refused before decoding"
        )
    return image


def open_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image lazily, as one of PILLOW_FORMATS, and check its size before any pixel is decoded."""
    if isinstance(source, Image.Image):
        return check_pixels(source, source, max_pixels)
    if isinstance(source, np.ndarray):
        try:
            image = Image.fromarray(source)
        except TypeError:  # a dtype or shape Pillow has no mode for
            raise ImageReadError(f"{describe(source)}: not a readable image (an array of {source.dtype}, shape"
                                 f" {source.shape}; give uint8 pixels, 2-D or with 3 or 4 channels)") from None
        return check_pixels(image, source, max_pixels)
    with warnings.catch_warnings():
        # Pillow only warns below twice its own limit; ours is lower and checked just after.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(BytesIO(image_bytes(source)), formats=PILLOW_FORMATS)
        except Image.UnidentifiedImageError:
            raise ImageReadError(f"{describe(source)}: not a readable image (not PNG, JPEG, GIF, BMP or WEBP)") from None
    return check_pixels(image, source, max_pixels)


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


# What Pillow's decoders raise on corrupt data (its own fuzz tests accept the same): all mean
# "unreadable". Anything else is a bug of ours.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, struct.error, EOFError, OverflowError, NotImplementedError)


@contextlib.contextmanager
def read_errors(source: ImageSource) -> Iterator[None]:
    """Turn what opening or decoding `source` raises for a bad file into one ImageReadError naming it."""
    try:
        yield
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{describe(source)}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{describe(source)}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{describe(source)}: image too large; refused before decoding") from None
    except DECODE_ERRORS as exc:
        raise ImageReadError(f"{describe(source)}: not a readable image ({first_line(exc)})") from None


def decode_image(source: ImageSource, mode: str = "L", max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The image decoded as the model reads it ("L", 8-bit grayscale) or for display ("RGB"); else ImageReadError."""
    with read_errors(source):
        image = open_image(source, max_pixels)
        return to_grayscale(image) if mode == "L" else image.convert(mode)


def read_image(source: ImageSource, height: int, width: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image as a float32 (height, width) array in [0, 1], resized to the model geometry."""
    gray = decode_image(source, "L", max_pixels)
    resized = gray.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32) / 255.0


def stack_images(arrays: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Preprocessed images as one float32 (n, height, width) batch; an empty batch when there are none."""
    return np.stack(arrays) if len(arrays) else np.zeros((0, height, width), np.float32)


def image_size(path: Union[str, Path]) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding it; refused as read_image would refuse it."""
    with read_errors(path), open_image(path) as image:
        return image.size


def geometry_for(sizes: list[tuple[int, int]], height: int) -> tuple[int, int]:
    """(height, width) for the model: a fixed height and a width from the median aspect ratio."""
    return height, width_for(height, float(np.median([w / h for w, h in sizes])))
