"""TFRecord shards for data that outgrows one folder, and image decoding in TensorFlow ops.

    python tools/pack_tfrecords.py captcha_images shards/ --shards 8
    python ocr_captcha.py --data-dir shards/        # trains from the shards, streaming

A shard folder holds `*.tfrecord` files of examples with the features `image` (the
file's bytes for PNG and JPEG, the grayscale PNG that read_image sees for other formats),
`label` and `path`, and `meta.json` (charset, geometry, counts, skipped files). Files are found with tf.io.gfile, so cloud paths such as gs://...
work where TensorFlow supports them; shards are split across workers by
tf.distribute's auto-sharding. Images are decoded by `graph_read_image`, the
TensorFlow twin of images.read_image (tested for parity), which the SavedModel
export uses too. It decodes only PNG, JPEG and BMP of at most MAX_GRAPH_PIXELS, and
checks both before the decoder runs; training checks every record (features, label
characters, image) in one pass before its first step.
"""

import io
import json
from pathlib import Path

from captcha_reader.base import (
    DEFAULT_MIN_LABEL_LENGTH,
    DatasetError,
    ImageReadError,
    ModelSpec,
    width_for,
)
from captcha_reader.data import check_some_readable, labelled_items
from captcha_reader.images import (
    describe,
    geometry_for,
    image_bytes,
    image_size,
    open_image,
    read_image,
    to_grayscale,
)
from captcha_reader.labels import charset_from_labels, min_time_steps
from captcha_reader.tf_import import tf

META_FILE = "meta.json"
# What graph_read_image decodes, and how many pixels at most: its integer arithmetic costs
# about 100 bytes a pixel, and a captcha needs tens of thousands of pixels, not millions.
GRAPH_FORMATS = "PNG, JPEG and BMP"
MAX_GRAPH_PIXELS = 1024 * 1024
# The fields of meta.json that training reads, and their types.
META_FIELDS = {"charset": str, "max_label_length": int, "most_time_steps_label": str, "height": int, "width": int,
               "count": int, "shards": int}
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string),
    "path": tf.io.FixedLenFeature([], tf.string),
}


# ---------------------------------------------------------------------------
# Decoding in the graph: the twin of images.read_image
# ---------------------------------------------------------------------------


def header_number(data: tf.Tensor, start: int, length: int, little_endian: bool) -> tf.Tensor:
    """An unsigned integer stored in `data` at `start`, or -1 when the data is too short."""

    def read() -> tf.Tensor:
        """The integer, once the data is known to be long enough."""
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
        order = range(length) if little_endian else reversed(range(length))
        return tf.reduce_sum(raw * tf.constant([256 ** i for i in order], tf.int64))

    return tf.cond(tf.strings.length(data) >= start + length, read, lambda: tf.constant(-1, tf.int64))


def declared_size(data: tf.Tensor) -> tf.Tensor:
    """(width, height) declared by a PNG, GIF, BMP or JPEG header, read without decoding; (-1, -1) if unknown."""

    def bmp() -> tf.Tensor:
        """A BMP's size; a negative height (a top-down bitmap) counts as its absolute value."""
        height = header_number(data, 22, 4, True)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # negative: a top-down bitmap
        return tf.stack([header_number(data, 18, 4, True), height])

    def jpeg() -> tf.Tensor:
        """A JPEG's size from its frame header."""
        return tf.cast(tf.reverse(tf.image.extract_jpeg_shape(data)[:2], [0]), tf.int64)

    return tf.case([
        (is_png(data), lambda: tf.stack([header_number(data, 16, 4, False), header_number(data, 20, 4, False)])),
        (tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"),
         lambda: tf.stack([header_number(data, 6, 2, True), header_number(data, 8, 2, True)])),
        (is_bmp(data), bmp),
        (is_jpeg(data), jpeg),
    ], default=lambda: tf.constant([-1, -1], tf.int64))


def is_png(data: tf.Tensor) -> tf.Tensor:
    """True for bytes that start like a PNG file: the signature, then the IHDR chunk that holds the size."""
    return tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n") & tf.equal(tf.strings.substr(data, 12, 4), b"IHDR")


def is_jpeg(data: tf.Tensor) -> tf.Tensor:
    """True for bytes that start like a JPEG file (as TensorFlow's decoder recognises one)."""
    return tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")


def is_bmp(data: tf.Tensor) -> tf.Tensor:
    """True for bytes that start like a BMP file."""
    return tf.equal(tf.strings.substr(data, 0, 2), b"BM")


