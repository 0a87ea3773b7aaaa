"""tools/make_diverse_captchas.py: seeded, styled, labels of the style's lengths and charset."""

import make_diverse_captchas
import pytest
from helpers import fonts_missing

from captcha_reader.images import image_size
from captcha_reader.labels import label_from_filename


pytestmark = pytest.mark.skipif(bool(fonts_missing()), reason=f"{fonts_missing()} (bash tools/system_packages.sh)")


def generate(folder, *args) -> dict[str, bytes]:
    """Run the generator into `folder` and return {file name: bytes}."""
    assert make_diverse_captchas.main(["--out", str(folder), *args]) == 0
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files_and_count_extends(tmp_path):
    first = generate(tmp_path / "a", "--count", "4", "--seed", "3")
    second = generate(tmp_path / "b", "--count", "6", "--seed", "3")
    assert len(first) == 4 and all(second[name] == data for name, data in first.items())
    other = generate(tmp_path / "c", "--count", "4", "--seed", "4")
    assert set(first.values()).isdisjoint(other.values())


@pytest.mark.parametrize("style", sorted(make_diverse_captchas.STYLES))
def test_labels_follow_the_style(tmp_path, style):
    preset = make_diverse_captchas.STYLES[style]
    files = generate(tmp_path, "--count", "12", "--seed", "1", "--style", style)
    labels = [label_from_filename(name) for name in files]
    assert all(preset.lengths[0] <= len(label) <= preset.lengths[1] for label in labels)
    assert set("".join(labels)) <= set(preset.charset)
    sizes = {"hard": ((55, 65), (22, 28)), "hard2": ((76, 86), (30, 34)), "hard2-b": ((78, 88), (31, 35))}
    if style in sizes:
        (low_width, high_width), (low_height, high_height) = sizes[style]
        assert all(low_width <= width <= high_width and low_height <= height <= high_height
                   for width, height in map(image_size, tmp_path.iterdir()))


def test_length_and_charset_override(tmp_path):
    files = generate(tmp_path, "--count", "8", "--length", "3-8", "--charset", "xyz")
    labels = [label_from_filename(name) for name in files]
    assert all(3 <= len(label) <= 8 and set(label) <= set("xyz") for label in labels)


def test_styles_differ_and_held_out_fonts_are_not_in_base():
    styles = make_diverse_captchas.STYLES
    assert len({style.render for style in styles.values()}) == len(styles)
    held_out = ("heldout-a", "heldout-b", "heldout-plain")
    for name in held_out:
        assert not set(styles[name].fonts) & set(styles["base"].fonts)
    assert len({font for name in held_out for font in styles[name].fonts}) == sum(len(styles[n].fonts) for n in held_out)


def test_same_label_looks_different_in_each_style(tmp_path):
    images = {}
    for style in make_diverse_captchas.STYLES:
        files = generate(tmp_path / style, "--count", "1", "--style", style, "--charset", "AB", "--length", "4")
        images[style] = next(iter(files.values()))
    assert len(set(images.values())) == len(images)


def test_missing_font_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(make_diverse_captchas, "FONT_DIRS", (tmp_path / "no-fonts",))
    make_diverse_captchas.font_path.cache_clear()
    try:
        assert make_diverse_captchas.main(["--out", str(tmp_path / "out"), "--count", "1"]) == 1
    finally:
        make_diverse_captchas.font_path.cache_clear()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: font ") and "apt-get install -y fonts-" in err and "\n" not in err
