"""Helpers shared by several test files: hand-made images, logits and error checks."""

import io
import os
import random
import socket
import struct
import zlib

import make_diverse_captchas
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import ocr_captcha

PORTS_PER_WORKER = 2000  # free_port(): six workers' blocks fit below 32768


def png_bytes(image: Image.Image, **params) -> bytes:
    """Encode an image as PNG in memory."""
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


def write_text_images(folder, count, seed, charset="0123", lengths=(2, 5)):
    """Clean rendered text of random length: quick to learn, so a short run can prove decoding."""
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    font = ImageFont.load_default(size=22)
    for i in range(count):
        label = "".join(rng.choice(charset) for _ in range(rng.randint(*lengths)))
        image = Image.new("L", (120, 32), 255)
        ImageDraw.Draw(image).text((4 + rng.randint(0, 20), 3), label, font=font, fill=0)
        image.save(folder / f"{label}_{i}.png")
    return folder


def one_error_line(capsys) -> str:
    """The single stderr line of a failed run (asserting there is exactly one and no traceback)."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares a huge grayscale image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def logits_for_path(path: list[int], classes: int) -> np.ndarray:
    """Logits that put almost all probability on one class per step."""
    logits = np.full((len(path), classes), -8.0, dtype=np.float32)
    logits[np.arange(len(path)), path] = 8.0
    return logits


def one_hot_path(path: list[int], classes: int, peak: float = 0.9) -> np.ndarray:
    """Probabilities with `peak` on the given class at each step, the rest spread evenly."""
    probs = np.full((len(path), classes), (1 - peak) / (classes - 1))
    probs[np.arange(len(path)), path] = peak
    return probs


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, from this pytest-xdist worker's own block.

    The blocks lie below the kernel's ephemeral ports (32768 and up): two workers never pick the same
    port, and no outgoing connection takes it between this probe and the server's bind.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    first = 20_000 + PORTS_PER_WORKER * worker
    for port in random.sample(range(first, first + PORTS_PER_WORKER), PORTS_PER_WORKER):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + PORTS_PER_WORKER - 1}")


def train_one_epoch(tmp_path, data_dir, *extra) -> int:
    """Run the training entry point in-process on a folder, one quick epoch."""
    return ocr_captcha.main(["--data-dir", str(data_dir), "--model", str(tmp_path / "out" / "m.keras"),
                             "--epochs", "1", "--batch-size", "16", "--verbose", "0", *extra])


def fonts_missing() -> str:
    """The first font of any style of tools/make_diverse_captchas.py that is not installed, or an empty string."""
    for style in make_diverse_captchas.STYLES.values():
        for name in style.fonts:
            try:
                make_diverse_captchas.font_path(name)
            except make_diverse_captchas.MissingFontError as error:
                return str(error)
    return ""
