"""TFRecord shards: images -> tools/pack_tfrecords.py -> training from the shards."""

import json
import shutil

import numpy as np
import pack_tfrecords
import tensorflow as tf

import ocr_captcha
from captcha_reader.images import read_image
from captcha_reader.labels import decode_indices, label_from_filename
from captcha_reader.readers import open_reader
from captcha_reader.records import examples, in_validation, spec_for


def test_pack_then_train_from_shards(tiny_data, tmp_path, capsys):
    source = tmp_path / "src"
    shutil.copytree(tiny_data, source)
    (source / "9999.png").write_bytes(b"broken")
    shards = tmp_path / "shards"
    assert pack_tfrecords.main([str(source), str(shards), "--shards", "3"]) == 0
    assert len(list(shards.glob("*.tfrecord"))) == 3
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["count"] == 64 and meta["charset"] == "0123456789" and len(meta["bad_files"]) == 1
    assert (meta["height"], meta["width"]) == (48, 128)

    spec = spec_for(meta, 48, None)
    assert (spec.min_label_length, spec.max_label_length) == (4, 4) == (meta["min_label_length"], 4)
    old_meta = {key: value for key, value in meta.items() if key != "min_label_length"}  # packed before lengths
    assert spec_for(old_meta, 48, None).min_label_length == 1
    records = list(examples(str(shards), spec))
    assert len(records) == 64
    image, label, path = records[0]
    name = path.numpy().decode()
    assert decode_indices(label.numpy(), spec.charset) == label_from_filename(name)
    expected = read_image(tiny_data / name, 48, 128)
    assert np.abs(image.numpy() - expected).max() <= 2.5 / 255  # Pillow and TensorFlow resize alike to a level or two

    model = tmp_path / "m.keras"
    assert ocr_captcha.main(["--data-dir", str(shards), "--model", str(model), "--epochs", "1", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "64 images in 3 shards" in out
    split = json.loads((tmp_path / "split.json").read_text())
    assert 0 < len(split["validation"]) < 20
    assert open_reader(model).spec == spec


def test_split_by_name_is_deterministic():
    paths = tf.constant([f"{i:04d}.png" for i in range(2000)])
    held = in_validation(paths, 0.1, 1337).numpy()
    assert np.array_equal(held, in_validation(paths, 0.1, 1337).numpy())
    assert 150 < held.sum() < 250
    assert not np.array_equal(held, in_validation(paths, 0.1, 7).numpy())
