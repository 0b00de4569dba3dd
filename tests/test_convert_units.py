"""Converter pieces on real data: config protobufs, head folding, tokenization, the gate."""
from __future__ import annotations

from pathlib import Path

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


def _word_level_tokenizer(path, padding_token: str | None):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "<pad>": 1, "<blank>": 2, "<unk>": 3, "hello": 4, "world": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if padding_token:
        tokenizer.enable_padding(pad_id=vocab[padding_token], pad_token=padding_token)
    tokenizer.save(str(path))
    return path


@pytest.mark.parametrize(("padding_token", "pad_id"), [("<blank>", 2), (None, 0)])
def test_the_serving_tokenizer_pads_with_the_token_its_file_names(tmp_path, padding_token, pad_id):
    """The file's pad token (RoBERTa's <pad> is 1), else BERT's [PAD]; never a guess that
    ignores the file (the build then checks the id against config.json's pad_token_id)."""
    tokenizer = load_tokenizer(_word_level_tokenizer(tmp_path / "tokenizer.json", padding_token), 16)
    ids = encode(tokenizer, ["hello", "hello world world"], False)["input_ids"]
    assert ids[0].tolist() == [4, pad_id, pad_id]
    assert tokenizer.padding["pad_id"] == pad_id


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


def _linear_chain(shapes, head_op="MatMul"):
    """MatMuls in a chain (and a head of its own shape, MatMul or Gemm), random weights."""
    from onnx import TensorProto, helper, numpy_helper

    weights, nodes, previous = [], [], "x"
    for name, shape in shapes:
        weights.append(numpy_helper.from_array(np.random.default_rng(1).normal(0, 1, shape).astype(np.float32),
                                               f"{name}_w"))
        op = head_op if name == "head" else "MatMul"
        nodes.append(helper.make_node(op, [previous, f"{name}_w"], [name], name=name))
        previous = name
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 3])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("scales", ["tensor", "token"])
@pytest.mark.parametrize("head_op", ["MatMul", "Gemm"])
def test_int8_quantises_the_layers_and_keeps_the_head_in_fp32(head_op, scales, tmp_path):
    """Two layers of hidden 4 / intermediate 16, plus a 4x3 head: the head (the one shape no
    other node has) stays an FP32 MatMul or Gemm, though dynamic quantisation renames a Gemm
    to `<name>_MatMul` before it applies its exclusions; every layer is quantised."""
    from convert.optimize import head_nodes, quantize_int8

    shapes = [("l0_attn_out", (4, 4)), ("l0_ffn_in", (4, 16)), ("l0_ffn_out", (16, 4)),
              ("l1_attn_out", (4, 4)), ("l1_ffn_in", (4, 16)), ("l1_ffn_out", (16, 4)), ("head", (4, 3))]
    chain = _linear_chain(shapes, head_op)
    assert head_nodes(chain) == ["head"]
    onnx.save(chain, str(tmp_path / "fp32.onnx"))
    graph = onnx.load(str(quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", scales=scales))).graph
    float_linear = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    assert [n.input[1] for n in float_linear] == ["head_w"], [n.name for n in float_linear]
    quantised = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
                    for n in graph.node)
    assert quantised == 6


# ------------------------------------------------------------------ validation texts and their parts

def test_labelled_texts_cover_every_class_of_the_intent_head_and_vary():
    needs_torch()
    from convert.head import load_sklearn_head
    from convert.reference import _head_labels
    from convert.sentences import labelled_texts

    spec = resolve_model_spec("minilm-intent")
    labels = _head_labels(spec, load_sklearn_head(spec.head_path, 384))
    texts = labelled_texts()
    assert len(texts) >= 600 and len({t.text for t in texts}) == len(texts)
    assert {t.intent for t in texts} == set(labels)            # 157: CLINC150, oos, six routing intents
    words = [len(t.text.split()) for t in texts]
    assert min(words) == 1 and max(words) > 40
    assert any(t.text.isupper() for t in texts) and any(not t.text.isascii() for t in texts)
    assert sum(any(c.isdigit() for c in t.text) for t in texts) >= 50


def test_selection_and_held_out_parts_are_disjoint_stable_and_both_large():
    from convert.sentences import HELD_OUT, SELECTION, labelled_texts, part_of, validation_texts

    texts = validation_texts()
    selection = {t.text for t in texts if t.part == SELECTION}
    held_out = {t.text for t in texts if t.part == HELD_OUT}
    assert not selection & held_out and len(selection) + len(held_out) == len(texts) >= 812
    assert min(len(selection), len(held_out)) >= 400
    # The part depends on the text alone: not on its position or on the other texts.
    assert [part_of(t.text) for t in reversed(labelled_texts())] == [t.part for t in reversed(labelled_texts())]
    assert part_of("") == HELD_OUT     # the 2-token case is graded with the held-out texts
    assert set(validation_sentences()) <= selection | held_out


def test_labelled_file_with_a_bad_line_is_refused_with_its_line_number(tmp_path):
    from convert.sentences import labelled_texts

    path = tmp_path / "bad.tsv"
    path.write_text("intent\ttext\nweather\twill it rain\nno tab on this line\n")
    with pytest.raises(ValueError, match=r"bad.tsv:3: expected 'intent<TAB>text'"):
        labelled_texts(path)


@pytest.mark.parametrize("successes, total, low, high", [
    (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (98, 100, 0.9300, 0.9945)])
def test_wilson_interval_matches_known_values(successes, total, low, high):
    from convert import validate

    lower, upper = validate.wilson_interval(successes, total)
    assert lower == pytest.approx(low, abs=1e-4) and upper == pytest.approx(high, abs=1e-4)


# ------------------------------------------------------------------ the sensitivity search

@pytest.fixture(scope="module", params=["token", "tensor"])
def tiny_graphs(tmp_path_factory, request):
    """A tiny BERT classifier: its fused FP32 graph, its every-unit INT8 graph (MatMuls with
    per-token activation scales as the build does, or ONNX Runtime's per-tensor ones), and
    its reference's answers to 64 selection texts."""
    needs_torch()
    from convert import validate
    from convert.export import export_onnx
    from convert.mixed_precision import Evaluator, SplicedGraphs
    from convert.optimize import infer_shapes, optimize_transformer, quantize_int8
    from convert.reference import build_reference
    from convert.sentences import SELECTION, validation_texts
    from convert.token_int8 import Smoothing, calibrate, units, upgrade_opset
    from tests.tiny_models import tiny_bert_classifier

    work = tmp_path_factory.mktemp("tiny-graphs")
    spec = resolve_model_spec(str(tiny_bert_classifier(work / "tiny")))
    reference = build_reference(spec)
    shaped = infer_shapes(export_onnx(reference, work / "exported.onnx"), work / "shaped.onnx")
    optimize_transformer(shaped, work / "fp32.onnx", num_heads=4, hidden_size=32)
    tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", 128)
    texts = [t.text for t in validation_texts() if t.part == SELECTION][:64]
    feeds = [encode(tokenizer, [t], True) for t in texts]
    fp32 = onnx.load(str(work / "fp32.onnx"))
    smoothing = None
    if request.param == "token":     # as the build: calibrated channel smoothing
        fp32 = upgrade_opset(fp32)
        smoothing = Smoothing(0.65, calibrate(fp32, units(fp32), feeds))
    quantize_int8(work / "fp32.onnx", work / "int8-full.onnx", scales=request.param, smoothing=smoothing)
    evaluator = Evaluator(feeds, validate.reference_outputs(reference.model, feeds), "logits", True)
    graphs = SplicedGraphs(fp32, onnx.load(str(work / "int8-full.onnx")))
    return work, graphs, evaluator, request.param, smoothing


def test_spliced_variant_equals_what_onnx_runtime_quantises_with_the_same_exclusions(tiny_graphs):
    """The search measures spliced graphs; the served graph comes from quantize_dynamic. They
    must be the same computation, or the search would choose on something never served."""
    from convert import validate
    from convert.optimize import quantize_int8

    work, graphs, evaluator, scales, smoothing = tiny_graphs
    # embeddings, 2 layers of Attention + 3 MatMuls, the pooler's MatMul; never the classifier
    assert graphs.units[0].startswith("EmbedLayerNormalization") and len(graphs.units) == 1 + 2 * 4 + 1
    assert not any("classifier" in unit for unit in graphs.units)
    kept = [graphs.units[0], graphs.units[3], graphs.units[6]]
    served = quantize_int8(work / "fp32.onnx", work / "int8-mixed.onnx", kept, scales=scales, smoothing=smoothing)
    ops = {node.op_type for node in onnx.load(str(served)).graph.node}
    assert ("MultiHeadAttention" in ops) == (scales == "token")     # the INT8 Attention's per-token form
    assert validate.runs_row_by_row(served) == (scales == "tensor")   # only per-tensor scales need it
    rows = list(range(len(evaluator.feeds)))
    spliced = evaluator.outputs(graphs.model(set(graphs.units) - set(kept)), rows)
    assert np.array_equal(spliced, evaluator.outputs(onnx.load(str(served)), rows))
    full = evaluator.outputs(onnx.load(str(work / "int8-full.onnx")), rows)
    assert np.array_equal(evaluator.outputs(graphs.model(set(graphs.units)), rows), full)
    assert not np.array_equal(spliced, full)


def test_sensitivity_search_is_deterministic_and_keeps_the_fewest_within_the_speed_budget(tiny_graphs):
    """A target no variant meets (agreement above 100%) makes the search run every step."""
    from convert.mixed_precision import MAX_STEPS, Target, search

    _, graphs, evaluator, _, _ = tiny_graphs
    target = Target(top1_agreement=1.01)
    first, second = search(graphs, evaluator, target), search(graphs, evaluator, target)
    assert first.as_dict() == second.as_dict()
    assert [s.kept_fp32 for s in first.steps] == [s.kept_fp32 for s in second.steps]
    assert set(first.sensitivity) == set(graphs.units)
    assert len(first.steps) == 1 + min(len(graphs.units) // 2, MAX_STEPS)   # never more than half in FP32
    assert first.chosen is first.steps[-1]         # unmet, every step through the gate: the most error removed
    within = first.steps[first.within_speed_budget].kept_fp32
    assert sum(graphs.macs[u] for u in within) <= (1 - target.speed_share) * sum(graphs.macs.values())
    easy = search(graphs, evaluator, Target(top1_agreement=0.0, cosine_min=0.0))
    assert easy.chosen.kept_fp32 == [] and len(easy.steps) == 1 and not easy.sensitivity   # early stop


def test_greedy_order_ranks_error_per_multiply_add_keeps_graph_order_on_ties_and_the_budget():
    from types import SimpleNamespace

    from convert.mixed_precision import Measure, Target, greedy_order

    macs = {"embed": 0, "a": 100, "b": 100, "c": 400, "d": 400}
    graphs = SimpleNamespace(units=list(macs), macs=macs)
    errors = {"embed": 0.001, "a": 0.01, "b": 0.01, "c": 0.08, "d": 0.001}
    sensitivity = {u: Measure(48, 1.0, None, e) for u, e in errors.items()}
    # per multiply-add: embed 0.001/1, c 2e-4, a = b 1e-4, d 2.5e-6; budget 0.2 * 1000 = 200;
    # beyond the budget, by error alone
    assert greedy_order(graphs, sensitivity, Target()) == (["embed", "a", "b", "c", "d"], 3)
    assert greedy_order(graphs, sensitivity, Target(speed_share=0.5)) == (["embed", "c", "a", "b", "d"], 3)


def _two_matmuls(weight: np.ndarray, path: Path) -> Path:
    """x @ weight (y) and x @ -weight (z): two MatMuls of one shape, as encoder layers repeat
    theirs (a MatMul of a shape no other has is taken for the head and left in FP32)."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "tokens", weight.shape[0]])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "tokens", weight.shape[1]])
               for name in ("y", "z")]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="dense"),
                               helper.make_node("MatMul", ["x", "minus_w"], ["z"], name="other")],
                              "two-matmuls", inputs, outputs,
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(-weight, "minus_w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def test_token_scales_keep_ordinary_tokens_exact_beside_an_outlier_and_are_batch_invariant(tmp_path):
    """One token 60x larger than the rest (as [CLS]/[SEP] activations are in BERT-like
    encoders): per-tensor scales quantise every other token coarsely, per-token scales do not,
    and a row's answer no longer depends on the rows batched with it."""
    from convert.optimize import quantize_int8

    rng = np.random.default_rng(7)
    weight = rng.normal(0, 0.05, (64, 48)).astype(np.float32)
    fp32 = _two_matmuls(weight, tmp_path / "fp32.onnx")
    x = rng.normal(0, 1, (1, 10, 64)).astype(np.float32)
    x[0, 0] *= 60
    expected = x @ weight
    ordinary = np.s_[0, 1:]
    error = {scales: np.abs(_run(quantize_int8(fp32, tmp_path / f"{scales}.onnx", scales=scales), x)[ordinary]
                            - expected[ordinary]).max() for scales in ("tensor", "token")}
    assert error["token"] < error["tensor"] / 10, error
    assert error["token"] < 0.02 * np.abs(expected[ordinary]).max()
    token = tmp_path / "token.onnx"
    alone = _run(token, x[:, 1:3])
    assert np.array_equal(_run(token, x)[:, 1:3], alone)       # the outlier row changes nothing
    assert not np.array_equal(_run(tmp_path / "tensor.onnx", x)[:, 1:3], _run(tmp_path / "tensor.onnx", x[:, 1:3]))


def test_smoothing_moves_a_channel_outlier_into_the_weights_and_cuts_the_error(tmp_path):
    """One input channel 50x larger than the rest (as LayerNorm outputs have): per-token
    scales alone still quantise the other channels coarsely; SmoothQuant's factors,
    calibrated on the inputs, divide that channel down and scale its weight row up."""
    from convert.token_int8 import Smoothing, calibrate, quantize_units, upgrade_opset

    rng = np.random.default_rng(3)
    weight = rng.normal(0, 0.05, (64, 48)).astype(np.float32)
    model = upgrade_opset(onnx.load(str(_two_matmuls(weight, tmp_path / "fp32.onnx"))))
    x = rng.normal(0, 1, (1, 12, 64)).astype(np.float32)
    x[..., 5] *= 50
    smoothing = Smoothing(0.5, calibrate(model, ["dense"], [{"x": x}]))
    assert smoothing.channel_absmax["x"].argmax() == 5
    errors = {}
    for name, used in (("plain", None), ("smoothed", smoothing)):
        path = tmp_path / f"{name}.onnx"
        onnx.save(quantize_units(model, ["dense"], used), str(path))
        errors[name] = np.abs(_run(path, x) - x @ weight).max()
    assert errors["smoothed"] < errors["plain"] / 3, errors


def test_token_scales_take_matmuls_with_constant_weights_and_refuse_other_nodes(tmp_path):
    from convert.token_int8 import quantize_units, units, upgrade_opset

    model = upgrade_opset(onnx.load(str(_two_matmuls(np.ones((4, 3), np.float32), tmp_path / "m.onnx"))))
    assert next(o.version for o in model.opset_import if o.domain == "") == 21
    assert units(model) == ["dense", "other"] and units(model, exclude=["other"]) == ["dense"]
    with pytest.raises(ValueError, match="no such nodes.*nothere"):
        quantize_units(model, ["dense", "nothere"])
    model.graph.node[0].op_type = "Gemm"
    assert units(model) == ["dense", "other"]            # a plain Gemm (a pooler) has a per-token form
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("transA", 1))
    assert units(model) == ["other"]
    with pytest.raises(ValueError, match="dense is neither a MatMul"):  # nor a plain Gemm
        quantize_units(model, ["dense"])


def test_served_step_is_the_first_to_meet_the_target_else_the_last_through_the_gate_else_the_last():
    from convert.mixed_precision import Measure, SearchResult, Step, Target

    def result(*agreements):
        return SearchResult(["a", "b", "c"], Target(),
                            [Step(list("abc"[:i]), Measure(440, a, None, 0.01)) for i, a in enumerate(agreements)])

    assert result(0.98, 0.996, 0.999).chosen.kept_fp32 == ["a"]          # first to meet 0.995
    assert result(0.98, 0.994, 0.985).chosen.kept_fp32 == ["a"]          # none meets it: last through 0.99
    assert result(0.98, 0.992, 0.994).chosen.kept_fp32 == ["a", "b"]
    assert result(0.98, 0.985, 0.989).chosen.kept_fp32 == ["a", "b"]     # none through the gate: the last
    embeddings = SearchResult(["a", "b"], Target(), [Step([], Measure(440, None, 0.975, 0.005)),
                                                     Step(["a"], Measure(440, None, 0.98, 0.02))])
    assert embeddings.chosen.kept_fp32 == []          # the gate's mean cosine (0.99) counts, not only the min


def test_changed_answers_report_how_close_the_reference_was_on_them():
    from convert.mixed_precision import changed_answers

    reference = np.log(np.array([[0.50, 0.49, 0.01], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.39, 0.01]]))
    candidate = np.log(np.array([[0.49, 0.50, 0.01], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.69, 0.01]]))
    report = changed_answers(candidate, reference)
    assert report["texts"] == 2 and report["of"] == 4
    assert report["largest_reference_margin"] == pytest.approx(0.21)
    assert report["reference_near_ties"] == 1
    assert changed_answers(reference, reference)["largest_reference_margin"] is None
