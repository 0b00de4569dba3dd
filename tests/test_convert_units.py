"""Converter pieces on real data: config protobufs, head folding, tokenization, the gate."""
from __future__ import annotations

import joblib
import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from sklearn.linear_model import LogisticRegression
from tritonclient.grpc import model_config_pb2 as mc

from convert import triton_config as tc
from convert.errors import ConvertError
from convert.head import load_sklearn_head
from convert.python_models.tokenizer_model import MAX_CHARS_PER_TOKEN, InvalidText, decode_texts, encode, load_tokenizer
from convert.sentences import validation_sentences
from convert.source import minilm_checkpoint, resolve_model_spec
from modelrepo import read_config, write_config

TOKENIZER_JSON = minilm_checkpoint() / "tokenizer.json"


def needs_torch():
    """torch, or a skip: the Python 3.12 test environment has none (docs/TESTING.md says why)."""
    return pytest.importorskip("torch", reason="torch is not installed (the Python 3.12 test environment)")


# ------------------------------------------------------------------ config.pbtxt

def test_tokenizer_config_parses_back_field_by_field(tmp_path):
    outputs = [tc.Tensor("input_ids", tc.INT64, (-1,)), tc.Tensor("attention_mask", tc.INT64, (-1,))]
    config = tc.tokenizer_config("m-tokenizer", outputs, tc.Batching(16, 0), max_length=64, instances=2)
    write_config(config, tmp_path)
    parsed = read_config(tmp_path)
    assert parsed.name == "m-tokenizer" and parsed.backend == "python"
    assert parsed.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in parsed.input] == [("TEXT", mc.TYPE_STRING, [1])]
    assert [(o.name, o.data_type, list(o.dims)) for o in parsed.output] == [
        ("input_ids", mc.TYPE_INT64, [-1]), ("attention_mask", mc.TYPE_INT64, [-1])]
    assert parsed.parameters["max_length"].string_value == "64"
    assert parsed.instance_group[0].count == 2 and parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert parsed.HasField("dynamic_batching")
    assert parsed.model_warmup[0].inputs["TEXT"].input_data_file == "text"


def test_cpu_encoder_config_allows_ragged_batches_and_carries_parameters(tmp_path):
    inputs = [tc.Tensor("input_ids", tc.INT64, (-1,)), tc.Tensor("attention_mask", tc.INT64, (-1,))]
    outputs = [tc.Tensor("probabilities", tc.FP32, (4,), "labels.txt"), tc.Tensor("label", tc.STRING, (1,))]
    config = tc.cpu_encoder_config("m-encoder", inputs, outputs, tc.Batching(8, 250), onnx_file="model.onnx",
                                   intra_op_threads=2, spin=True,
                                   warmup_files={"input_ids": "input_ids", "attention_mask": "attention_mask"},
                                   warmup_length=9, row_by_row=True)
    write_config(config, tmp_path)
    parsed = read_config(tmp_path)
    assert all(i.allow_ragged_batch for i in parsed.input)
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 250
    assert parsed.output[0].label_filename == "labels.txt"
    assert {k: v.string_value for k, v in parsed.parameters.items()} == {
        "onnx_file": "model.onnx", "intra_op_threads": "2", "spin": "1", "pad_id": "0", "row_by_row": "1"}
    assert list(parsed.model_warmup[0].inputs["input_ids"].dims) == [9]


