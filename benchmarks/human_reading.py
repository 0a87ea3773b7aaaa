"""How well a person reads a family: blind reading sheets, then a score against the file names.

A target such as "99% of fresh images" only means something if a person can read the images.
This measures that ceiling. `sheet` draws a seeded sample of a labelled folder onto numbered
pages (the labels are not shown) and keeps the answer key apart; the reader types one reading
per line into `answers.txt`, in the pages' order; `score` compares and records the result.

    python benchmarks/human_reading.py sheet benchmarks/work/hard_test --count 60 --seed 5 --out reading/hard
    (look at reading/hard/page_*.png, type the readings into reading/hard/answers.txt)
    python benchmarks/human_reading.py score reading/hard --family hard --results benchmarks/results/human_reading.json
"""

import argparse
import json
import random
import sys
from pathlib import Path

from common import load_results, save_results
from PIL import Image, ImageDraw

from captcha_reader.base import DatasetError
from captcha_reader.labels import label_from_filename, list_images
from captcha_reader.verdict import confusions, wilson_interval

PER_PAGE, COLUMNS = 10, 2
SHOWN_HEIGHT, MAX_SHOWN_WIDTH = 125, 700  # pixels: a whole zoom to about this height (a 25-pixel captcha 5x)


def pick_sample(folder: Path, count: int, seed: int) -> list[Path]:
    """A seeded sample of the folder's images, the same for the same folder, count and seed."""
    images = list_images(folder)
    if count > len(images):
        raise SystemExit(f"error: {folder} has {len(images)} images, fewer than --count {count}")
    return random.Random(seed).sample(images, count)


def draw_page(paths: list[Path], first_number: int) -> Image.Image:
    """Numbered, zoomed images on one page, without their labels."""
    images = [Image.open(path).convert("RGB") for path in paths]
    zoom = max(1, min(round(SHOWN_HEIGHT / max(image.height for image in images)),
                      MAX_SHOWN_WIDTH // max(image.width for image in images)))
    cell_w = max(image.width for image in images) * zoom + 60
    cell_h = max(image.height for image in images) * zoom + 10
    rows = -(-len(images) // COLUMNS)
    page = Image.new("RGB", (COLUMNS * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(page)
    for i, image in enumerate(images):
        x, y = (i % COLUMNS) * cell_w, (i // COLUMNS) * cell_h
        draw.text((x + 5, y + cell_h // 2 - 5), str(first_number + i), fill="black")
        page.paste(image.resize((image.width * zoom, image.height * zoom), Image.NEAREST), (x + 50, y + 5))
    return page


def write_sheets(folder: Path, count: int, seed: int, out: Path) -> None:
    """The pages, the answer key and an empty answers file in `out`."""
    sample = pick_sample(folder, count, seed)
    out.mkdir(parents=True, exist_ok=True)
    key = {"folder": str(folder), "seed": seed, "files": [path.name for path in sample],
           "labels": [label_from_filename(path) for path in sample]}
    (out / "key.json").write_text(json.dumps(key, indent=1) + "\n")
    for start in range(0, count, PER_PAGE):
        draw_page(sample[start:start + PER_PAGE], start).save(out / f"page_{start // PER_PAGE}.png")
    answers = out / "answers.txt"
    if not answers.exists():
        answers.write_text("")
    print(f"{count} images on {-(-count // PER_PAGE)} pages in {out}; type one reading per line into {answers}")


def score(out: Path) -> dict:
    """Compare answers.txt with the key: accuracy, its 95% interval and every misread."""
    if not (out / "key.json").is_file() or not (out / "answers.txt").is_file():
        raise SystemExit(f"error: {out} has no key.json and answers.txt: run `sheet` first, then type the readings")
    key = json.loads((out / "key.json").read_text())
    answers = (out / "answers.txt").read_text().split()
    if len(answers) != len(key["labels"]):
        raise SystemExit(f"error: {out / 'answers.txt'} has {len(answers)} readings for {len(key['labels'])} images")
    right = sum(truth == answer for truth, answer in zip(key["labels"], answers))
    low, high = wilson_interval(right, len(answers))
    misreads = [{"number": i, "file": name, "truth": truth, "read": answer}
                for i, (name, truth, answer) in enumerate(zip(key["files"], key["labels"], answers)) if truth != answer]
    pairs = confusions(key["labels"], answers).most_common()
    return {"folder": key["folder"], "seed": key["seed"], "count": len(answers), "right": right,
            "seq_acc": right / len(answers), "interval_95": [low, high], "misreads": misreads,
            "confusions": [[f"{truth}->{read}", n] for (truth, read), n in pairs]}


def print_score(family: str, result: dict) -> None:
    """One table row and the misreads."""
    low, high = result["interval_95"]
    print("| family | images | read right | 95% interval |\n|---|---|---|---|")
    print(f"| {family} | {result['count']} | {result['right']} ({result['seq_acc']:.1%}) | {low:.1%}-{high:.1%} |")
    for row in result["misreads"]:
        print(f"  {row['number']:3d}  {row['truth']:<8} read {row['read']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sheet = commands.add_parser("sheet", help="draw the reading pages of a sample and keep its key")
    sheet.add_argument("folder", type=Path, help="a folder of labelled images (file name = label)")
    sheet.add_argument("--count", type=int, default=60, help="images in the sample (default 60)")
    sheet.add_argument("--seed", type=int, default=0, help="which sample (default 0)")
    sheet.add_argument("--out", type=Path, required=True, help="folder for the pages, key and answers")
    scoring = commands.add_parser("score", help="score answers.txt against the key")
    scoring.add_argument("out", type=Path, help="the folder `sheet` wrote, with answers.txt filled in")
    scoring.add_argument("--family", required=True, help="the name to record the result under")
    scoring.add_argument("--results", type=Path, help="JSON file to add the result to")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Draw sheets or score answers."""
    args = parse_args(argv)
    if args.command == "sheet":
        try:
            write_sheets(args.folder, args.count, args.seed, args.out)
        except DatasetError as error:
            raise SystemExit(f"error: {error}")
        return 0
    result = score(args.out)
    print_score(args.family, result)
    if args.results:
        results = load_results(args.results)
        results[args.family] = result
        save_results(args.results, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
