"""captcha_reader.model and metrics: the CTC blank convention, folding, safe loading of model files."""

import json
import zipfile

import keras
import numpy as np
import pytest
from helpers import logits_for_path

from captcha_reader.base import ModelLoadError, ModelSpec
from captcha_reader.data import encode_labels
from captcha_reader.decoding import greedy_decode, softmax
from captcha_reader.metrics import (
    CharacterErrorRate,
    SequenceAccuracy,
    greedy_edit_distances,
)
from captcha_reader.model import (
    KerasReader,
    ModelInfo,
    build_model,
    extend_model,
    model_info,
)
from captcha_reader.readers import open_reader


def test_blank_is_index_zero_in_loss_metrics_and_decoding():
    charset = "0123456789"
    spec = ModelSpec(charset, 32, 32, 4)
    y_true = encode_labels(["1123"], spec)
    assert y_true.tolist() == [[2, 2, 3, 4]]
    # 1 _ 1 2 2 3 _ _ : a path that spells "1123" only if class 0 is the blank
    logits = logits_for_path([2, 0, 2, 3, 3, 4, 0, 0], 11)[None]
    assert float(keras.losses.CTC()(y_true, logits)) < 0.01
    assert greedy_decode(softmax(logits), charset)[0][0] == "1123"
    distances, lengths = greedy_edit_distances(y_true, logits)
    assert distances.numpy().tolist() == [0.0] and lengths.numpy().tolist() == [4.0]
    # The same path read with the blank as the last class would be a different label: the loss says so.
    moved = np.roll(logits, -1, axis=-1)
    assert float(keras.losses.CTC()(y_true, moved)) > 5


def test_metrics_count_whole_codes_and_characters():
    spec = ModelSpec("0123456789", 32, 32, 4)
    y_true = encode_labels(["1234", "5678"], spec)
    logits = np.stack([logits_for_path([2, 3, 4, 5, 0, 0, 0, 0], 11),
                       logits_for_path([6, 7, 0, 9, 0, 0, 0, 0], 11)])  # "568": one deletion
    accuracy, cer = SequenceAccuracy(), CharacterErrorRate()
    accuracy.update_state(y_true, logits)
    cer.update_state(y_true, logits)
    assert float(accuracy.result()) == 0.5
    assert float(cer.result()) == pytest.approx(1 / 8)


def test_in_graph_metric_decoding_matches_numpy_decoding():
    """The metrics' TensorFlow greedy decoder agrees with greedy_decode on random logits."""
    charset = "abc"
    spec = ModelSpec(charset, 8, 40, 10)
    logits = np.random.default_rng(0).normal(0, 3, (200, 10, 4)).astype(np.float32)
    texts = [reading.text for reading in greedy_decode(softmax(logits), charset)]
    readable = [i for i, t in enumerate(texts) if t]  # an empty label has no characters to encode
    distances, _ = greedy_edit_distances(encode_labels([texts[i] for i in readable], spec),
                                                     logits[readable])
    assert len(readable) > 150 and distances.numpy().max() == 0


def test_saved_model_carries_spec_and_loads_in_safe_mode(trained_model, reader):
    assert reader.spec == ModelSpec("0123456789", 48, 128, 4, 4)
    assert set(reader.validation) == {"seq_acc", "cer", "n"}
    model = keras.saving.load_model(trained_model, safe_mode=True)
    assert model_info(model).spec == reader.spec


def without_key(config, key: str):
    """A JSON-like value with every dict entry named `key` removed, at any depth."""
    if isinstance(config, dict):
        return {k: without_key(v, key) for k, v in config.items() if k != key}
    if isinstance(config, list):
        return [without_key(v, key) for v in config]
    return config


def test_model_saved_without_label_lengths_still_loads(trained_model, reader, tmp_path):
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(trained_model) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = json.dumps(without_key(json.loads(data), "min_label_length")).encode()
            target.writestr(item, data)
    assert b"min_label_length" not in zipfile.ZipFile(old).read("config.json")
    again = open_reader(old)
    assert again.spec == ModelSpec("0123456789", 48, 128, 4, 1)
    assert all(1 <= len(r.text) <= 4 for r in again.read_arrays(np.random.default_rng(0).random((8, 48, 128))))


def test_save_load_predict_identical(trained_model, reader, tiny_data):
    paths = sorted(tiny_data.iterdir())[:8]
    batch = reader.preprocess(paths)
    again = open_reader(trained_model)
    assert np.array_equal(reader.model.predict(batch, verbose=0), again.model.predict(batch, verbose=0))
    assert reader.read(paths) == again.read([p.read_bytes() for p in paths])


def test_batch_norm_folded_for_inference_gives_the_same_logits(reader, tiny_data):
    batch = reader.preprocess(sorted(tiny_data.iterdir())[:16])
    folded = reader.inference_model
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in reader.model.layers)
    assert np.allclose(folded.predict_on_batch(batch), reader.model.predict_on_batch(batch), atol=1e-4)