# ------------------------------------------------------------------ the build's summary

def _graded(variant: str, part: str, sentences: int, labelled: int, metrics: dict[str, float]):
    """A variant's report as the gate writes it: its intervals and limits from convert.validate."""
    from convert import validate

    report = validate.VariantReport(variant=variant, precision=variant, sentences=sentences, part=part,
                                    labelled=labelled, metrics=metrics)
    validate.add_intervals(report)
    return validate.apply_thresholds(report)


def _minilm_intent_build():
    """The figures of the minilm-intent build of 2026-12-02 (its manifest.json)."""
    from pathlib import Path

    from convert.optimize import FusionReport
    from convert.pipeline import BuildResult

    reports = [
        _graded("fp32", "all", 916, 704, {"single_accuracy": 0.8877840909090909, "single_max_abs": 8.58306884765625e-06,
                                          "single_max_abs_probability": 1.430511474609375e-06,
                                          "single_top1_agreement": 1.0}),
        _graded("int8", "held-out", 476, 367, {"single_accuracy": 0.885558583106267,
                                               "single_max_abs": 0.3153071403503418,
                                               "single_max_abs_probability": 0.0481410026550293,
                                               "single_top1_agreement": 0.9957983193277311}),
    ]
    variants = {"fp32": {"size_mb": 90.6, "p50_ms_16_tokens": 2.6031460001831874,
                         "p50_ms_128_tokens": 10.319001499738079},
                "int8": {"size_mb": 75.1, "p50_ms_16_tokens": 1.8940730005851947,
                         "p50_ms_128_tokens": 8.151014997565653}}
    fusion = FusionReport(534, 64, {"Attention": 6, "SkipLayerNormalization": 12}, attention_fused=True)
    return BuildResult("minilm-intent", Path("triton_models"), fusion, reports, variants)