def checked_before_decoding(data: tf.Tensor) -> tf.Tensor:
    """`data`, released to the decoder only once its format and declared size are known to be acceptable.

    An assertion that nothing depends on does not stop a decoder running beside it: the
    decoder's input waits on both checks through control dependencies instead. GIF and WebP
    are refused: a GIF's frames, each decoded, and a WebP's chunks may declare other sizes
    than the header that is cheap to read.
    """
    known = is_png(data) | is_jpeg(data) | is_bmp(data)
    format_checked = tf.debugging.Assert(known, [f"only {GRAPH_FORMATS} images are read in the graph"])
    with tf.control_dependencies([format_checked]):
        size = declared_size(data)
    small = (tf.reduce_all(size >= 1) & tf.reduce_all(size <= MAX_GRAPH_PIXELS)
             & (tf.reduce_prod(tf.minimum(size, MAX_GRAPH_PIXELS)) <= MAX_GRAPH_PIXELS))
    size_checked = tf.debugging.Assert(small, [
        f"image too large (limit {MAX_GRAPH_PIXELS:,} pixels) or empty; refused before decoding; width, height:",
        size])
    with tf.control_dependencies([size_checked]):
        return tf.identity(data)


def graph_read_image(data: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """images.read_image in TensorFlow ops: checks before decoding, first frame, white under transparency, grayscale, resize."""
    image = tf.cast(tf.io.decode_image(checked_before_decoding(data), expand_animations=False), tf.int32)  # 1 to 4 channels
    opaque = tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), 255)
    rgba = tf.switch_case(tf.shape(image)[-1] - 1, [
        lambda: tf.concat([image, image, image, opaque], -1),
        lambda: tf.concat([image[..., :1], image[..., :1], image[..., :1], image[..., 1:]], -1),
        lambda: tf.concat([image, opaque], -1),
        lambda: image,
    ])
    alpha = rgba[..., 3:]
    rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255  # composite on white
    # Pillow's "L": ITU-R 601-2 luma in 16-bit fixed point, rounded.
    gray = (rgb[..., 0:1] * 19595 + rgb[..., 1:2] * 38470 + rgb[..., 2:3] * 7471 + 32768) // 65536
    gray = tf.cast(gray, tf.float32)

    def resample(image: tf.Tensor, size: tuple) -> tf.Tensor:
        """Antialiased bilinear resize to `size`, rounded to 8 bits as Pillow stores it."""
        resized = tf.image.resize(image, size, method="bilinear", antialias=True)
        return tf.clip_by_value(tf.round(resized), 0.0, 255.0)

    # Like Pillow: resize the width, round to 8 bits, then the height.
    gray = resample(gray, (tf.shape(gray)[0], width))
    gray = resample(gray, (height, width))
    return tf.ensure_shape(gray[..., 0] / 255.0, (height, width))


# ---------------------------------------------------------------------------
# Packing and reading shards
# ---------------------------------------------------------------------------


def example(image: bytes, label: str, path: str) -> bytes:
    """One serialised tf.train.Example."""
    def feature(value: bytes) -> tf.train.Feature:
        """A feature of one byte string."""
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    features = {"image": feature(image), "label": feature(label.encode()), "path": feature(path.encode())}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def shard_image(path: Path) -> bytes:
    """The bytes to store for an image: PNG and JPEG files as they are, other formats as the grayscale PNG read_image sees.

    graph_read_image refuses GIF and WebP, and TensorFlow's BMP decoder reads fewer variants than Pillow.
    Raises ImageReadError for an image larger than graph_read_image decodes.
    """
    with open_image(path) as image:
        width, height = image.size
        if width * height > MAX_GRAPH_PIXELS:
            raise ImageReadError(f"{describe(path)}: image too large for TFRecord shards ({width}x{height} pixels,"
                                 f" limit {MAX_GRAPH_PIXELS:,})")
        if image.format in ("PNG", "JPEG") and image.mode != "CMYK":
            return image_bytes(path)
        out = io.BytesIO()
        to_grayscale(image).save(out, format="PNG")
        return out.getvalue()


