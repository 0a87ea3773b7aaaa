"""Pack a folder of labelled captchas into TFRecord shards for streaming or multi-worker training.

    python tools/pack_tfrecords.py captcha_images shards/ --shards 8
    python ocr_captcha.py --data-dir shards/

Each shard holds examples with the features `image` (a PNG or JPEG file's own bytes; other
formats as the grayscale PNG the reader sees), `label` and `path`; OUT_DIR/meta.json
records the charset, geometry, counts and skipped files. Unreadable files are skipped and listed there.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from captcha_reader import records  # noqa: E402
from captcha_reader.base import UserError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Pack SRC_DIR into OUT_DIR and report what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src_dir", help="folder of images named by their labels (or with a labels.csv)")
    parser.add_argument("out_dir", help="folder (or gs:// path) for the shards and meta.json")
    parser.add_argument("--shards", type=int, default=8, help="number of .tfrecord files (default 8)")
    parser.add_argument("--img-height", type=int, default=48, help="height used for the geometry in meta.json")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    try:
        meta = records.pack_folder(args.src_dir, args.out_dir, args.shards, args.img_height)
    except (UserError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    skipped = f", skipped {len(meta['bad_files'])} unreadable" if meta["bad_files"] else ""
    print(f"wrote {meta['count']} images in {meta['shards']} shards to {args.out_dir}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
