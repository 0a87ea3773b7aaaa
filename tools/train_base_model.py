"""Train the shipped base model: draw its seeded training mixture, train on it, install it in the package.

    python tools/train_base_model.py    # about an hour on a 2-core CPU (base.json: 5 min drawing, 53 training)
    python tools/train_base_model.py --count 2000 --epochs 1 --out /tmp/base.keras   # a smoke run

The mixture (every image depends only on its part's seed and index, as in the generators):
  diverse   tools/make_diverse_captchas.py's `base` style: 18 Debian fonts, colours, rotations,
            warps, lines, arcs, dots, blur, JPEG; 3 to 8 characters of 0-9, A-Z, a-z.
  package   the `captcha` package's ImageCaptcha (the generator of the shipped example data) at
            widths that fit 3 to 8 characters, from 0-9 A-Z a-z or (a quarter of them) digits alone.
The held-out styles (heldout-a, heldout-b, heldout-plain, hard, hard-b, hard2, hard2-b) and every
public captcha dataset stay out of it: they are what the base model is measured on. The model is
an ordinary model of ours, 48x160 pixels; its recipe and validation scores are written beside it
as base.json.
"""

import argparse
import json
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from captcha.image import ImageCaptcha
from make_captchas import file_names, render
from make_diverse_captchas import BASE_FONTS, DIGITS, STYLES, font_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from captcha_reader.base import UserError  # noqa: E402 - the package sits beside tools/
from captcha_reader.reading import BASE_CHARSET, BASE_HEIGHT, BASE_MODEL  # noqa: E402
from captcha_reader.settings import SCRATCH, TrainingSettings  # noqa: E402

INSTALLED = BASE_MODEL
CHARSET = BASE_CHARSET  # the characters and height the package expects of its base model
LENGTHS = (3, 8)
HEIGHT, WIDTH = BASE_HEIGHT, 160
CHUNK = 500


def draw_diverse(seed: int, start: int, stop: int, out: Path) -> int:
    """Images start..stop-1 of the diverse part, as grayscale PNG named `<label>_d<i>.png`."""
    names = file_names(stop, seed, CHARSET, LENGTHS)
    for i, _, label, rng in names:
        if i >= start:
            STYLES["base"].render(label, rng).convert("L").save(out / f"{label}_d{i}.png")
    return stop - start


def draw_package(seed: int, start: int, stop: int, out: Path) -> int:
    """Images start..stop-1 of the captcha-package part, named `<label>_p<i>.png`."""
    for i in range(start, stop):
        rng = random.Random(f"package-{seed}-{i}")
        charset = DIGITS if rng.random() < 0.25 else CHARSET
        label = "".join(rng.choice(charset) for _ in range(rng.randint(*LENGTHS)))
        height = rng.randint(50, 70)
        width = round(height * (0.5 * len(label) + 0.8) * rng.uniform(0.9, 1.15))
        render(ImageCaptcha(width=width, height=height), label, rng, out / f"{label}_p{i}.png")
    return stop - start


def draw_mixture(out: Path, diverse: int, package: int, seed: int) -> float:
    """Write the whole mixture into `out` on every core (a finished folder is reused); returns the seconds it took."""
    done = out / "complete.json"
    recipe = {"diverse": diverse, "package": package, "seed": seed}
    if done.is_file() and json.loads(done.read_text()) == recipe:
        print(f"reusing the mixture in {out}")
        return 0.0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(draw_diverse, seed, s, min(s + CHUNK, diverse)) for s in range(0, diverse, CHUNK)]
    jobs += [(draw_package, seed + 1, s, min(s + CHUNK, package)) for s in range(0, package, CHUNK)]
    started = time.monotonic()
    with ProcessPoolExecutor() as pool:
        drawn = sum(f.result() for f in [pool.submit(job, s, a, b, out) for job, s, a, b in jobs])
    done.write_text(json.dumps(recipe))
    seconds = time.monotonic() - started
    print(f"drew {drawn} images into {out} in {seconds:.0f} s")
    return seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "model" / "base_run",
                        help="folder for the mixture and the run's files (default model/base_run)")
    parser.add_argument("--out", type=Path, default=INSTALLED, help=f"where the model goes (default {INSTALLED})")
    parser.add_argument("--count", type=int, default=48_000, help="images in the mixture (default 48,000)")
    parser.add_argument("--epochs", type=int, default=16, help="most epochs (default 16)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the mixture and of training (default 100)")
    args = parser.parse_args(argv)
    if args.count < 10 or args.epochs < 1:
        parser.error("--count must be at least 10 and --epochs at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Draw the mixture, train on it, install the model and its recipe."""
    args = parse_args(argv)
    from captcha_reader import training  # TensorFlow loads only once the arguments are good

    for name in BASE_FONTS:
        font_path(name)
    diverse = args.count * 2 // 3
    data = args.work / "data"
    drawing = draw_mixture(data, diverse, args.count - diverse, args.seed)
    settings = TrainingSettings(data_dir=str(data), model=str(args.work / "run.keras"), init_from=SCRATCH,
                                epochs=args.epochs, batch_size=64, patience=3, seed=args.seed, val_split=0.025,
                                img_height=HEIGHT, img_width=WIDTH, augment=False, verbose=2)
    started = time.monotonic()
    try:
        reader = training.train(settings)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    minutes = (time.monotonic() - started) / 60
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.work / "run.keras", args.out)
    recipe = {"command": " ".join(["python tools/train_base_model.py", *(argv or sys.argv[1:])]),
              "mixture": {"diverse (make_diverse_captchas base style)": diverse,
                          "package (captcha ImageCaptcha, 3-8 characters)": args.count - diverse,
                          "seed": args.seed, "charset": CHARSET, "lengths": list(LENGTHS)},
              "training": {**settings.run_fields(), "data_dir": "the mixture above", "minutes": round(minutes, 1)},
              "validation": reader.validation, "bytes": args.out.stat().st_size,
              "drawing_minutes": round(drawing / 60, 1)}
    args.out.with_suffix(".json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"installed {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {minutes:.0f} minutes of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
