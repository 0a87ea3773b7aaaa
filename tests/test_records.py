"""TFRecord shards: images -> tools/pack_tfrecords.py -> training from the shards."""

import json
import os
import shutil

import numpy as np
import pack_tfrecords
import pytest
import tensorflow as tf
from helpers import one_error_line, train_one_epoch

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
    split = json.loads((tmp_path / "m.split.json").read_text())
    assert 0 < len(split["validation"]) < 20
    assert open_reader(model).spec == spec


def test_split_by_name_is_deterministic():
    paths = tf.constant([f"{i:04d}.png" for i in range(2000)])
    held = in_validation(paths, 0.1, 1337).numpy()
    assert np.array_equal(held, in_validation(paths, 0.1, 1337).numpy())
    assert 150 < held.sum() < 250
    assert not np.array_equal(held, in_validation(paths, 0.1, 7).numpy())


def write_shards(folder, records, meta):
    """Hand-made shards: serialised examples and a meta.json (a dict, or text written as is)."""
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "data-00000-of-00001.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    (folder / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return folder


def hand_made_example(**features) -> bytes:
    """A tf.train.Example from byte strings (bytes) or integers (int)."""
    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Example(features=tf.train.Features(
        feature={name: feature(value) for name, value in features.items()})).SerializeToString()


GOOD_META = {"charset": "0123456789", "max_label_length": 4, "most_time_steps_label": "1903", "height": 48,
             "width": 128, "count": 8, "shards": 1, "bad_files": [], "source": "hand-made"}


def shard_case(case, image):
    """Records and meta.json of one kind of broken shard folder."""
    good = [hand_made_example(image=image, label=f"{i}903".encode(), path=f"{i}903.png".encode()) for i in range(8)]
    return {
        "meta not JSON": (good, "{not json"),
        "meta not an object": (good, "[1, 2]"),
        "meta without charset": (good, {k: v for k, v in GOOD_META.items() if k != "charset"}),
        "meta height a string": (good, {**GOOD_META, "height": "48"}),
        "meta width zero": (good, {**GOOD_META, "width": 0}),
        "meta without shards": (good, {k: v for k, v in GOOD_META.items() if k != "shards"}),
        "meta shortest label over longest": (good, {**GOOD_META, "min_label_length": 5}),
        "record without image": ([hand_made_example(label=b"1903", path=b"1903.png")] + good[1:], GOOD_META),
        "label an integer": ([hand_made_example(image=image, label=1903, path=b"1903.png")] + good[1:], GOOD_META),
        "not a TFRecord file": ([], GOOD_META),
        "label outside the charset": (good, {**GOOD_META, "charset": "0123456780", "most_time_steps_label": "1"}),
        "label longer than meta says": ([hand_made_example(image=image, label=b"19031", path=b"x.png")] + good[1:],
                                        GOOD_META),
    }[case]


@pytest.mark.parametrize("case", ["meta not JSON", "meta not an object", "meta without charset",
                                  "meta height a string", "meta width zero", "meta without shards",
                                  "meta shortest label over longest", "record without image",
                                  "label an integer", "not a TFRecord file", "label outside the charset",
                                  "label longer than meta says"])
def test_broken_shards_stop_before_training_with_one_line(case, tiny_data, tmp_path, capsys):
    image = sorted(tiny_data.iterdir())[0].read_bytes()
    records, meta = shard_case(case, image)
    shards = write_shards(tmp_path / "shards", records, meta)
    if case == "not a TFRecord file":
        (shards / "data-00000-of-00001.tfrecord").write_bytes(b"this is not a TFRecord file at all")
    assert train_one_epoch(tmp_path, shards) == 1
    assert str(shards) in one_error_line(capsys)
    assert not (tmp_path / "out" / "m.keras").exists()


def test_pack_refuses_a_file_name_that_is_not_utf8(tiny_data, tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(sorted(tiny_data.iterdir())[0], source / os.fsdecode(b"12\xff4.png"))
    assert pack_tfrecords.main([str(source), str(tmp_path / "shards")]) == 1
    assert "not valid UTF-8" in one_error_line(capsys)


def test_pack_stores_what_the_graph_can_check_and_skips_the_rest(tiny_data, tmp_path):
    from PIL import Image
    source = tmp_path / "src"
    source.mkdir()
    originals = sorted(tiny_data.iterdir())[:3]
    Image.open(originals[0]).save(source / "1111.gif")
    Image.open(originals[1]).save(source / "2222.webp", lossless=True)
    shutil.copy(originals[2], source / originals[2].name)
    Image.new("L", (2000, 2000), 255).save(source / "3333.png")  # under the Pillow limit, over the graph's
    meta = pack_tfrecords.main([str(source), str(tmp_path / "shards"), "--shards", "1"])
    assert meta == 0
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    assert meta["count"] == 3 and len(meta["bad_files"]) == 1 and "3333.png" in meta["bad_files"][0]
    spec = spec_for(meta, 48, None)
    read = {path.numpy().decode(): image.numpy() for image, _, path in examples(str(tmp_path / "shards"), spec)}
    for name in ["1111.gif", "2222.webp", originals[2].name]:
        assert np.abs(read[name] - read_image(source / name, 48, 128)).max() <= 2.5 / 255, name
