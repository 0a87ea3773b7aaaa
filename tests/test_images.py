"""captcha_reader.images: every image mode and format read one way, bombs refused."""

import os
import threading
import tracemalloc

import numpy as np
import pytest
from helpers import bomb_png, png_bytes
from PIL import Image

from captcha_reader.base import ImageReadError
from captcha_reader.images import geometry_for, image_size, read_image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA", "I;16", "I", "CMYK"])
def test_read_image_any_mode_gives_geometry_and_range(mode):
    base = Image.linear_gradient("L").resize((80, 30))
    image = base.convert(mode) if mode not in ("I;16", "I") else Image.fromarray(
        (np.asarray(base, dtype=np.uint16) * 257).astype(np.uint16 if mode == "I;16" else np.int32))
    array = read_image(image, 32, 64)
    assert array.shape == (32, 64) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    if mode not in ("1", "P"):
        assert array[-1].mean() > 0.9 and array[0].mean() < 0.1  # the gradient survives scaling


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 10, 20))
    array = read_image(png_bytes(image), 20, 40)
    assert array[:, 20:].min() == 1.0 and array[:, :8].max() == 0.0


def test_first_frame_of_animation(tmp_path):
    frames = [Image.new("L", (30, 10), 0), Image.new("L", (30, 10), 255)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert read_image(path, 10, 30).max() == 0.0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_every_accepted_format(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.linear_gradient("L").resize((60, 20)).convert("RGB").save(path, format=fmt)
    assert read_image(path, 16, 48).shape == (16, 48)


@pytest.mark.parametrize("data, reason", [
    (b"", "not a readable image"),
    (b"not an image at all", "not a readable image"),
])
def test_unreadable_bytes_raise_image_read_error(data, reason):
    with pytest.raises(ImageReadError, match=reason):
        read_image(data, 32, 64)


def test_truncated_png_raises_image_read_error(tmp_path):
    data = png_bytes(Image.effect_noise((120, 40), 60).convert("L"))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(path, 32, 64)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        read_image(tmp_path / "nope.png", 32, 64)


def test_geometry_from_median_aspect_ratio():
    assert geometry_for([(160, 60)] * 3 + [(10, 60)], 48) == (48, 128)
    assert geometry_for([(70, 30)], 32) == (32, 76)


def test_decompression_bomb_refused_from_header_without_allocating():
    tracemalloc.start()
    with pytest.raises(ImageReadError, match="too large"):
        read_image(bomb_png(), 48, 128)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10_000_000


@pytest.mark.parametrize("side", [5000, 30000])  # over our limit; over Pillow's own too (it raises, not warns)
def test_image_size_refuses_a_bomb_in_one_error(tmp_path, side):
    path = tmp_path / "1234.png"
    path.write_bytes(bomb_png(side, side))
    with pytest.raises(ImageReadError, match="too large"):
        image_size(path)


def test_mixed_sizes_are_resized(reader, tmp_path):
    from PIL import Image
    sizes = [(160, 60), (70, 30), (400, 90), (33, 200)]
    paths = []
    for i, size in enumerate(sizes):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", size, "white").save(paths[-1])
    assert reader.preprocess(paths).shape == (4, reader.spec.height, reader.spec.width)
    assert len(reader.read(paths)) == 4


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM", "SGI", "TIFF", "DDS", "EPS", "QOI"])
def test_formats_we_do_not_document_are_refused_whatever_the_name(tmp_path, fmt):
    path = tmp_path / "1234.png"
    Image.new("RGB", (40, 20), "white").save(path, format=fmt)
    with pytest.raises(ImageReadError, match="not PNG, JPEG, GIF, BMP or WEBP"):
        read_image(path, 16, 48)
    with pytest.raises(ImageReadError, match="not PNG, JPEG, GIF, BMP or WEBP"):
        image_size(path)
    with pytest.raises(ImageReadError, match="not PNG, JPEG, GIF, BMP or WEBP"):
        read_image(path.read_bytes(), 16, 48)


def test_not_a_regular_file_is_refused_instead_of_waited_on(tmp_path):
    fifo = tmp_path / "1234.png"
    os.mkfifo(fifo)
    outcome = {}

    def read_both():
        for name, function in (("read_image", lambda: read_image(fifo, 16, 48)), ("image_size", lambda: image_size(fifo))):
            try:
                function()
                outcome[name] = "read"
            except ImageReadError as error:
                outcome[name] = str(error)

    worker = threading.Thread(target=read_both, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # blocked in open(): give it a writer so that the thread can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=10)
    assert not worker.is_alive() and set(outcome) == {"read_image", "image_size"}, "blocked on a FIFO"
    assert all("not a regular file" in message for message in outcome.values()), outcome


def test_a_file_far_larger_than_any_captcha_is_refused_unread(tmp_path):
    path = tmp_path / "1234.png"
    path.write_bytes(png_bytes(Image.new("L", (40, 20), 255)))
    with open(path, "r+b") as handle:  # sparse: costs no disk, but a reader would read it all
        handle.truncate(2**30)
    with pytest.raises(ImageReadError, match="file too large"):
        read_image(path, 16, 48)


@pytest.mark.parametrize("make", [
    lambda path: str(path), lambda path: path, lambda path: path.read_bytes(),
    lambda path: np.asarray(Image.open(path).convert("L")), lambda path: Image.open(path),
])
def test_a_single_source_is_one_image_not_a_sequence(reader, tiny_data, make):
    path = sorted(tiny_data.iterdir())[0]
    assert reader.read(make(path)) == reader.read([path])


@pytest.mark.parametrize("array", [np.zeros((20, 60), np.int64), np.zeros((20, 60), np.complex64),
                                   np.zeros((20, 60, 5), np.uint8)])
def test_an_array_pillow_cannot_take_is_an_image_read_error(array):
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(array, 16, 48)
