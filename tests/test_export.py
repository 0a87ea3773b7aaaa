"""captcha_reader.export: the SavedModel for TF Serving reads raw bytes like predict_example.py."""


import make_captchas
import numpy as np
import pytest
import tensorflow as tf
from helpers import bomb_png

import ocr_captcha
from captcha_reader.labels import list_images
from captcha_reader.records import declared_pixels


@pytest.fixture(scope="session")
def savedmodel(trained_model, tmp_path_factory):
    """The tiny model exported with --export-savedmodel, loaded back."""
    folder = tmp_path_factory.mktemp("serving")
    assert ocr_captcha.main(["--export-savedmodel", str(folder), "--model", str(trained_model)]) == 0
    return tf.saved_model.load(str(folder / "1")).signatures["serving_default"]


def test_signature(savedmodel):
    inputs = savedmodel.structured_input_signature[1]
    assert inputs["image_bytes"].dtype == tf.string and inputs["image_bytes"].shape.as_list() == [None]
    assert savedmodel.structured_outputs["text"].dtype == tf.string
    assert savedmodel.structured_outputs["confidence"].dtype == tf.float32


def test_same_texts_as_predict_on_1000_images(savedmodel, reader, tmp_path):
    make_captchas.main(["--out", str(tmp_path), "--count", "1000", "--seed", "11"])
    files = list_images(tmp_path)
    served = savedmodel(image_bytes=tf.constant([p.read_bytes() for p in files]))
    texts = [t.decode() for t in served["text"].numpy()]
    expected = reader.read(files)
    same = sum(a == b.text for a, b in zip(texts, expected))
    assert same >= 999, f"{same} of 1000 texts agree"
    assert np.allclose(served["confidence"].numpy(), [r.confidence for r in expected], atol=0.05)


def test_every_format_and_mode(savedmodel, reader):
    from io import BytesIO

    from PIL import Image
    blobs = []
    base = Image.linear_gradient("L").resize((160, 60))
    for fmt, mode in [("PNG", "RGBA"), ("PNG", "P"), ("JPEG", "RGB"), ("GIF", "L"), ("BMP", "RGB"), ("PNG", "L")]:
        out = BytesIO()
        base.convert(mode).save(out, format=fmt)
        blobs.append(out.getvalue())
    served = savedmodel(image_bytes=tf.constant(blobs))
    assert [t.decode() for t in served["text"].numpy()] == [r.text for r in reader.read(blobs)]


def test_bomb_refused_in_graph(savedmodel):
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        savedmodel(image_bytes=tf.constant([bomb_png()]))


def test_declared_pixels_from_headers():
    from io import BytesIO

    from PIL import Image
    for fmt in ["PNG", "GIF", "BMP", "JPEG"]:
        out = BytesIO()
        Image.new("RGB", (123, 45)).save(out, format=fmt)
        assert int(declared_pixels(tf.constant(out.getvalue()))) == 123 * 45, fmt
    assert int(declared_pixels(tf.constant(bomb_png()))) == 30000 * 30000


def test_int8_quantizes_lstms_and_dense_layers_only(lite_model, tiny_data, tmp_path):
    import onnx

    from captcha_reader.export import quantize_int8
    from captcha_reader.lite import load_lite_reader

    path = tmp_path / "int8.onnx"
    quantize_int8(lite_model, path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger", "Conv"} <= ops and "LSTM" not in ops and "ConvInteger" not in ops
    assert path.stat().st_size < 0.5 * lite_model.stat().st_size
    int8, float32 = load_lite_reader(path), load_lite_reader(lite_model)
    assert int8.spec == float32.spec and int8.validation == float32.validation
    batch = float32.preprocess(sorted(tiny_data.iterdir()))
    assert np.abs(int8.logits(batch) - float32.logits(batch)).max() < 0.5


def test_int8_goes_with_export_lite():
    assert ocr_captcha.parse_args(["--export-lite", "m.onnx", "--int8"]).int8
    with pytest.raises(SystemExit):
        ocr_captcha.parse_args(["--int8"])
