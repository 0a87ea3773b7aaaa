"""How well a reader reads a family: blind reading sheets, then a score against the labels.

A target such as "99% of fresh images" assumes the images can be read. This measures how many a
reader gets. `sheet` draws a seeded sample of a labelled folder onto numbered pages, without the
labels, and keeps the answer key apart. The reader types one reading per line into `answers.txt`,
in the pages' order, and leaves the line empty for an image they cannot read. `score` compares
the readings with the labels (file names, or `labels.csv` where the folder has one) and records
the result.

    python benchmarks/human_reading.py sheet benchmarks/work/hard_test --count 60 --seed 5 --out reading/hard
    (look at reading/hard/page_*.png, type the readings into reading/hard/answers.txt)
    python benchmarks/human_reading.py score reading/hard --family hard --results benchmarks/results/human_reading.json
"""

import argparse
import json
import math
import random
import sys
from pathlib import Path

from common import load_results, save_results
from PIL import Image, ImageDraw

from captcha_reader.base import UserError
from captcha_reader.images import decode_image
from captcha_reader.labels import list_labelled_images
from captcha_reader.verdict import confusions, wilson_interval

PER_PAGE, COLUMNS = 10, 2
SHOWN_HEIGHT, MAX_SHOWN_WIDTH = 125, 700  # pixels: a whole zoom to about this height (a 25-pixel captcha 5x)
NUMBER_WIDTH, MARGIN = 50, 5  # pixels: the column of image numbers, and the space around each image


class ReadingError(UserError):
    """A sheet or an answers file that cannot be used."""


def pick_sample(folder: Path, count: int, seed: int) -> list[tuple[Path, str]]:
    """A seeded sample of the folder's labelled images, the same for the same folder, count and seed."""
    labelled = list_labelled_images(folder)
    if count > len(labelled):
        raise ReadingError(f"{folder} has {len(labelled)} labelled images, fewer than --count {count}")
    return random.Random(seed).sample(labelled, count)


