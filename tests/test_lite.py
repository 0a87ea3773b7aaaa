"""The light runtime: an ONNX export read through onnxruntime, without TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from captcha_reader.base import ModelLoadError
from captcha_reader.lite import LiteReader, is_lite_model, load_lite_reader


def test_export_is_one_file_with_spec_and_scores(lite_model, reader):
    assert [p.name for p in lite_model.parent.iterdir()] == ["tiny.onnx"]
    lite = load_lite_reader(lite_model)
    assert lite.spec == reader.spec and lite.spec.min_label_length == 4
    assert lite.validation == reader.validation and lite.format_version == reader.format_version


def test_metadata_without_label_lengths_still_loads():
    class Session:
        """Just enough of an onnxruntime session to build a reader."""

        def get_inputs(self):
            return [type("Input", (), {"name": "image"})]

    metadata = {"spec": {"charset": "01", "height": 8, "width": 16, "max_label_length": 3}, "format_version": 1}
    assert LiteReader(Session(), metadata).spec.min_label_length == 1


def test_lite_reads_like_keras(lite_model, reader, tiny_data):
    paths = sorted(tiny_data.iterdir())
    lite = load_lite_reader(lite_model)
    batch = reader.preprocess(paths)
    assert np.allclose(lite.logits(batch), reader.logits(batch), atol=1e-4)
    ours, theirs = lite.read(paths), reader.read(paths)
    assert [r.text for r in ours] == [r.text for r in theirs]
    assert np.allclose([r.confidence for r in ours], [r.confidence for r in theirs], atol=1e-4)


def test_predict_cli_on_lite_model_never_imports_tensorflow(lite_model, tiny_data, reader):
    image = str(sorted(tiny_data.iterdir())[0])
    code = ("import sys, predict_example; status = predict_example.main([sys.argv[1], '--model', sys.argv[2], '--json']);"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", code, image, str(lite_model)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["text"] == reader.read([image])[0].text


def test_runtime_choice_by_suffix_and_magic(tmp_path, trained_model, lite_model):
    assert is_lite_model(lite_model) and not is_lite_model(trained_model)
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(lite_model.read_bytes())
    assert is_lite_model(renamed)
    renamed.write_bytes(trained_model.read_bytes())
    assert not is_lite_model(renamed)


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 not really onnx")
    with pytest.raises(ModelLoadError, match="not a usable ocr_captcha ONNX model"):
        load_lite_reader(bad)
    with pytest.raises(ModelLoadError, match="train one first"):
        load_lite_reader(tmp_path / "missing.onnx")


@pytest.mark.parametrize("field, value, problem", [
    ("charset", "01234", "classes"), ("height", 32, "input"), ("width", 256, "input"),
    ("min_label_length", "x", "five whole numbers"), ("min_label_length", 9, "longer than its longest"),
])
def test_onnx_metadata_that_disagrees_with_the_network_is_refused(lite_model, tmp_path, field, value, problem):
    import onnx
    proto = onnx.load(str(lite_model))
    entry = next(e for e in proto.metadata_props if e.key == "ocr_captcha")
    metadata = json.loads(entry.value)
    metadata["spec"][field] = value
    entry.value = json.dumps(metadata)
    crafted = tmp_path / "crafted.onnx"
    onnx.save(proto, str(crafted))
    with pytest.raises(ModelLoadError, match=problem):
        load_lite_reader(crafted)
