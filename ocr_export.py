"""Exports of a trained model for other runtimes.

    python ocr_captcha.py --export-lite model/ocr_captcha.onnx --model model/ocr_captcha.keras

`--export-lite` writes one ONNX file (Keras' own ONNX export, through tf2onnx) with the
charset and geometry in its metadata, for `ocr_lite.py` and `predict_example.py`.
"""

import contextlib
import io
import os
from pathlib import Path

import numpy as np

import ocr_captcha
import ocr_core
import ocr_lite


def export_lite(reader: "ocr_captcha.Reader", path: Path) -> None:
    """Write the network and its charset and geometry as one ONNX file at `path`, atomically."""
    import onnx

    model = reader.model
    model.predict_on_batch(np.zeros((1, reader.spec.height, reader.spec.width), np.float32))  # Keras exports called models
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.onnx")
    try:
        # tf2onnx reports every graph rewrite on stdout and stderr; errors still raise.
        with contextlib.redirect_stdout(io.StringIO()), ocr_core.silenced_stderr():
            model.export(str(tmp), format="onnx", verbose=False)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key = ocr_lite.METADATA_KEY
        entry.value = ocr_lite.lite_metadata(reader.spec, reader.validation, reader.format_version)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


# ---------------------------------------------------------------------------
# SavedModel for TF Serving: bytes in, text and confidence out, all in the graph
# ---------------------------------------------------------------------------


def header_number(data, start: int, length: int, little_endian: bool):
    """An unsigned integer stored in `data` at `start`, or -1 when the data is too short."""
    import tensorflow as tf

    def read():
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, start, length), tf.uint8), tf.int64)
        order = range(length) if little_endian else reversed(range(length))
        return tf.reduce_sum(raw * tf.constant([256 ** i for i in order], tf.int64))

    return tf.cond(tf.strings.length(data) >= start + length, read, lambda: tf.constant(-1, tf.int64))


def declared_pixels(data):
    """Width x height declared by a PNG, GIF, BMP or JPEG header, read without decoding; -1 if unknown."""
    import tensorflow as tf

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
    """ocr_core.read_image in TensorFlow ops: header check, first frame, white under transparency, grayscale, resize."""
    import tensorflow as tf

    pixels = declared_pixels(data)
    tf.debugging.assert_less_equal(pixels, tf.constant(ocr_core.MAX_IMAGE_PIXELS, tf.int64),
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
    return gray[..., 0] / 255.0


def export_savedmodel(reader: "ocr_captcha.Reader", folder: Path) -> Path:
    """Write a SavedModel to `folder`/1 whose serving_default reads encoded images into text and confidence."""
    import keras
    import tensorflow as tf

    spec, model = reader.spec, reader.model
    characters = tf.constant([""] + list(spec.charset))  # the blank (class 0) spells nothing

    def serve(image_bytes):
        images = tf.map_fn(lambda data: graph_read_image(data, spec.height, spec.width), image_bytes,
                           fn_output_signature=tf.TensorSpec([spec.height, spec.width], tf.float32))
        probabilities = tf.nn.softmax(model(images, training=False))
        best = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        previous = tf.pad(best[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
        kept = tf.where((best != previous) & (best != ocr_core.BLANK_INDEX), best, ocr_core.BLANK_INDEX)
        text = tf.strings.reduce_join(tf.gather(characters, kept), axis=-1)
        step_max = tf.maximum(tf.reduce_max(probabilities, axis=-1), 1e-30)
        confidence = tf.exp(tf.reduce_sum(tf.math.log(step_max), axis=-1))
        return {"text": text, "confidence": confidence}

    # Keras' ExportArchive tracks every variable the model uses (dropout seeds included).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, [tf.TensorSpec([None], tf.string, name="image_bytes")])
    target = folder / "1"
    if target.exists():
        raise ocr_core.DatasetError(f"{target} already exists; remove it or export to another folder")
    tmp = folder / f".1.tmp-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        archive.write_out(str(tmp), verbose=False)
        os.replace(tmp, target)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {target} (serving_default: image_bytes -> text, confidence)")
    return target