def test_the_build_summary_fits_80_columns_and_shows_every_figure_whole():
    needs_torch()   # convert.__main__ imports the pipeline, which imports the exporter
    from rich.console import Console

    from convert.__main__ import print_summary

    terminal = Console(width=80, record=True, color_system=None)
    print_summary(_minilm_intent_build(), terminal)
    text = terminal.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text, text
    for row in (["fp32", "90.6", "2.60", "10.32", "all 916", "passed"],
                ["int8", "75.1", "1.89", "8.15", "476 held-out", "passed"]):
        assert any(all(cell in line for cell in row) for line in text.splitlines()), (row, text)
    assert "validation, one text at a time ([95% Wilson interval]):" in text, text
    flowing = " ".join(text.split())   # the figures as one run of words, wherever the lines break
    assert ("fp32 (all 916): accuracy 0.8878 [0.8623, 0.9090], max_abs 8.583e-06, "
            "top1_agreement 1 [0.9958, 1.0000]") in flowing, text
    assert ("int8 (476 held-out): accuracy 0.8856 [0.8489, 0.9142], max_abs 0.3153, "
            "top1_agreement 0.9958 [0.9848, 0.9988]") in flowing, text


def test_a_figure_wider_than_the_line_gets_a_line_of_its_own_never_cut():
    needs_torch()
    from convert.__main__ import figure_lines

    int8 = _minilm_intent_build().reports[1]
    assert figure_lines(int8, 30) == ["  int8 (476 held-out):", "    accuracy 0.8856 [0.8489, 0.9142],",
                                      "    max_abs 0.3153,", "    top1_agreement 0.9958 [0.9848, 0.9988]"]
