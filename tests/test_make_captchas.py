"""tools/make_captchas.py: seeded, extendable, unique labels."""

import make_captchas

from captcha_reader.images import image_size
from captcha_reader.labels import label_from_filename


def generate(folder, *args):
    """Run the generator into `folder` and return {file name: bytes}."""
    assert make_captchas.main(["--out", str(folder), *args]) == 0
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path):
    first = generate(tmp_path / "a", "--count", "12", "--seed", "3")
    second = generate(tmp_path / "b", "--count", "12", "--seed", "3")
    assert first == second
    assert len(first) == 12


def test_other_seed_gives_other_images(tmp_path):
    first = generate(tmp_path / "a", "--count", "6", "--seed", "3")
    second = generate(tmp_path / "b", "--count", "6", "--seed", "4")
    assert set(first.values()).isdisjoint(second.values())


def test_larger_count_extends_the_set(tmp_path):
    small = generate(tmp_path / "a", "--count", "5", "--seed", "9")
    large = generate(tmp_path / "b", "--count", "9", "--seed", "9")
    assert all(large[name] == data for name, data in small.items())


def test_labels_unique_while_possible_then_suffixed(tmp_path):
    names = generate(tmp_path / "a", "--count", "5", "--seed", "1", "--charset", "ab", "--length", "1")
    stems = [n.removesuffix(".png") for n in names]
    assert sorted(s for s in stems if "_" not in s) == ["a", "b"]
    assert len([s for s in stems if "_" in s]) == 3
    assert {label_from_filename(n) for n in names} == {"a", "b"}


def test_variable_length_and_geometry(tmp_path):
    names = generate(tmp_path / "a", "--count", "30", "--seed", "2", "--length", "4-6",
                     "--charset", "xyz123", "--width", "200", "--height", "50")
    lengths = {len(label_from_filename(n)) for n in names}
    assert lengths == {4, 5, 6}
    assert all(set(label_from_filename(n)) <= set("xyz123") for n in names)
    assert image_size(tmp_path / "a" / next(iter(names))) == (200, 50)