def test_models_of_other_architectures_are_read_unfolded(tmp_path):
    spec = ModelSpec("01", 16, 16, 2)
    inputs = keras.Input((16, 16))
    x = keras.layers.Reshape((16, 16, 1))(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3, padding="same")(x))
    x = keras.layers.Reshape((4, -1))(keras.layers.MaxPooling2D((4, 4))(x))
    x = ModelInfo(**spec.to_dict())(keras.layers.Dense(spec.num_classes)(x))
    other = keras.Model(inputs, x)
    assert KerasReader(other).inference_model is other


def test_extend_model_maps_the_output_layer_by_character(reader):
    base = reader.model
    assert reader.spec.charset == "0123456789"
    spec = ModelSpec("29ab", reader.spec.height, reader.spec.width, 6)
    extended = extend_model(base, spec)
    old_kernel, old_bias = base.get_layer("logits").get_weights()
    kernel, bias = extended.get_layer("logits").get_weights()
    assert kernel.shape == (old_kernel.shape[0], 5)
    for new, old in ((0, 0), (1, 3), (2, 10)):  # the blank, "2" and "9" keep their own weights
        assert np.array_equal(kernel[:, new], old_kernel[:, old]) and bias[new] == old_bias[old]
    assert not np.array_equal(kernel[:, 3:], old_kernel[:, 3:5])  # "a" and "b" start fresh
    assert np.array_equal(extended.get_layer("bilstm_1").get_weights()[0],
                          base.get_layer("bilstm_1").get_weights()[0])


def test_capacity_widens_the_convolutions_and_survives_saving(tmp_path):
    spec = ModelSpec("0123456789", 16, 32, 4, capacity=3)
    model = build_model(spec)
    assert [model.get_layer(f"conv_{i}").filters for i in (1, 2, 3)] == [48, 96, 192]
    model.save(tmp_path / "wide.keras")
    again = open_reader(tmp_path / "wide.keras")
    assert again.spec == spec
    batch = np.random.default_rng(0).random((2, 16, 32)).astype("float32")
    assert np.allclose(again.logits(batch), model.predict_on_batch(batch), atol=1e-4)


def test_truncated_model_file_is_a_clear_error(trained_model, tmp_path):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(trained_model.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="not a usable ocr_captcha model"):
        open_reader(cut)


def test_lambda_layer_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x, m=str(marker): (open(m, "w").close(), x)[1])(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()
    with pytest.raises(ModelLoadError, match="Lambda"):
        open_reader(path)
    assert not marker.exists()


def test_unknown_class_is_refused(trained_model, tmp_path):
    path = tmp_path / "evil.keras"
    with zipfile.ZipFile(trained_model) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["module"] = "os"
                config["config"]["layers"][1]["class_name"] = "system"
                data = json.dumps(config).encode()
            target.writestr(item, data)
    with pytest.raises(ModelLoadError):
        open_reader(path)


def test_keras_model_without_model_info_is_refused(tmp_path):
    inputs = keras.Input((4,))
    path = tmp_path / "other.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path)
    with pytest.raises(ModelLoadError, match="not an ocr_captcha model"):
        open_reader(path)


def rewritten_model(source, target, edit_config=None, extra_members=()):
    """A copy of a .keras file with its config.json edited and members added."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in original.infolist():
            data = original.read(item)
            if item.filename == "config.json" and edit_config:
                config = json.loads(data)
                edit_config(config)
                data = json.dumps(config).encode()
            copy.writestr(item.filename, data)
        for name, size in extra_members:
            with copy.open(name, "w") as member:
                for _ in range(size // 2**20):
                    member.write(b" " * 2**20)
    return target


def model_info_config(config):
    """The config of the ModelInfo layer inside a model's config.json."""
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "ModelInfo")["config"]


@pytest.mark.parametrize("field, value, problem", [
    ("width", 256, "input"),
    ("height", 32, "input"),
    ("charset", "01234", "classes"),
    ("charset", "0123456789ab", "classes"),
    ("charset", "0023456789", "repeats"),
    ("max_label_length", 99, "time steps"),
    ("capacity", 2, "capacity 2"),
    ("capacity", 0, "not positive"),
    ("min_label_length", 0, "not positive"),
    ("min_label_length", 9, "longer than its longest"),
])
def test_metadata_that_disagrees_with_the_network_is_refused_on_open(trained_model, tmp_path, field, value,
                                                                        problem):
    path = rewritten_model(trained_model, tmp_path / "crafted.keras",
                           lambda config: model_info_config(config).update({field: value}))
    with pytest.raises(ModelLoadError, match=problem):
        open_reader(path)


@pytest.mark.parametrize("member, mebibytes", [("config.json", 40), ("assets/blob.bin", 40)])
def test_archive_that_inflates_beyond_any_model_of_ours_is_refused_unread(trained_model, tmp_path, member,
                                                                          mebibytes):
    if member == "config.json":  # valid JSON padded with whitespace, as a bomb would be
        path = rewritten_model(trained_model, tmp_path / "bomb.keras",
                               lambda config: config.update(padding=" " * (mebibytes * 2**20)))
    else:
        path = rewritten_model(trained_model, tmp_path / "bomb.keras", extra_members=[(member, mebibytes * 2**20)])
    assert path.stat().st_size < trained_model.stat().st_size + 2**20, "a small file that inflates"
    with pytest.raises(ModelLoadError, match="uncompressed"):
        open_reader(path)
