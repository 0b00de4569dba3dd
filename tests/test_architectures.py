"""Every supported architecture, end to end: a tiny checkpoint of each model_type, with its
family's own tokenizer type, built for both tasks, gated, and served.

All ten builds go into one model repository and one tritonserver serves their ensembles,
so the whole module costs one set of imports and one server start.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.source import SUPPORTED_MODEL_TYPES
from modelrepo import read_config
from tests.conftest import PROTOCOLS, url
from tests.test_served_answers import SAMPLE, TOLERANCE, load_in_process
from tests.tiny_architectures import ARCHITECTURES, LABELS, TASKS, model_name, tiny_checkpoint

pytestmark = pytest.mark.build
MODELS = [(model_type, task) for model_type in ARCHITECTURES for task in TASKS]
TOKENIZER_TYPE = {"bert": "WordPiece", "distilbert": "WordPiece", "electra": "WordPiece", "roberta": "BPE",
                  "xlm-roberta": "Unigram"}
WITH_TOKEN_TYPES = {"bert", "electra"}          # type_vocab_size 2; the others have one type or none
PAD_ID = {"roberta": 1, "xlm-roberta": 1}       # 0 elsewhere
# ONNX Runtime does not fuse embeddings whose positions start after the pad id (convert/optimize.py).
EMBEDDINGS_UNFUSED = {"roberta", "xlm-roberta"}


def test_every_supported_architecture_is_tested():
    assert set(ARCHITECTURES) == SUPPORTED_MODEL_TYPES


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("architectures")
    return {(model_type, task): tiny_checkpoint(root / model_name(model_type, task), model_type, task)
            for model_type, task in MODELS}


@pytest.fixture(scope="module")
def architecture_repository(checkpoints, tmp_path_factory) -> Path:
    """The ten builds, one after the other, into one repository (in this process: one import
    of torch and transformers for all of them)."""
    from convert.pipeline import BuildOptions, build
    from convert.source import resolve_model_spec

    out = tmp_path_factory.mktemp("architectures-repo") / "triton_models"
    for (model_type, task), folder in checkpoints.items():
        spec = resolve_model_spec(str(folder), name=model_name(model_type, task))
        assert spec.task == task and spec.model_type == model_type
        build(spec, BuildOptions(out=out, max_batch_size=8))
    return out


@pytest.fixture(scope="module")
def manifest(architecture_repository) -> dict:
    return json.loads((architecture_repository / "manifest.json").read_text())["models"]


# ------------------------------------------------------------------ the tokenizers

@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_checkpoint_tokenizer_is_its_family_type_and_transformers_loads_it(checkpoints, model_type):
    """The serving tokenizer (tokenizers, the checkpoint's tokenizer.json) and transformers'
    AutoTokenizer give the same ids, special tokens included, and pad with the model's pad id."""
    from transformers import AutoConfig, AutoTokenizer

    from convert.python_models.tokenizer_model import encode, load_tokenizer

    folder = checkpoints[(model_type, "embedding")]
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer_json["model"]["type"] == TOKENIZER_TYPE[model_type]
    texts = ["Hello, what's the weather in Paris?", "ok"]
    served = encode(load_tokenizer(folder / "tokenizer.json", 128), texts, model_type in WITH_TOKEN_TYPES)
    expected = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="np")
    assert (served["input_ids"] == expected["input_ids"]).all()
    assert (served["attention_mask"] == expected["attention_mask"]).all()
    pad_id = PAD_ID.get(model_type, 0)
    assert served["input_ids"][1, -1] == pad_id == (AutoConfig.from_pretrained(folder).pad_token_id or 0)
    if model_type in ("roberta", "xlm-roberta"):   # <s> text </s>
        assert served["input_ids"][0, 0] == 0 and served["input_ids"][0, -1] == 2


# ------------------------------------------------------------------ the builds

