"""The repository contract (modelrepo): names, the typed manifest entry, config read and write."""
from __future__ import annotations

import json

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from modelrepo import (
    MANIFEST,
    ManifestEntry,
    ModelNames,
    Precision,
    RepositoryError,
    Target,
    Task,
    config_parameters,
    read_config,
    read_entry,
    read_manifest,
    record_entry,
    served_model_folders,
    stub_model,
    write_config,
)

ENTRY = {
    "name": "tiny", "task": "text-classification", "target": "cpu", "precision": "int8", "max_length": 64,
    "max_batch_size": 8, "ensemble": "tiny", "tokenizer": "tiny-tokenizer", "encoder": "tiny-encoder",
    "fused": "tiny-fused", "folders": ["tiny-tokenizer", "tiny-encoder", "tiny-fused", "tiny"],
    "source": "/checkpoints/tiny", "head": None, "normalize": True, "fingerprint": "abc",
    "inputs": {"TEXT": "TYPE_STRING"}, "outputs": {"LABEL": [1]}, "num_labels": 3,
    "validation": [{"variant": "int8", "passed": True}], "int8_scheme": "all", "build_seconds": {"export": 1.5},
}


def test_names_follow_the_naming_contract():
    names = ModelNames.of("minilm-intent")
    assert (names.ensemble, names.tokenizer, names.encoder, names.fused) == (
        "minilm-intent", "minilm-intent-tokenizer", "minilm-intent-encoder", "minilm-intent-fused")
    assert str(names.tokenizer_json("/r")) == "/r/minilm-intent-tokenizer/1/tokenizer.json"
    assert str(names.onnx_file("/r")) == "/r/minilm-intent-encoder/1/model.onnx"


def test_an_entry_is_typed_and_writes_back_what_it_read():
    entry = ManifestEntry.from_dict(ENTRY)
    assert entry.target is Target.CPU and entry.precision is Precision.INT8 and entry.task is Task.CLASSIFICATION
    assert entry.is_classifier and entry.names == ModelNames.of("tiny")
    assert entry.evidence == {"validation": ENTRY["validation"], "int8_scheme": "all", "build_seconds": {"export": 1.5}}
    assert entry.to_dict() == ENTRY
    assert json.loads(json.dumps(entry.to_dict())) == ENTRY


@pytest.mark.parametrize("field, value, words", [("precision", "int4", "'int4' is not a valid Precision"),
                                                 ("target", None, "lacks target")])
def test_a_bad_entry_is_refused_naming_the_field(field, value, words):
    broken = {key: item for key, item in ENTRY.items() if key != field} | ({field: value} if value else {})
    with pytest.raises(RepositoryError, match=words):
        ManifestEntry.from_dict(broken)


def test_recording_adds_an_entry_and_reading_finds_it(tmp_path):
    assert read_manifest(tmp_path) == {} and read_entry(tmp_path, "tiny") is None
    record_entry(tmp_path, ManifestEntry.from_dict(ENTRY))
    record_entry(tmp_path, ManifestEntry.from_dict(ENTRY | {"name": "other", "ensemble": "other"}))
    assert json.loads((tmp_path / MANIFEST).read_text())["format"] == 1
    assert set(read_manifest(tmp_path)) == {"tiny", "other"}
    assert read_entry(tmp_path, "tiny").to_dict() == ENTRY
    with pytest.raises(RepositoryError, match=r"has no model 'missing'; it has \['other', 'tiny'\]"):
        read_entry(tmp_path, "missing")


def test_a_manifest_that_is_not_json_is_named(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(RepositoryError, match="manifest.json is not valid JSON"):
        read_manifest(tmp_path)


def test_a_config_parses_back_and_only_model_folders_are_served(tmp_path):
    config = mc.ModelConfig(name="tiny", backend="python", max_batch_size=8)
    config.parameters["max_length"].string_value = "64"
    (tmp_path / "tiny").mkdir()
    (tmp_path / "notes").mkdir()
    write_config(config, tmp_path / "tiny")
    assert read_config(tmp_path / "tiny") == config
    assert config_parameters(config) == {"max_length": "64"}
    assert served_model_folders(tmp_path) == ["tiny"]


def test_a_stub_command_line_names_its_model_and_instance():
    argv = ["/x/backends/python/triton_python_backend_stub", "/repo/tiny-encoder/1/model.py", "shm", "1", "2",
            "123", "/x/backends/python", "45", "tiny-encoder_0_0", "DEFAULT"]
    command = stub_model(argv)
    assert (command.model, command.instance) == ("tiny-encoder", "tiny-encoder_0_0")
    assert stub_model(["/usr/bin/python3", "/repo/tiny-encoder/1/model.py"]) is None
    assert stub_model(["/x/triton_python_backend_stub"]) is None
