"""Images: any mode and format in, a float32 (height, width) array in [0, 1] out.

Training, every reader and every export read a captcha through `read_image`, so it is
read the same way everywhere. Only Pillow and NumPy are imported here.
"""

import warnings
from io import BytesIO
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from captcha_reader.base import ImageReadError, width_for

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
# Captchas are small. A header that declares more pixels than this is refused before
# decoding, so that a decompression bomb cannot allocate gigabytes.
MAX_IMAGE_PIXELS = 4096 * 4096

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]


def describe(source: ImageSource) -> str:
    """A short name for an image source, for error messages."""
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def open_image(source: ImageSource, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image lazily and check its declared size against `max_pixels` before any pixel is decoded."""
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
    if width * height > max_pixels:
        raise ImageReadError(
            f"{describe(source)}: image too large ({width}x{height} pixels, limit {max_pixels:,});"
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


def read_image(source: ImageSource, height: int, width: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image as a float32 (height, width) array in [0, 1], resized to the model geometry."""
    try:
        with_header_checked = open_image(source, max_pixels)
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
    except UnidentifiedImageError:
        raise ImageReadError(f"{describe(source)}: not a readable image (unknown format)") from None
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
    return height, width_for(height, float(np.median([w / h for w, h in sizes])))