@pytest.mark.parametrize(("model_type", "task"), MODELS)
def test_build_gates_every_variant_and_reports_its_fusions(manifest, architecture_repository, model_type, task):
    entry = manifest[model_name(model_type, task)]
    assert entry["model_type"] == model_type and entry["task"] == task
    reports = {r["variant"]: r for r in entry["validation"]}
    assert set(reports) == {"fp32", "int8"} and all(r["passed"] for r in reports.values()), reports
    assert entry["precision"] == "int8"
    fusion = entry["fusion"]
    assert fusion["attention_fused"] and fusion["fused"]["Attention"] == 2, fusion
    assert fusion["fused"]["SkipLayerNormalization"] == 4
    assert fusion["embeddings_fused"] == (model_type not in EMBEDDINGS_UNFUSED)
    assert fusion["fused"]["EmbedLayerNormalization"] == (0 if model_type in EMBEDDINGS_UNFUSED else 1)

    name = model_name(model_type, task)
    encoder = read_config(architecture_repository / f"{name}-encoder")
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if model_type in WITH_TOKEN_TYPES else [])
    assert [i.name for i in encoder.input] == inputs
    assert encoder.parameters["pad_id"].string_value == str(PAD_ID.get(model_type, 0))
    if task == "text-classification":
        assert (architecture_repository / name / "labels.txt").read_text().split() == LABELS


def test_roberta_family_is_limited_to_512_tokens(checkpoints, tmp_path):
    """514 position rows, of which the first two (up to the pad id) no token uses."""
    from convert.errors import ConvertError
    from convert.pipeline import BuildOptions, build
    from convert.source import resolve_model_spec

    spec = resolve_model_spec(str(checkpoints[("roberta", "embedding")]))
    with pytest.raises(ConvertError, match="--max-length 513 exceeds the model's 512 positions"):
        build(spec, BuildOptions(out=tmp_path / "repo", max_length=513))
    assert not (tmp_path / "repo" / "manifest.json").exists()


def test_a_tokenizer_that_pads_with_another_id_is_refused(checkpoints, tmp_path):
    """RoBERTa numbers positions by counting the tokens that are not its pad id: a tokenizer
    padding with another id would serve wrong answers, so the build stops before any work."""
    import shutil

    from convert.errors import ConvertError
    from convert.pipeline import BuildOptions, build
    from convert.source import resolve_model_spec

    folder = tmp_path / "roberta"
    shutil.copytree(checkpoints[("roberta", "embedding")], folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["padding"] = {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                            "pad_id": 0, "pad_type_id": 0, "pad_token": "<s>"}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ConvertError, match="pads with id 0 but config.json's pad_token_id is 1"):
        build(resolve_model_spec(str(folder)), BuildOptions(out=tmp_path / "repo"))


# ------------------------------------------------------------------ served

@pytest.fixture(scope="module")
def architecture_server(architecture_repository):
    """One tritonserver for the ten ensembles (their tokenizer and encoder models load with
    them); the `-fused` models stay unloaded, sparing ten Python-backend processes."""
    from serve import LocalTritonServer

    ensembles = [model_name(model_type, task) for model_type, task in MODELS]
    with LocalTritonServer(architecture_repository, model_control="explicit", load_models=ensembles,
                           restore_crashed_models=False, startup_timeout_s=600) as server:
        yield server


@pytest.mark.live
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("model_type", "task"), MODELS)
def test_served_ensemble_equals_in_process_onnx_runtime(architecture_server, architecture_repository,
                                                        model_type, task, protocol):
    from client import EncoderClient

    name = model_name(model_type, task)
    classifier = task == "text-classification"
    in_process = load_in_process(architecture_repository, name, "probabilities" if classifier else "embedding")
    texts = SAMPLE[:8]
    with EncoderClient(url(architecture_server, protocol), model=name) as served_client:
        answer = served_client.probabilities if classifier else served_client.embed
        batched = answer(texts)
        singles = np.concatenate([answer([text]) for text in texts])
        labels = [c.label for c in served_client.classify(texts)] if classifier else []
    expected = in_process.run(texts)
    assert batched.shape == expected.shape
    assert float(np.abs(batched - expected).max()) <= TOLERANCE
    assert float(np.abs(singles - expected).max()) <= TOLERANCE
    if classifier:
        assert labels == [LABELS[i] for i in expected.argmax(axis=1)]
    else:
        assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-4)