def test_gpu_encoder_config_sets_tensorrt_accelerator_with_profiles(tmp_path):
    inputs = [tc.Tensor("input_ids", tc.INT64, (-1,)), tc.Tensor("attention_mask", tc.INT64, (-1,))]
    outputs = [tc.Tensor("embedding", tc.FP32, (384,))]
    config = tc.gpu_encoder_config("m-encoder", inputs, outputs, tc.Batching(32, 100), max_length=128, opt_length=64,
                                   use_tensorrt=True, warmup_files={"input_ids": "a", "attention_mask": "b"},
                                   warmup_length=5)
    write_config(config, tmp_path)
    parsed = read_config(tmp_path)
    assert parsed.backend == "onnxruntime" and parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    accelerator = parsed.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_profile_max_shapes"] == "input_ids:32x128,attention_mask:32x128"
    assert accelerator.parameters["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"


def test_ensemble_config_wires_tokenizer_outputs_to_encoder_inputs(tmp_path):
    outputs = {"label": tc.Tensor("LABEL", tc.STRING, (1,)), "score": tc.Tensor("SCORE", tc.FP32, (1,))}
    config = tc.ensemble_config("m", tokenizer="m-tokenizer", encoder="m-encoder",
                                token_tensors=["input_ids", "attention_mask"], outputs=outputs,
                                max_batch_size=32, parameters={"task": "text-classification"})
    text = text_format.MessageToString(config)
    parsed = text_format.Parse(text, mc.ModelConfig())
    tokenize, run = parsed.ensemble_scheduling.step
    assert tokenize.model_name == "m-tokenizer" and run.model_name == "m-encoder"
    assert dict(tokenize.output_map) == {"input_ids": "_input_ids", "attention_mask": "_attention_mask"}
    assert dict(run.input_map) == {"input_ids": "_input_ids", "attention_mask": "_attention_mask"}
    assert dict(run.output_map) == {"label": "LABEL", "score": "SCORE"}
    assert [o.name for o in parsed.output] == ["LABEL", "SCORE"]
    assert parsed.max_batch_size == 32 and parsed.platform == "ensemble"


# ------------------------------------------------------------------ scikit-learn head

@pytest.fixture(scope="module")
def minilm_embeddings():
    """Real pooled, normalised MiniLM embeddings of real sentences."""
    torch = needs_torch()
    from convert.reference import build_reference

    reference = build_reference(resolve_model_spec("minilm-embed"))
    tokenizer = load_tokenizer(TOKENIZER_JSON, 128)
    texts = [t for t in validation_sentences() if t][:60]
    with torch.no_grad():
        rows = [reference.model(**{k: torch.from_numpy(v) for k, v in encode(tokenizer, [t], True).items()})[0]
                for t in texts]
    return texts, torch.cat(rows).numpy()


@pytest.mark.build  # runs the real MiniLM in PyTorch
def test_folded_intent_head_equals_sklearn_predict_proba(minilm_embeddings):
    torch = needs_torch()
    from convert.reference import build_reference

    texts, embeddings = minilm_embeddings
    spec = resolve_model_spec("minilm-intent")
    estimator = joblib.load(spec.head_path)
    reference = build_reference(spec)
    tokenizer = load_tokenizer(TOKENIZER_JSON, 128)
    with torch.no_grad():
        folded = np.concatenate([reference.model(**{k: torch.from_numpy(v)
                                                    for k, v in encode(tokenizer, [t], True).items()})[1].numpy()
                                 for t in texts])
    expected = estimator.predict_proba(embeddings)
    np.testing.assert_allclose(folded, expected, atol=1e-5)
    assert (folded.argmax(1) == expected.argmax(1)).all()


@pytest.mark.build  # runs the real MiniLM in PyTorch
def test_folded_binary_head_equals_sklearn_predict_proba(minilm_embeddings, tmp_path):
    texts, embeddings = minilm_embeddings
    money_words = ("card", "bank", "pay", "account", "balance")
    labels = np.array(["money" if any(w in t.lower() for w in money_words) else "other"
                       for t in texts])
    estimator = LogisticRegression(max_iter=500).fit(embeddings, labels)
    joblib.dump(estimator, tmp_path / "binary.joblib")
    head = load_sklearn_head(tmp_path / "binary.joblib", hidden_size=embeddings.shape[1])
    logits = embeddings @ head.weight.T + head.bias
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, estimator.predict_proba(embeddings), atol=1e-5)
    assert head.class_names == ["money", "other"]


@pytest.mark.build  # runs the real MiniLM in PyTorch
def test_head_of_the_wrong_width_is_refused(minilm_embeddings, tmp_path):
    _, embeddings = minilm_embeddings
    estimator = LogisticRegression(max_iter=200).fit(embeddings[:, :32], np.arange(len(embeddings)) % 3)
    joblib.dump(estimator, tmp_path / "narrow.joblib")
    with pytest.raises(ConvertError, match="expects 32 input features but the encoder's pooled embedding has 384"):
        load_sklearn_head(tmp_path / "narrow.joblib", hidden_size=384)


# ------------------------------------------------------------------ tokenizer model logic

@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER_JSON, max_length=32)


def test_truncation_keeps_max_length_tokens_ending_with_sep(tokenizer):
    text = " ".join(["transfer money to my savings account"] * 40)
    ids = encode(tokenizer, [text], True)["input_ids"]
    assert ids.shape == (1, 32)
    assert ids[0, 0] == tokenizer.token_to_id("[CLS]") and ids[0, -1] == tokenizer.token_to_id("[SEP]")


def test_batch_is_padded_to_its_longest_text_not_to_max_length(tokenizer):
    tensors = encode(tokenizer, ["hi", "what is the weather like in Paris tomorrow"], True)
    assert tensors["input_ids"].dtype == np.int64
    assert tensors["input_ids"].shape == (2, 10)  # the checkpoint's own file would pad to 128
    assert tensors["attention_mask"].tolist()[0] == [1, 1, 1] + [0] * 7
    assert tensors["input_ids"][0, 3:].tolist() == [0] * 7
    assert tensors["token_type_ids"].sum() == 0


def test_non_ascii_text_tokenizes_like_the_hugging_face_tokenizer(tokenizer):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(minilm_checkpoint(), local_files_only=True)
    for text in ["naïve café in Zürich", "东京明天天气怎么样", "my card 💳 got declined 😡", "¿cuál es el saldo?"]:
        ours = encode(tokenizer, [text], False)["input_ids"][0].tolist()
        assert ours == hf(text, truncation=True, max_length=32)["input_ids"], text


