"""Exports of a trained model for other runtimes.

    python ocr_captcha.py --export-lite model/ocr_captcha.onnx --model model/ocr_captcha.keras

`--export-lite` writes one ONNX file (Keras' own ONNX export, through tf2onnx) with the
charset and geometry in its metadata, for `lite.py` and `predict_example.py`; with `--int8`
the LSTMs and dense layers get int8 weights (dynamic quantization: same texts, faster).
`--export-savedmodel DIR` writes DIR/1 for TF Serving: its serving_default signature
takes encoded images and returns text and confidence, decoded in the graph. That
decoding is greedy (any length, any character of the charset), not the format-aware
decoding of the Python readers (decoding.py), which keeps to the training labels' lengths.
"""

import contextlib
import io
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from captcha_reader import lite, records
from captcha_reader.base import BLANK_INDEX, DatasetError, silenced_stderr
from captcha_reader.files import check_writable
from captcha_reader.model import KerasReader
from captcha_reader.tf_import import keras, tf

# Quantized by --int8: the LSTMs and the dense layers. Int8 convolutions (ConvInteger) ran 3-5x slower
# than float ones here, and static quantization of the convolutions cost 0.2 points (benchmarks/levers.md).
INT8_OPS = ["MatMul", "LSTM"]


def quantize_int8(source: Path, target: Path) -> None:
    """Write `source`, an ONNX export, to `target` with int8 weights for its LSTMs and dense layers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # it advises a pre-processing step on the root logger, every time
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=INT8_OPS)
    finally:
        logging.disable(logging.NOTSET)


def export_lite(reader: KerasReader, path: Path, int8: bool = False) -> None:
    """Write the network and its charset and geometry as one ONNX file at `path`, atomically; `int8`: quantized."""
    import onnx

    if path.is_dir():
        raise DatasetError(f"{path}: is a folder; --export-lite writes one file")
    check_writable(path.parent, "the ONNX file")
    model = reader.model
    model.predict_on_batch(np.zeros((1, reader.spec.height, reader.spec.width), np.float32))  # Keras exports called models
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.onnx")
    quantized = path.with_name(f".{path.stem}.int8-{os.getpid()}.onnx")
    try:
        # tf2onnx reports every graph rewrite on stdout and stderr; errors still raise.
        with contextlib.redirect_stdout(io.StringIO()), silenced_stderr():
            model.export(str(tmp), format="onnx", verbose=False)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key = lite.METADATA_KEY
        entry.value = lite.lite_metadata(reader.spec, reader.validation, reader.format_version)
        onnx.save(proto, str(tmp))
        if int8:
            quantize_int8(tmp, quantized)
            os.replace(quantized, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        quantized.unlink(missing_ok=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB{', int8 weights' if int8 else ''})")


# ---------------------------------------------------------------------------
# SavedModel for TF Serving: bytes in, text and confidence out, all in the graph
# ---------------------------------------------------------------------------


def export_savedmodel(reader: KerasReader, folder: Path) -> Path:
    """Write a SavedModel to `folder`/1 whose serving_default reads encoded images into text and confidence.

    Decoding in the graph is greedy, as `reader.read(..., greedy=True)`: it does not keep to the
    model's label lengths as the Python readers do by default.
    """
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; --export-savedmodel writes the folder {folder}/1")
    target = folder / "1"
    if target.exists():
        raise DatasetError(f"{target} already exists; remove it or export to another folder")
    check_writable(folder, "the SavedModel")
    spec, model = reader.spec, reader.model
    characters = tf.constant([""] + list(spec.charset))  # the blank (class 0) spells nothing

    def serve(image_bytes: tf.Tensor) -> dict:
        """Image files in, texts and confidences out: the SavedModel's signature."""
        images = tf.map_fn(lambda data: records.graph_read_image(data, spec.height, spec.width), image_bytes,
                           fn_output_signature=tf.TensorSpec([spec.height, spec.width], tf.float32))
        log_probabilities = tf.nn.log_softmax(model(images, training=False))
        steps = tf.fill([tf.shape(images)[0]], spec.time_steps)
        # Keras' greedy CTC decoding; its score is minus the summed log-probability of the best path.
        paths, scores = keras.ops.ctc_decode(log_probabilities, steps, strategy="greedy", mask_index=BLANK_INDEX)
        text = tf.strings.reduce_join(tf.gather(characters, tf.maximum(paths[0], BLANK_INDEX)), axis=-1)  # -1 pads
        return {"text": text, "confidence": tf.exp(-scores[:, 0])}

    # Keras' ExportArchive tracks every variable the model uses (dropout seeds included).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, [tf.TensorSpec([None], tf.string, name="image_bytes")])
    tmp = folder / f".1.tmp-{os.getpid()}"
    try:
        archive.write_out(str(tmp), verbose=False)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {target} (serving_default: image_bytes -> text, confidence)")
    return target
