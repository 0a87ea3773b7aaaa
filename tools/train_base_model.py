"""Train the shipped base model: draw its seeded training mixtures, train on them, install it in the package.

    python tools/train_base_model.py                      # about two hours on a 2-core CPU
    python tools/train_base_model.py --stage-1 captcha_reader/base_model/base.keras   # stage 2 only, from a stage-1 model
    python tools/train_base_model.py --count 2000 --epochs 1 --out /tmp/base.keras   # a smoke run

Two stages, each on its own mixture (every image depends only on its part's seed and index, as in
the generators):
  stage 1   48x160 from scratch, 16 epochs: two thirds tools/make_diverse_captchas.py's `base` style
            (18 Debian fonts, colours, rotations, warps, lines, arcs, dots, blur, JPEG; 3 to 8
            characters of 0-9, A-Z, a-z) and one third the `captcha` package's ImageCaptcha (the
            generator of the shipped example data) at widths that fit 3 to 8 characters, from 0-9 A-Z
            a-z or (a quarter of them) digits alone.
  stage 2   fine-tunes stage 1 at 48x128 (the default network's speed), 8 epochs at a lower
            learning rate, on a third each of the `base` style, the `base-extra` style (26 other
            fonts and cuts, case shown by glyph size) and the package, all freshly drawn.
The held-out styles (heldout-a, heldout-b, hard, hard-b) and every public captcha dataset stay out:
they are what the base model is measured on. The model is an ordinary model of ours; its recipe
(both stages) and validation scores are written beside it as base.json.
"""

import argparse
import json
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

from captcha.image import ImageCaptcha
from make_captchas import file_names, render
from make_diverse_captchas import DIGITS, LOWER, STYLES, UPPER, font_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from captcha_reader.base import UserError  # noqa: E402 - the package sits beside tools/
from captcha_reader.settings import TrainingSettings  # noqa: E402

INSTALLED = ROOT / "captcha_reader" / "base_model" / "base.keras"
CHARSET = DIGITS + UPPER + LOWER
LENGTHS = (3, 8)
HEIGHT = 48
CHUNK = 500
# Each part's file-name tag and seed offset; stage 1's two parts keep the seeds they were drawn with.
PARTS = {"base": ("d", 0), "package": ("p", 1), "base-extra": ("e", 2)}


class Stage(NamedTuple):
    """One stage of the base model's training: its mixture (part: share) and its run."""

    parts: dict[str, float]
    seed: int
    width: int
    epochs: int
    learning_rate: float


STAGES = (
    Stage({"base": 2 / 3, "package": 1 / 3}, seed=100, width=160, epochs=16, learning_rate=2e-3),
    Stage({"base": 1 / 3, "base-extra": 1 / 3, "package": 1 / 3}, seed=200, width=128, epochs=8, learning_rate=1e-3),
)


def draw_diverse(style: str, seed: int, start: int, stop: int, out: Path) -> int:
    """Images start..stop-1 of a make_diverse_captchas style, as grayscale PNG named `<label>_<tag><i>.png`."""
    tag = PARTS[style][0]
    for i, _, label, rng in file_names(stop, seed, CHARSET, LENGTHS):
        if i >= start:
            STYLES[style].render(label, rng).convert("L").save(out / f"{label}_{tag}{i}.png")
    return stop - start


def draw_package(_: str, seed: int, start: int, stop: int, out: Path) -> int:
    """Images start..stop-1 of the captcha-package part, named `<label>_p<i>.png`."""
    for i in range(start, stop):
        rng = random.Random(f"package-{seed}-{i}")
        charset = DIGITS if rng.random() < 0.25 else CHARSET
        label = "".join(rng.choice(charset) for _ in range(rng.randint(*LENGTHS)))
        height = rng.randint(50, 70)
        width = round(height * (0.5 * len(label) + 0.8) * rng.uniform(0.9, 1.15))
        render(ImageCaptcha(width=width, height=height), label, rng, out / f"{label}_p{i}.png")
    return stop - start


def part_counts(stage: Stage, count: int) -> dict[str, int]:
    """How many images each part of a stage's mixture of `count` holds."""
    counts = {part: round(count * share) for part, share in stage.parts.items()}
    last = list(counts)[-1]
    counts[last] = count - sum(counts.values()) + counts[last]
    return counts