def test_empty_whitespace_and_invalid_utf8_are_refused_with_the_item_named():
    with pytest.raises(InvalidText, match=r"TEXT\[1\] is empty"):
        decode_texts(np.array([b"hello", b""], dtype=object), 32)
    with pytest.raises(InvalidText, match=r"TEXT\[0\] is empty or whitespace only"):
        decode_texts(np.array([b" \t\n"], dtype=object), 32)
    with pytest.raises(InvalidText, match=r"TEXT\[2\] is not valid UTF-8 \(byte 1\)"):
        decode_texts(np.array([b"ok", b"fine", b"a\xff\xfe"], dtype=object), 32)


def test_megabyte_text_is_cut_before_tokenizing_and_still_fills_max_length(tokenizer):
    text = ("please check my account balance " * 40000).encode()
    (decoded,) = decode_texts(np.array([text], dtype=object), 32)
    assert len(decoded) == 32 * MAX_CHARS_PER_TOKEN
    assert encode(tokenizer, [decoded], False)["input_ids"].shape == (1, 32)


# ------------------------------------------------------------------ the validation gate

def _broken_copy(source, target):
    """The same graph with one encoder weight matrix scrambled: runs fine, answers wrong."""
    model = onnx.load(str(source))
    weights = max(model.graph.initializer,
                  key=lambda t: np.prod(t.dims) if t.data_type == onnx.TensorProto.FLOAT else 0)
    array = onnx.numpy_helper.to_array(weights).copy()
    np.random.default_rng(0).shuffle(array.reshape(-1))
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    onnx.save(model, str(target))
    return target


@pytest.mark.build  # runs the real MiniLM in PyTorch
def test_gate_passes_the_good_variant_and_fails_a_broken_one(tmp_path):
    needs_torch()
    from convert import validate
    from convert.export import export_onnx
    from convert.reference import build_reference
    from tests.tiny_models import tiny_bert_classifier

    spec = resolve_model_spec(str(tiny_bert_classifier(tmp_path / "tiny")))
    reference = build_reference(spec)
    good = export_onnx(reference, tmp_path / "good.onnx")
    broken = _broken_copy(good, tmp_path / "broken.onnx")
    tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", 128)
    texts = validation_sentences()
    feeds = [encode(tokenizer, [t], True) for t in texts]
    expected = validate.reference_outputs(reference.model, feeds)

    passed = validate.validate_variant("fp32", "fp32", good, expected, tokenizer, texts, "logits", True)
    failed = validate.validate_variant("fp32", "fp32", broken, expected, tokenizer, texts, "logits", True)
    assert passed.passed and passed.metrics["single_max_abs"] <= 1e-4
    assert passed.metrics["batch_vs_single_max_abs"] <= 1e-4
    assert not failed.passed
    assert any(f.startswith("single_max_abs = ") and "(<= 0.0001)" in f for f in failed.failures)
    with pytest.raises(ConvertError, match=r"validation failed: fp32: single_max_abs = [0-9.e+-]+ \(<= 0.0001\)"):
        validate.require_passed([passed, failed])


def test_validation_set_is_realistic_varied_and_spans_lengths(tokenizer):
    texts = validation_sentences()
    assert len(texts) >= 200 and len(set(texts)) == len(texts)
    lengths = [len(tokenizer.encode(t).ids) for t in texts]   # truncated at 32 here
    assert min(lengths) == 2 and max(lengths) == 32
    full = load_tokenizer(TOKENIZER_JSON, max_length=512)
    assert max(len(full.encode(t).ids) for t in texts) > 128   # truncation at 128 is exercised


def test_int8_keeps_the_head_in_fp32_and_feed_forward_scheme_also_the_attention_projections():
    """Two layers of hidden 4 / intermediate 16, plus a 4x3 head: only the 4 FFN MatMuls quantise."""
    from onnx import TensorProto, helper, numpy_helper

    from convert.optimize import kept_in_fp32

    weights, nodes, previous = [], [], "x"
    shapes = [("l0_attn_out", (4, 4)), ("l0_ffn_in", (4, 16)), ("l0_ffn_out", (16, 4)),
              ("l1_attn_out", (4, 4)), ("l1_ffn_in", (4, 16)), ("l1_ffn_out", (16, 4)), ("head", (4, 3))]
    for name, shape in shapes:
        weights.append(numpy_helper.from_array(np.zeros(shape, np.float32), f"{name}_w"))
        nodes.append(helper.make_node("MatMul", [previous, f"{name}_w"], [name], name=name))
        previous = name
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, 3])], weights)
    model = helper.make_model(graph)
    assert kept_in_fp32(model, feed_forward_only=False) == ["head"]
    assert sorted(kept_in_fp32(model, feed_forward_only=True)) == ["head", "l0_attn_out", "l1_attn_out"]
