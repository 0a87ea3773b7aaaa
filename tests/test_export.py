"""captcha_reader.export: the SavedModel for TF Serving reads raw bytes like predict_example.py."""

from io import BytesIO

import make_captchas
import numpy as np
import pytest
import tensorflow as tf
from helpers import bomb_png

import ocr_captcha
from captcha_reader import records
from captcha_reader.labels import list_images
from captcha_reader.records import declared_size


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
    expected = reader.read(files, greedy=True)  # the graph decodes greedily
    same = sum(a == b.text for a, b in zip(texts, expected))
    assert same >= 999, f"{same} of 1000 texts agree"
    assert np.allclose(served["confidence"].numpy(), [r.confidence for r in expected], atol=0.05)


def test_every_format_and_mode(savedmodel, reader):
    from io import BytesIO

    from PIL import Image
    blobs = []
    base = Image.linear_gradient("L").resize((160, 60))
    for fmt, mode in [("PNG", "RGBA"), ("PNG", "P"), ("JPEG", "RGB"), ("BMP", "RGB"), ("PNG", "L")]:
        out = BytesIO()
        base.convert(mode).save(out, format=fmt)
        blobs.append(out.getvalue())
    served = savedmodel(image_bytes=tf.constant(blobs))
    assert [t.decode() for t in served["text"].numpy()] == [r.text for r in reader.read(blobs, greedy=True)]


def test_bomb_refused_in_graph(savedmodel):
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        savedmodel(image_bytes=tf.constant([bomb_png()]))


def test_declared_size_from_headers():
    from io import BytesIO

    from PIL import Image
    for fmt in ["PNG", "GIF", "BMP", "JPEG"]:
        out = BytesIO()
        Image.new("RGB", (123, 45)).save(out, format=fmt)
        assert declared_size(tf.constant(out.getvalue())).numpy().tolist() == [123, 45], fmt
    assert declared_size(tf.constant(bomb_png())).numpy().tolist() == [30000, 30000]
    assert declared_size(tf.constant(b"not an image")).numpy().tolist() == [-1, -1]


def encoded(image, fmt: str) -> bytes:
    """An image encoded in memory."""
    out = BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def waited_for(op) -> set:
    """Every op that `op` waits for, through its inputs and its control dependencies."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [tensor.op for tensor in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_graph_decoder_waits_for_the_checks():
    graph = tf.function(lambda data: records.graph_read_image(data, 48, 128)).get_concrete_function(
        tf.TensorSpec([], tf.string)).graph
    decoders = [op for op in graph.get_operations() if op.type.startswith("Decode")]
    assert decoders
    for decoder in decoders:
        # The format check (an Assert) and the size check (an Assert that TensorFlow wraps in an If,
        # since its message carries a tensor).
        assert {"Assert", "If"} <= {op.type for op in waited_for(decoder)}, \
            "the decoder must wait for the format and size checks"
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        tf.function(lambda data: records.graph_read_image(data, 48, 128))(tf.constant(bomb_png(5000, 5000)))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_graph_refuses_formats_whose_decoded_size_it_cannot_check(savedmodel, fmt):
    from PIL import Image
    data = encoded(Image.new("L", (160, 60), 255), fmt)
    with pytest.raises(tf.errors.InvalidArgumentError, match="only PNG, JPEG and BMP"):
        savedmodel(image_bytes=tf.constant([data]))


def test_graph_pixel_limit_is_sized_for_captchas_not_photos(savedmodel):
    from PIL import Image
    # 4 megapixels: under the limit of the Pillow reader, far over what a captcha needs.
    data = encoded(Image.new("L", (2000, 2000), 255), "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError, match="too large"):
        savedmodel(image_bytes=tf.constant([data]))


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


@pytest.mark.parametrize("flag", ["--export-savedmodel", "--export-lite"])
def test_export_under_a_file_is_one_line(trained_model, tmp_path, capsys, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert ocr_captcha.main([flag, str(blocker / "sub" / "out"), "--model", str(trained_model)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {blocker}: is a file, not a folder") and len(err.strip().splitlines()) == 1