def draw_mixture(out: Path, counts: dict[str, int], seed: int) -> float:
    """Write a mixture into `out` on every core (a finished folder is reused); returns the seconds it took."""
    done = out / "complete.json"
    recipe = {"parts": counts, "seed": seed}
    if done.is_file() and json.loads(done.read_text()) == recipe:
        print(f"reusing the mixture in {out}")
        return 0.0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(draw_package if part == "package" else draw_diverse, part, seed + PARTS[part][1], start,
             min(start + CHUNK, count)) for part, count in counts.items() for start in range(0, count, CHUNK)]
    started = time.monotonic()
    with ProcessPoolExecutor() as pool:
        drawn = sum(f.result() for f in [pool.submit(job, part, s, a, b, out) for job, part, s, a, b in jobs])
    done.write_text(json.dumps(recipe))
    seconds = time.monotonic() - started
    print(f"drew {drawn} images into {out} in {seconds:.0f} s")
    return seconds


def train_stage(number: int, stage: Stage, count: int, epochs: int | None, work: Path, init_from: Path | None) -> dict:
    """Draw one stage's mixture and train on it (from `init_from` if given); returns the stage's recipe."""
    from captcha_reader import training  # TensorFlow loads only once the arguments are good

    counts = part_counts(stage, count)
    data = work / f"stage{number}_data"
    drawing = draw_mixture(data, counts, stage.seed)
    settings = TrainingSettings(data_dir=str(data), model=str(work / f"stage{number}.keras"),
                                init_from=str(init_from) if init_from else None, epochs=epochs or stage.epochs,
                                batch_size=64, learning_rate=stage.learning_rate, patience=3, seed=stage.seed,
                                val_split=0.025, img_height=HEIGHT, img_width=stage.width, augment=False, verbose=2)
    started = time.monotonic()
    reader = training.train(settings)
    return {"mixture": {"parts (make_diverse_captchas styles; package: captcha ImageCaptcha)": counts,
                        "seed": stage.seed, "charset": CHARSET, "lengths": list(LENGTHS)},
            "training": {**settings.run_fields(), "data_dir": "the mixture above",
                         "init_from": f"stage {number - 1}" if init_from else None,
                         "minutes": round((time.monotonic() - started) / 60, 1)},
            "validation": reader.validation, "drawing_minutes": round(drawing / 60, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "model" / "base_run",
                        help="folder for the mixtures and the runs' files (default model/base_run)")
    parser.add_argument("--out", type=Path, default=INSTALLED, help=f"where the model goes (default {INSTALLED})")
    parser.add_argument("--stage-1", type=Path, help="a stage-1 model to start stage 2 from (its recipe beside it"
                        " as .json), instead of training stage 1")
    parser.add_argument("--count", type=int, default=48_000, help="images in each stage's mixture (default 48,000)")
    parser.add_argument("--epochs", type=int, help="most epochs of each stage (default: 16, then 8)")
    args = parser.parse_args(argv)
    if args.count < 10 or (args.epochs is not None and args.epochs < 1):
        parser.error("--count must be at least 10 and --epochs at least 1")
    if args.stage_1 and not args.stage_1.with_suffix(".json").is_file():
        parser.error(f"--stage-1 {args.stage_1}: its recipe {args.stage_1.with_suffix('.json')} is missing")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train both stages (or stage 2 from a given stage-1 model), install the model and its recipe."""
    args = parse_args(argv)
    for style in ("base", "base-extra"):
        for name in STYLES[style].fonts:
            font_path(name)
    args.work.mkdir(parents=True, exist_ok=True)
    try:
        if args.stage_1:
            stage_1, recipes = args.stage_1, [json.loads(args.stage_1.with_suffix(".json").read_text())]
        else:
            stage_1, recipes = args.work / "stage1.keras", [train_stage(1, STAGES[0], args.count, args.epochs,
                                                                        args.work, None)]
        recipes.append(train_stage(2, STAGES[1], args.count, args.epochs, args.work, stage_1))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(args.work / "stage2.keras", args.out)
    recipe = {"command": " ".join(["python tools/train_base_model.py", *(argv or sys.argv[1:])]),
              "stages": recipes, "validation": recipes[-1]["validation"], "bytes": args.out.stat().st_size}
    args.out.with_suffix(".json").write_text(json.dumps(recipe, indent=2) + "\n")
    minutes = sum(stage["training"]["minutes"] for stage in recipes)
    print(f"installed {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {minutes:.0f} minutes of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
