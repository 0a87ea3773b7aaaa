"""ocr_core: labels, charset, image reading and greedy CTC decoding (no TensorFlow needed)."""

import io

import numpy as np
import pytest
from PIL import Image

import ocr_core
from ocr_core import ImageReadError


def png_bytes(image: Image.Image, **params) -> bytes:
    """Encode an image as PNG in memory."""
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


@pytest.mark.parametrize("name, label", [
    ("0427.png", "0427"), ("0427_13.png", "0427"), ("dir/ab_c_d.JPG", "ab"), ("x.y.png", "x.y"),
])
def test_label_from_filename(name, label):
    assert ocr_core.label_from_filename(name) == label


def test_list_images_filters_and_sorts(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.webp", "notes.txt", "d.Jpeg", "e.gif", "f.bmp"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in ocr_core.list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp", "d.Jpeg", "e.gif", "f.bmp"]


def test_labels_csv_overrides_file_names(tmp_path):
    for name in ["1.png", "2.png", "0000_3.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text("path,label\n1.png,a_b\n2.png,A/B:\n")
    assert [(p.name, label) for p, label in ocr_core.list_labelled_images(tmp_path)] == [
        ("0000_3.png", "0000"), ("1.png", "a_b"), ("2.png", "A/B:")]


def test_charset_round_trip():
    labels = ["0427", "9x1", "zz"]
    charset = ocr_core.charset_from_labels(labels)
    assert charset == "012479xz"
    for label in labels:
        indices = ocr_core.encode_label(label, charset)
        assert ocr_core.BLANK_INDEX not in indices
        assert ocr_core.decode_indices(indices, charset) == label


@pytest.mark.parametrize("label, steps", [("0427", 4), ("1111", 7), ("1122", 6), ("", 0)])
def test_min_time_steps_counts_repeats(label, steps):
    assert ocr_core.min_time_steps(label) == steps


def one_hot_path(path: list[int], classes: int, peak: float = 0.9) -> np.ndarray:
    """Probabilities with `peak` on the given class at each step, the rest spread evenly."""
    probs = np.full((len(path), classes), (1 - peak) / (classes - 1))
    probs[np.arange(len(path)), path] = peak
    return probs


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    charset = "0123456789"
    # 1 1 _ 1 2 2 _ _ 3 -> "1123" (classes are digit + 1; 0 is the blank)
    path = [2, 2, 0, 2, 3, 3, 0, 0, 4]
    (text, confidence), = ocr_core.greedy_decode(one_hot_path(path, 11)[None], charset)
    assert text == "1123"
    assert confidence == pytest.approx(0.9 ** len(path))


def test_greedy_decode_batch_and_empty_reading():
    charset = "ab"
    probs = np.stack([one_hot_path([0, 0, 0], 3), one_hot_path([1, 0, 2], 3)])
    assert [text for text, _ in ocr_core.greedy_decode(probs, charset)] == ["", "ab"]


def test_softmax_rows_sum_to_one():
    probs = ocr_core.softmax(np.array([[[1000.0, 0.0, -1000.0]]]))
    assert np.allclose(probs.sum(-1), 1) and probs[0, 0, 0] == pytest.approx(1)


def test_score_counts_sequences_and_characters():
    seq_acc, cer = ocr_core.score(["1234", "5678"], ["1234", "568"])
    assert seq_acc == 0.5
    assert cer == pytest.approx(1 / 8)
    assert ocr_core.character_errors("kitten", "sitting") == 3


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA", "I;16", "I", "CMYK"])
def test_read_image_any_mode_gives_geometry_and_range(mode):
    base = Image.linear_gradient("L").resize((80, 30))
    image = base.convert(mode) if mode not in ("I;16", "I") else Image.fromarray(
        (np.asarray(base, dtype=np.uint16) * 257).astype(np.uint16 if mode == "I;16" else np.int32))
    array = ocr_core.read_image(image, 32, 64)
    assert array.shape == (32, 64) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    if mode not in ("1", "P"):
        assert array[-1].mean() > 0.9 and array[0].mean() < 0.1  # the gradient survives scaling


def test_transparent_pixels_become_white():
    image = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 10, 20))
    array = ocr_core.read_image(png_bytes(image), 20, 40)
    assert array[:, 20:].min() == 1.0 and array[:, :8].max() == 0.0


def test_first_frame_of_animation(tmp_path):
    frames = [Image.new("L", (30, 10), 0), Image.new("L", (30, 10), 255)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert ocr_core.read_image(path, 10, 30).max() == 0.0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_every_accepted_format(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    Image.linear_gradient("L").resize((60, 20)).convert("RGB").save(path, format=fmt)
    assert ocr_core.read_image(path, 16, 48).shape == (16, 48)


@pytest.mark.parametrize("data, reason", [
    (b"", "not a readable image"),
    (b"not an image at all", "not a readable image"),
])
def test_unreadable_bytes_raise_image_read_error(data, reason):
    with pytest.raises(ImageReadError, match=reason):
        ocr_core.read_image(data, 32, 64)


def test_truncated_png_raises_image_read_error(tmp_path):
    data = png_bytes(Image.effect_noise((120, 40), 60).convert("L"))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        ocr_core.read_image(path, 32, 64)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageReadError, match="nope.png: no such file"):
        ocr_core.read_image(tmp_path / "nope.png", 32, 64)


def test_geometry_from_median_aspect_ratio():
    assert ocr_core.geometry_for([(160, 60)] * 3 + [(10, 60)], 48) == (48, 128)
    assert ocr_core.geometry_for([(70, 30)], 32) == (32, 76)