def draw_page(paths: list[Path], first_number: int) -> Image.Image:
    """Numbered, zoomed images on one page, without their labels."""
    images = [decode_image(path, "RGB") for path in paths]
    tallest, widest = max(image.height for image in images), max(image.width for image in images)
    zoom = max(1, min(round(SHOWN_HEIGHT / tallest), MAX_SHOWN_WIDTH // widest))
    cell_w, cell_h = widest * zoom + NUMBER_WIDTH + 2 * MARGIN, tallest * zoom + 2 * MARGIN
    page = Image.new("RGB", (COLUMNS * cell_w, math.ceil(len(images) / COLUMNS) * cell_h), "white")
    draw = ImageDraw.Draw(page)
    for i, image in enumerate(images):
        x, y = (i % COLUMNS) * cell_w, (i // COLUMNS) * cell_h
        draw.text((x + MARGIN, y + cell_h // 2 - MARGIN), str(first_number + i), fill="black")
        page.paste(image.resize((image.width * zoom, image.height * zoom), Image.NEAREST),
                   (x + NUMBER_WIDTH, y + MARGIN))
    return page


def write_sheets(folder: Path, count: int, seed: int, reading_dir: Path) -> None:
    """The pages, the answer key and an empty answers file in `reading_dir`, which must not hold a sheet yet."""
    if reading_dir.exists() and not reading_dir.is_dir():
        raise ReadingError(f"{reading_dir} is a file, not a folder")
    for kept in ("key.json", "answers.txt"):
        if (reading_dir / kept).exists():
            raise ReadingError(f"{reading_dir / kept} exists: give each sample a folder of its own")
    sample = pick_sample(folder, count, seed)
    pages = [draw_page([path for path, _ in sample[start:start + PER_PAGE]], start + 1)
             for start in range(0, count, PER_PAGE)]
    reading_dir.mkdir(parents=True, exist_ok=True)
    for number, page in enumerate(pages, start=1):
        page.save(reading_dir / f"page_{number:02d}.png")
    key = {"folder": str(folder), "seed": seed, "files": [path.name for path, _ in sample],
           "labels": [label for _, label in sample]}
    (reading_dir / "key.json").write_text(json.dumps(key, indent=1) + "\n")
    (reading_dir / "answers.txt").write_text("")
    print(f"{count} images on {len(pages)} page{'s' * (len(pages) > 1)} in {reading_dir}, numbered from 1; "
          f"type one reading per line into {reading_dir / 'answers.txt'} (an empty line: cannot read it)")


def read_text(path: Path) -> str:
    """A UTF-8 text file, or a ReadingError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReadingError(f"{path} is missing: run `sheet` first, then type the readings") from None
    except (UnicodeDecodeError, OSError) as error:
        raise ReadingError(f"{path}: cannot be read as UTF-8 text ({error.__class__.__name__})") from None


def load_key(reading_dir: Path) -> dict:
    """The key `sheet` wrote."""
    try:
        key = json.loads(read_text(reading_dir / "key.json"))
        files, labels = list(key["files"]), list(key["labels"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ReadingError(f"{reading_dir / 'key.json'} is not a key that `sheet` wrote") from None
    if len(files) != len(labels) or not files:
        raise ReadingError(f"{reading_dir / 'key.json'} is not a key that `sheet` wrote")
    return key


def load_answers(reading_dir: Path, count: int) -> list[str]:
    """One reading per line, in the pages' order; an empty line is an image the reader could not read."""
    path = reading_dir / "answers.txt"
    lines = read_text(path).splitlines()
    answers = [line.strip() for line in lines]
    for number, answer in enumerate(answers, start=1):
        if any(char.isspace() for char in answer):
            raise ReadingError(f"{path}, line {number}: one reading per line, without spaces")
    if len(answers) != count:
        raise ReadingError(f"{path} has {len(answers)} lines for {count} images")
    return answers


def score(reading_dir: Path) -> dict:
    """Compare the answers with the key: accuracy, its 95% interval and every misread."""
    key = load_key(reading_dir)
    labels = key["labels"]
    answers = load_answers(reading_dir, len(labels))
    right = sum(label == answer for label, answer in zip(labels, answers))
    low, high = wilson_interval(right, len(labels))
    misreads = [{"number": number, "file": name, "truth": label, "read": answer}
                for number, (name, label, answer) in enumerate(zip(key["files"], labels, answers), start=1)
                if label != answer]
    pairs = confusions(labels, answers).most_common()
    return {"folder": key["folder"], "seed": key["seed"], "count": len(labels), "right": right,
            "unread": answers.count(""), "seq_acc": right / len(labels), "interval_95": [low, high],
            "misreads": misreads, "confusions": [[f"{truth}->{read}", n] for (truth, read), n in pairs]}


def print_score(family: str, result: dict) -> None:
    """One table row and the misreads."""
    low, high = result["interval_95"]
    print("| family | images | read right | 95% interval |\n|---|---|---|---|")
    print(f"| {family} | {result['count']} | {result['right']} ({result['seq_acc']:.1%}) | {low:.1%}-{high:.1%} |")
    for row in result["misreads"]:
        print(f"  {row['number']:3d}  {row['truth']:<8} read {row['read'] or '(not read)'}")


def record(results_path: Path, family: str, result: dict) -> None:
    """Add the result to the JSON file under the family's name."""
    try:
        results = load_results(results_path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReadingError(f"{results_path} is not a JSON results file") from None
    results[family] = result
    save_results(results_path, results)


def positive_count(text: str) -> int:
    """A number of images, at least 1."""
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of images (at least 1)")
    return count


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sheet = commands.add_parser("sheet", help="draw the reading pages of a sample and keep its key")
    sheet.add_argument("folder", type=Path, help="a folder of labelled images (file name or labels.csv = label)")
    sheet.add_argument("--count", type=positive_count, default=60, help="images in the sample (default 60)")
    sheet.add_argument("--seed", type=int, default=0, help="which sample (default 0)")
    sheet.add_argument("--out", type=Path, required=True, help="a new folder for the pages, key and answers")
    scoring = commands.add_parser("score", help="score answers.txt against the key")
    scoring.add_argument("reading_dir", type=Path, help="the folder `sheet` wrote, with answers.txt filled in")
    scoring.add_argument("--family", required=True, help="the name to record the result under")
    scoring.add_argument("--results", type=Path, help="JSON file to add the result to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Draw sheets or score answers."""
    args = parse_args(argv)
    try:
        if args.command == "sheet":
            write_sheets(args.folder, args.count, args.seed, args.out)
            return 0
        result = score(args.reading_dir)
        print_score(args.family, result)
        if args.results:
            record(args.results, args.family, result)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
