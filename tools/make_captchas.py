"""Generate a seeded folder of text captchas whose file names are their labels.

    python tools/make_captchas.py --out captcha_images --count 24000 --seed 0

Image i depends only on (seed, i), so a larger --count extends an existing set
with the same first images. Labels stay unique while the label space allows it;
after that a file is named `<label>_<i>.png`. Files are stored as optimised
8-bit grayscale PNG: the model reads grayscale, and this is a third of the
size of the RGB files that the `captcha` package writes.
"""

import argparse
import random
import sys
import unittest.mock
from pathlib import Path

import captcha.image
from captcha.image import ImageCaptcha

LABEL_TRIES = 100
DEFAULT_CHARSET = "0123456789"
DEFAULT_LENGTHS = (4, 4)


class SeededSecrets:
    """Stands in for the `secrets` module inside `captcha.image`, drawing from a seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def randbelow(self, n: int) -> int:
        """Return a random int in [0, n)."""
        return self._rng.randrange(n)

    def randbits(self, k: int) -> int:
        """Return a random int with k random bits."""
        return self._rng.getrandbits(k)

    def choice(self, seq):
        """Return a random element of a non-empty sequence."""
        return self._rng.choice(seq)


def parse_length(text: str) -> tuple[int, int]:
    """Parse `4` or `4-6` into an inclusive (min, max) label length."""
    low, _, high = text.partition("-")
    try:
        lengths = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"length must look like 4 or 4-6, got {text!r}") from None
    if not 1 <= lengths[0] <= lengths[1]:
        raise argparse.ArgumentTypeError(f"length must look like 4 or 4-6, got {text!r}")
    return lengths


def random_label(rng: random.Random, charset: str, lengths: tuple[int, int]) -> str:
    """Draw one label of a random length in `lengths` from `charset`."""
    length = rng.randint(*lengths)
    return "".join(rng.choice(charset) for _ in range(length))


def file_names(count: int, seed: int, charset: str, lengths: tuple[int, int]):
    """Yield (index, file stem, label, generator) for images 0..count-1, unique labels while possible."""
    used: set[str] = set()
    for i in range(count):
        rng = random.Random(f"{seed}-{i}")
        candidates = [random_label(rng, charset, lengths) for _ in range(LABEL_TRIES)]
        label = next((c for c in candidates if c not in used), None)
        stem = label if label is not None else f"{candidates[0]}_{i}"
        label = label or candidates[0]
        used.add(label)
        yield i, stem, label, rng


def render(generator: ImageCaptcha, label: str, rng: random.Random, path: Path) -> None:
    """Draw `label` with the captcha package, seeded by `rng`, and save it as grayscale PNG."""
    with unittest.mock.patch.object(captcha.image, "secrets", SeededSecrets(rng)):
        image = generator.generate_image(label)
    image.convert("L").save(path, format="PNG", optimize=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the images into")
    parser.add_argument("--count", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--length", type=parse_length, default=DEFAULT_LENGTHS, help="label length: 4 or a range such as 4-6 (default 4)")
    parser.add_argument("--charset", default=DEFAULT_CHARSET, help="characters to draw from (default 0123456789)")
    parser.add_argument("--width", type=int, default=160, help="image width in pixels (default 160)")
    parser.add_argument("--height", type=int, default=60, help="image height in pixels (default 60)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not args.charset or len(set(args.charset)) != len(args.charset):
        parser.error("--charset must be non-empty and have no repeated characters")
    if any(c in '/\\:_*?"<>|.' or not c.isprintable() or c.isspace() for c in args.charset):
        parser.error("--charset holds a character that cannot stand in a file name")
    return args


def main(argv: list[str] | None = None) -> int:
    """Write the requested captchas and report how many."""
    args = parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    generator = ImageCaptcha(width=args.width, height=args.height)
    for _, stem, label, rng in file_names(args.count, args.seed, args.charset, args.length):
        render(generator, label, rng, args.out / f"{stem}.png")
    print(f"wrote {args.count} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
