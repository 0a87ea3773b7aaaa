"""TFRecord shards for data that outgrows one folder, and image decoding in TensorFlow ops.

    python tools/pack_tfrecords.py captcha_images shards/ --shards 8
    python ocr_captcha.py --data-dir shards/        # trains from the shards, streaming

A shard folder holds `*.tfrecord` files of examples with the features `image` (the
encoded file bytes), `label` and `path`, and `meta.json` (charset, geometry, counts,
skipped files). Files are found with tf.io.gfile, so cloud paths such as gs://...
work where TensorFlow supports them; shards are split across workers by
tf.distribute's auto-sharding. Images are decoded by `graph_read_image`, the
TensorFlow twin of images.read_image (tested for parity), which the SavedModel
export uses too.
"""

import json

from captcha_reader.base import (
    DEFAULT_MIN_LABEL_LENGTH,
    DatasetError,
    ImageReadError,
    ModelSpec,
    width_for,
)
from captcha_reader.data import labelled_items
from captcha_reader.images import MAX_IMAGE_PIXELS, geometry_for, image_size, read_image
from captcha_reader.labels import charset_from_labels, min_time_steps
from captcha_reader.tf_import import tf

META_FILE = "meta.json"
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string),
    "path": tf.io.FixedLenFeature([], tf.string),
}


# ---------------------------------------------------------------------------
# Decoding in the graph: the twin of images.read_image
# ---------------------------------------------------------------------------


def header_number(data, start: int, length: int, little_endian: bool):
    """An unsigned integer stored in `data` at `start`, or -1 when the data is too short."""

    def read():
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
        order = range(length) if little_endian else reversed(range(length))
        return tf.reduce_sum(raw * tf.constant([256 ** i for i in order], tf.int64))

    return tf.cond(tf.strings.length(data) >= start + length, read, lambda: tf.constant(-1, tf.int64))


def declared_pixels(data):
    """Width x height declared by a PNG, GIF, BMP or JPEG header, read without decoding; -1 if unknown."""

    def bmp():
        height = header_number(data, 22, 4, True)
        height = tf.where(height >= 2 ** 31, 2 ** 32 - height, height)  # negative: a top-down bitmap
        return header_number(data, 18, 4, True) * height

    def jpeg():
        return tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64))

    return tf.case([
        (tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG"),
         lambda: header_number(data, 16, 4, False) * header_number(data, 20, 4, False)),
        (tf.equal(tf.strings.substr(data, 0, 4), b"GIF8"),
         lambda: header_number(data, 6, 2, True) * header_number(data, 8, 2, True)),
        (tf.equal(tf.strings.substr(data, 0, 2), b"BM"), bmp),
        (tf.equal(tf.strings.substr(data, 0, 2), b"\xff\xd8"), jpeg),
    ], default=lambda: tf.constant(-1, tf.int64))


def graph_read_image(data, height: int, width: int):
    """images.read_image in TensorFlow ops: header check, first frame, white under transparency, grayscale, resize."""
    pixels = declared_pixels(data)
    tf.debugging.assert_less_equal(pixels, tf.constant(MAX_IMAGE_PIXELS, tf.int64),
                                   message="image too large; refused before decoding")
    image = tf.cast(tf.io.decode_image(data, expand_animations=False), tf.int32)  # 1 to 4 channels
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

    def resample(image, size):
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
    def feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    features = {"image": feature(image), "label": feature(label.encode()), "path": feature(path.encode())}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


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
        except ImageReadError as error:
            bad.append(str(error))
            continue
        sizes.append(image_size(path))
        writers[len(good) % shards].write(example(path.read_bytes(), label, path.name))
        good.append(label)
    for writer in writers:
        writer.close()
    if not good:
        raise DatasetError(f"{source}: no readable images among {len(items)} files")
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
    """meta.json of a shard folder."""
    with tf.io.gfile.GFile(f"{folder.rstrip('/')}/{META_FILE}") as handle:
        return json.load(handle)


def spec_for(meta: dict, height: int, width: int | None) -> ModelSpec:
    """The model spec for shards: their charset and label lengths; geometry from meta unless overridden."""
    if width is None and height == meta["height"]:
        width = meta["width"]
    elif width is None:
        width = width_for(height, meta["width"] / meta["height"])
    # Shards packed before meta.json recorded the shortest label allow any length up to the longest.
    return ModelSpec(meta["charset"], height, width, meta["max_label_length"],
                     meta.get("min_label_length", DEFAULT_MIN_LABEL_LENGTH))


def in_validation(path, val_split: float, seed: int):
    """A deterministic split by file name: the same files are held out on every run and every worker."""
    bucket = tf.strings.to_hash_bucket_fast(tf.strings.join([str(seed), path], "/"), 10000)
    return bucket < int(round(val_split * 10000))


def examples(folder: str, spec: ModelSpec) -> tf.data.Dataset:
    """(image, encoded label, path) elements from the shards, decoded in the graph."""
    files = sorted(tf.io.gfile.glob(f"{folder.rstrip('/')}/*.tfrecord"))
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(list(spec.charset), list(range(1, len(spec.charset) + 1))),
        default_value=0)

    def decode(record):
        parsed = tf.io.parse_single_example(record, FEATURES)
        characters = tf.strings.unicode_split(parsed["label"], "UTF-8")
        label = tf.pad(table.lookup(characters), [[0, spec.max_label_length - tf.size(characters)]])
        image = graph_read_image(parsed["image"], spec.height, spec.width)
        return image, tf.ensure_shape(label, [spec.max_label_length]), parsed["path"]

    records = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset, cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
