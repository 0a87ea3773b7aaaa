r"""Read captchas with a model trained by ocr_captcha.py.

    python predict_example.py                          # reads test.png with model/ocr_captcha.keras
    python predict_example.py IMG_OR_DIR [...] [--model PATH] [--json]
    python predict_example.py --info                   # what the model knows: charset, geometry, lengths, scores
    python predict_example.py test.png --model model/ocr_captcha.onnx   # light runtime, no TensorFlow
    python predict_example.py --serve [--model model/ocr_captcha.onnx] [--host H] [--port P]   # HTTP service
    python predict_example.py IMG --length 4-6 --charset 0123456789      # read another text format

By default a reading has the format of the model's training labels: their lengths
and charset (a model trained on 4-character labels reads 4 characters). --length
and --charset change that; --greedy takes the best class at each step instead,
any length (the decoding of the SavedModel export).

With one image the output is just its text. With several images, or a folder
(its image files, sorted, not recursive), each line is `path<TAB>text`; with
--json each line is {"path", "text", "confidence", "char_confidences"}. An image
that cannot be read gets a line on stderr (and {"path", "error"} with --json), the
others are still read, and the exit status is 1. Paths and texts are printed on one line
in valid UTF-8: a backslash, control characters (a newline in a file name) and bytes that
are not UTF-8 are escaped as in a Python string literal (`\\`, `\n`, `\xff`); --json gives
them as JSON strings.
"""

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Sequence

from captcha_reader.base import (
    DatasetError,
    ImageReadError,
    UserError,
    printable,
    quiet_when_output_closes,
)
from captcha_reader.decoding import requested_format
from captcha_reader.labels import images_in
from captcha_reader.readers import RUNTIMES, open_reader
from captcha_reader.reading import BaseReader, Reading, named_model
from captcha_reader.settings import DEFAULT_MODEL, OneLineParser

DEFAULT_IMAGE = "test.png"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = OneLineParser(description="Read captcha images with a trained ocr_captcha model.")
    parser.add_argument("inputs", nargs="*", default=[DEFAULT_IMAGE],
                        help=f"image files or folders of images (default: {DEFAULT_IMAGE})")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model file, or base for the shipped base model (default: {DEFAULT_MODEL})")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument("--info", action="store_true", help="print what the model was trained for and exit")
    parser.add_argument("--length", help="allowed text length: 4 or a range such as 4-6 "
                                         "(default: the lengths of the model's training labels)")
    parser.add_argument("--charset", help="allowed characters, a subset of the model's (default: all of them)")
    parser.add_argument("--greedy", action="store_true",
                        help="greedy decoding: the best class at each step, any length and character")
    # Listed for --help only: main() hands a command line with --serve to the service's own parser.
    parser.add_argument("--serve", action="store_true",
                        help="serve --model over HTTP instead (default model/ocr_captcha.onnx; "
                             "python -m captcha_reader.service --help lists its flags)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="keras: TensorFlow; lite: an ONNX export through onnxruntime, without TensorFlow; "
                             "auto (default): lite for an ONNX --model, else keras")
    return parser.parse_args(argv)


def expand_inputs(inputs: list[str]) -> tuple[list[str], bool]:
    """Image paths for files and folders as given, and whether the output needs a path per line."""
    paths: list[str] = []
    for item in inputs:
        if not item:
            raise DatasetError("an empty path among the inputs: name an image file or a folder")
        if Path(item).is_dir():
            paths.extend(map(str, images_in(item)))
        else:
            paths.append(item)
    many = len(inputs) > 1 or any(Path(item).is_dir() for item in inputs)
    return paths, many


def print_info(reader: BaseReader, as_json: bool) -> None:
    """Print the model's charset, geometry, label lengths, validation scores and format version."""
    info = reader.info()
    if as_json:
        print(json.dumps(info))
        return
    for key, value in info.items():
        print(f"{key}: {printable(str(value))}")


def print_results(paths: list[str], results: list[Reading | ImageReadError], many: bool, as_json: bool) -> int:
    """Print each reading on stdout and each failure on stderr, in the order given; return the exit status."""
    status = 0
    for path, result in zip(paths, results):
        if isinstance(result, ImageReadError):
            status = 1
            print(f"error: {result}", file=sys.stderr)
            if as_json:
                print(json.dumps({"path": path, "error": str(result)}))
        elif as_json:
            print(json.dumps({"path": path, **result.as_json()}))
        elif many:
            print(f"{printable(path)}\t{printable(result.text)}")
        else:
            print(printable(result.text))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Read the images named on the command line (or serve them); errors are one line on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--serve" in argv:
        from captcha_reader.service import (
            main as serve,  # FastAPI and uvicorn only when serving
        )

        return serve([arg for arg in argv if arg != "--serve"])
    return quiet_when_output_closes(functools.partial(run_command, argv))


def run_command(argv: Sequence[str]) -> int:
    """Parse the flags and read; a user error ends in one line."""
    args = parse_args(argv)
    try:
        return read_images(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def read_images(args: argparse.Namespace) -> int:
    """Read the images (or print the model's info) as the arguments ask; the exit status."""
    paths, many = ([], False) if args.info else expand_inputs(args.inputs)
    if args.inputs == [DEFAULT_IMAGE] and not args.info and not Path(DEFAULT_IMAGE).exists():
        raise DatasetError(f"{DEFAULT_IMAGE}: no such file; pass an image path or run from the project folder")
    text_format = requested_format(args.charset, args.length, args.greedy)
    reader = open_reader(named_model(args.model), args.runtime)
    if args.info:
        print_info(reader, args.json)
        return 0
    results = reader.read_each(paths, text_format, args.greedy)  # one batch; a bad file fails alone
    return print_results(paths, results, many, args.json)


if __name__ == "__main__":
    sys.exit(main())