def pack_folder(source: str, out: str, shards: int, height: int) -> dict:
    """Write a labelled folder's readable images into `shards` TFRecord files plus meta.json."""
    items = labelled_items(source)
    tf.io.gfile.makedirs(out)
    names = [f"{out.rstrip('/')}/data-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    writers = [tf.io.TFRecordWriter(name) for name in names]
    good, bad, sizes = [], [], []
    for path, label in items:
        try:
            read_image(path, 8, 8)  # decodes fully: a bad file is skipped here, not in training
            stored = shard_image(path)
        except ImageReadError as error:
            bad.append(str(error))
            continue
        sizes.append(image_size(path))
        writers[len(good) % shards].write(example(stored, label, path.name))
        good.append(label)
    for writer in writers:
        writer.close()
    check_some_readable(bad, len(items), source)
    geometry = geometry_for(sizes, height)
    meta = {"charset": charset_from_labels(good), "max_label_length": max(map(len, good)),
            "min_label_length": min(map(len, good)),
            "most_time_steps_label": max(good, key=min_time_steps),
            "height": geometry[0], "width": geometry[1], "count": len(good), "shards": shards,
            "bad_files": bad, "source": str(source)}
    with tf.io.gfile.GFile(f"{out.rstrip('/')}/{META_FILE}", "w") as handle:
        handle.write(json.dumps(meta, indent=2) + "\n")
    return meta


def is_record_folder(folder: str) -> bool:
    """True for a folder written by pack_folder (it has meta.json and .tfrecord files)."""
    folder = folder.rstrip("/")
    return tf.io.gfile.exists(f"{folder}/{META_FILE}") and bool(tf.io.gfile.glob(f"{folder}/*.tfrecord"))


def read_meta(folder: str) -> dict:
    """meta.json of a shard folder, checked: the fields training needs, of the right types and in range."""
    where = f"{folder.rstrip('/')}/{META_FILE}"
    with tf.io.gfile.GFile(where, "rb") as handle:
        data = handle.read()
    try:
        meta = json.loads(data)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise DatasetError(f"{where}: not a JSON file ({str(error).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{where}: not a JSON object")
    for key, kind in META_FIELDS.items():
        if type(meta.get(key)) is not kind:
            raise DatasetError(f"{where}: {key!r} must be {'text' if kind is str else 'a whole number'},"
                               f" got {meta.get(key)!r}"[:300])
    if min(meta[key] for key, kind in META_FIELDS.items() if kind is int) < 1:
        raise DatasetError(f"{where}: height, width, count, shards and max_label_length must be at least 1")
    shortest = meta.get("min_label_length", DEFAULT_MIN_LABEL_LENGTH)  # absent in shards packed before it was
    if type(shortest) is not int or not 1 <= shortest <= meta["max_label_length"]:
        raise DatasetError(f"{where}: 'min_label_length' must be a whole number from 1 to max_label_length,"
                           f" got {shortest!r}"[:300])
    if not meta["charset"] or len(set(meta["charset"])) != len(meta["charset"]):
        raise DatasetError(f"{where}: the charset {meta['charset']!r} is empty or repeats a character"[:300])
    return meta


def spec_for(meta: dict, height: int, width: int | None) -> ModelSpec:
    """The model spec for shards: their charset and label lengths; geometry from meta unless overridden."""
    if width is None and height == meta["height"]:
        width = meta["width"]
    elif width is None:
        width = width_for(height, meta["width"] / meta["height"])
    return ModelSpec(meta["charset"], height, width, meta["max_label_length"],
                     meta.get("min_label_length", DEFAULT_MIN_LABEL_LENGTH))


def in_validation(path: tf.Tensor, val_split: float, seed: int) -> tf.Tensor:
    """A deterministic split by file name: the same files are held out on every run and every worker."""
    bucket = tf.strings.to_hash_bucket_fast(tf.strings.join([str(seed), path], "/"), 10000)
    return bucket < int(round(val_split * 10000))


def examples(folder: str, spec: ModelSpec) -> tf.data.Dataset:
    """(image, encoded label, path) elements from the shards, decoded in the graph."""
    files = sorted(tf.io.gfile.glob(f"{folder.rstrip('/')}/*.tfrecord"))
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(list(spec.charset), list(range(1, len(spec.charset) + 1))),
        default_value=0)

    def decode(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One example parsed, its label checked and encoded, its image decoded."""
        parsed = tf.io.parse_single_example(record, FEATURES)
        characters = tf.strings.unicode_split(parsed["label"], "UTF-8")
        indices = table.lookup(characters)
        label_checks = [
            tf.debugging.Assert(tf.reduce_all(indices > 0), ["a label has characters outside the charset:", parsed["label"]]),
            tf.debugging.Assert(tf.size(indices) <= spec.max_label_length,
                                [f"a label is longer than {spec.max_label_length} characters:", parsed["label"]]),
        ]
        with tf.control_dependencies(label_checks):
            label = tf.pad(indices, [[0, spec.max_label_length - tf.size(characters)]])
        image = graph_read_image(parsed["image"], spec.height, spec.width)
        return image, tf.ensure_shape(label, [spec.max_label_length]), parsed["path"]

    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
