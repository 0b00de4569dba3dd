"""The build, step by step: checkpoint -> validated variants -> Triton model repository.

Each step is one function call, timed and shown. Steps hand each other files in a
scratch folder; the repository is only written once every variant passed validation.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx

from . import _modelrepo as modelrepo
from . import mixed_precision, optimize, token_int8, validate
from . import triton_config as tc
from ._modelrepo import ManifestEntry, ModelNames, Precision, Target, Task, read_manifest
from .errors import ConvertError
from .export import export_onnx
from .int8_report import int8_facts, speed_facts
from .latency import latencies_by_length
from .optimize import ActivationScales
from .postprocess import add_label_outputs
from .progress import console, step
from .python_models.tokenizer_model import encode, load_tokenizer
from .reference import Reference, build_reference
from .repository import (
    ModelFolder,
    check_writable,
    install,
    int64_tensor_bytes,
    python_model_source,
    stage_folders,
    string_tensor_bytes,
)
from .sentences import HELD_OUT, SELECTION, ValidationText, validation_sentences, validation_texts
from .source import ModelSpec

# Which variants a target builds, and which precision it serves by default. PLAIN is the
# unfused FP32 graph that TensorRT takes (validated, never served by ONNX Runtime).
PLAIN = validate.PLAIN
TARGET_VARIANTS = {Target.CPU: (Precision.FP32, Precision.INT8),
                   Target.GPU: (Precision.FP32, Precision.FP16, PLAIN)}
DEFAULT_PRECISION = {Target.CPU: Precision.INT8, Target.GPU: Precision.FP16}
WARMUP_SENTENCE = "what is the weather like in Paris tomorrow"


@dataclass(frozen=True)
class BuildOptions:
    target: Target = Target.CPU
    precision: Precision | None = None    # served precision; default per target
    max_length: int = 128
    max_batch_size: int = 32
    out: Path = Path("triton_models")
    tensorrt_plan: bool = True            # gpu target: also build a tensorrt_plan model
    intra_op_threads: int = 0             # 0 = all cores
    # Measured on 2 cores (perf/NOTES.md): no queue delay gave the lowest latency at concurrency 1.
    queue_delay_us: int = 0
    # ORT intra-op threads sleep when idle instead of spinning. Spinning won a few percent of
    # batch-1 latency on an idle machine (perf/NOTES.md), but where the cores are shared it
    # made batch-32 requests 1.9x and single texts 1.8x slower (docs/throughput.md).
    spin: bool = False

    @property
    def served_precision(self) -> Precision:
        return self.precision or DEFAULT_PRECISION[self.target]


@dataclass
class BuildResult:
    name: str
    out: Path
    fusion: optimize.FusionReport
    reports: list[validate.VariantReport]
    variants: dict[str, dict] = field(default_factory=dict)   # precision -> size, latency
    timings: dict[str, float] = field(default_factory=dict)
    manifest_entry: ManifestEntry | None = None


def check_options(spec: ModelSpec, options: BuildOptions, reference_positions: int | None = None) -> None:
    if options.target not in TARGET_VARIANTS:
        raise ConvertError(f"unknown target '{options.target}'; choose cpu or gpu")
    if options.served_precision not in TARGET_VARIANTS[options.target] or options.served_precision == PLAIN:
        raise ConvertError(f"precision {options.served_precision} is not built for the {options.target} target; "
                           f"choose one of {', '.join(TARGET_VARIANTS[options.target])}")
    if not 1 <= options.max_batch_size <= 1024:
        raise ConvertError(f"--max-batch-size {options.max_batch_size} must be between 1 and 1024")
    if options.max_length < 8:
        raise ConvertError(f"--max-length {options.max_length} is too short (8 tokens at least)")
    if reference_positions and options.max_length > reference_positions:
        raise ConvertError(f"--max-length {options.max_length} exceeds the model's {reference_positions} positions")


def check_tokenizer(spec: ModelSpec, tokenizer, reference: Reference) -> None:
    """The serving tokenizer must pad with the model's pad id (RoBERTa's is 1, and its position
    ids count the tokens that are not it) and produce no id outside the embedding table."""
    pad_id = tokenizer.padding["pad_id"]
    if pad_id != reference.pad_id:
        raise ConvertError(f"{spec.checkpoint}/tokenizer.json pads with id {pad_id} but config.json's pad_token_id is "
                           f"{reference.pad_id}; give the tokenizer the model's pad token")
    if tokenizer.get_vocab_size() > reference.vocab_size:
        raise ConvertError(f"{spec.checkpoint}/tokenizer.json has {tokenizer.get_vocab_size()} tokens but the model's "
                           f"embedding table only {reference.vocab_size}; the checkpoint and tokenizer do not match")


def fingerprint(spec: ModelSpec, options: BuildOptions) -> str:
    """Changes when the converter's code, the options or the checkpoint change: a stale repository."""
    digest = hashlib.sha256()
    # The contract package writes configs and the manifest: a change there is a change of build too.
    for package in (Path(__file__).parent, Path(modelrepo.__file__).parent):
        for path in sorted(package.rglob("*")):
            if path.suffix in {".py", ".txt", ".tsv"}:
                digest.update(path.read_bytes())
    digest.update(json.dumps({**asdict(options), "out": None}, sort_keys=True, default=str).encode())
    digest.update(json.dumps({**asdict(spec), "checkpoint": str(spec.checkpoint)}, default=str).encode())
    for path in sorted(spec.checkpoint.iterdir()):
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    if options.target == Target.GPU and options.tensorrt_plan:
        digest.update(_tensorrt_identity().encode())   # a plan only runs where it was built
    return digest.hexdigest()[:16]


def _tensorrt_identity() -> str:
    from . import tensorrt_engine

    devices = tensorrt_engine.gpu_devices() if tensorrt_engine.gpu_available() else []
    return f"{tensorrt_engine.bindings_version()}|" + "|".join(f"{d.name}:{d.compute_capability}" for d in devices)


def is_up_to_date(spec: ModelSpec, options: BuildOptions) -> bool:
    entry = read_manifest(options.out).get(spec.name)
    return entry is not None and entry.fingerprint == fingerprint(spec, options) and all(
        (options.out / folder).is_dir() for folder in entry.folders)


# ---------------------------------------------------------------- graph steps

def build_variants(reference: Reference, work: Path, target: Target, served: Precision,
                   timings: dict) -> tuple[optimize.FusionReport, dict[str, Path]]:
    """FP32 (the optimised graph every other variant starts from) and the GPU variants;
    INT8 comes from quantize_validated, which needs the validation gate."""
    with step("export to ONNX (eager attention)", timings):
        raw = export_onnx(reference, work / "exported.onnx")
    with step("symbolic shape inference", timings):
        shaped = optimize.infer_shapes(raw, work / "shaped.onnx")
    with step("transformer optimizer (fusions)", timings):
        fusion = optimize.optimize_transformer(shaped, work / "fp32.onnx", num_heads=reference.num_heads,
                                               hidden_size=reference.hidden_size, use_gpu=target == Target.GPU)
    console.print(f"  fusions: {fusion.describe()}")
    if not fusion.attention_fused:
        console.print("  [yellow]attention did not fuse: the graph runs, but slower than it should[/yellow]")
    if not fusion.embeddings_fused:
        console.print("  [yellow]embeddings did not fuse (ONNX Runtime fuses them only for positions numbered "
                      "from 0, not RoBERTa's): a few more nodes per request, attention unaffected[/yellow]")
    variants = {Precision.FP32: work / "fp32.onnx"}
    if PLAIN in TARGET_VARIANTS[target]:
        # Unfused, for TensorRT (as an ORT execution provider or a plan), which cannot
        # take ONNX Runtime's contrib operators and applies FP16 itself.
        variants[PLAIN] = raw
    if served == Precision.FP16:
        with step("FP16 conversion (norms/softmax in FP32)", timings):
            variants[Precision.FP16] = optimize.convert_fp16(variants[Precision.FP32], work / "fp16.onnx")
    return fusion, variants


@dataclass(frozen=True)
class ValidationSet:
    """The texts, the PyTorch reference's answers to them, and how to check a variant."""
    texts: list[str]
    expected: np.ndarray
    tokenizer: object
    output: str
    with_types: bool
    parts: list[str]               # selection or held-out, per text
    classes: np.ndarray            # a person's class index per text; -1 when unlabelled or unknown
    part: str = "all"

    def subset(self, part: str) -> ValidationSet:
        rows = [i for i, p in enumerate(self.parts) if p == part]
        return ValidationSet([self.texts[i] for i in rows], self.expected[rows], self.tokenizer, self.output,
                             self.with_types, [part] * len(rows), self.classes[rows], part)

    def check(self, precision: str, path: Path) -> validate.VariantReport:
        return validate.validate_variant(precision, precision, path, self.expected, self.tokenizer, self.texts,
                                         self.output, self.with_types, self.classes, self.part)

    def evaluator(self) -> mixed_precision.Evaluator:
        feeds = [encode(self.tokenizer, [text], self.with_types) for text in self.texts]
        return mixed_precision.Evaluator(feeds, self.expected, self.output, self.output == "logits")


def person_classes(texts: list[ValidationText], labels: list[str]) -> np.ndarray:
    """Class indices of the people's intents, when the model's labels hold every one of them
    (the minilm-intent head the texts were written for); else none (-1 throughout)."""
    intents = {t.intent for t in texts if t.intent}
    if not labels or not intents <= set(labels):
        return np.full(len(texts), -1)
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[t.intent] if t.intent else -1 for t in texts])


def reference_answers(reference: Reference, tokenizer, timings: dict) -> ValidationSet:
    texts = validation_texts()
    with_types = "token_type_ids" in reference.input_names
    with step(f"PyTorch reference on {len(texts)} sentences", timings):
        feeds = [encode(tokenizer, [t.text], with_types) for t in texts]
        expected = validate.reference_outputs(reference.model, feeds)
    return ValidationSet([t.text for t in texts], expected, tokenizer, reference.output_names[0], with_types,
                         [t.part for t in texts], person_classes(texts, reference.labels))


def run_validation(checks: ValidationSet, variants: dict[str, Path], timings: dict) -> list[validate.VariantReport]:
    with step(f"validate {', '.join(variants)} on {len(checks.texts)} sentences", timings):
        return [checks.check(precision, path) for precision, path in variants.items()]


@dataclass
class Int8Choice:
    path: Path                           # the graph the gate graded
    full: Path                           # ONNX Runtime's full dynamic INT8: the speed the target is measured against
    report: validate.VariantReport       # on the held-out texts
    search: mixed_precision.SearchResult


TOKEN = ActivationScales.TOKEN   # the INT8 the build serves: per-token scales (convert/token_int8.py)


def quantize_validated(fp32: Path, work: Path, checks: ValidationSet, timings: dict) -> Int8Choice:
    """INT8 with the FP32 units the sensitivity search chose on the selection texts, graded
    by the gate on the held-out texts (convert/mixed_precision.py)."""
    selection, held_out = checks.subset(SELECTION), checks.subset(HELD_OUT)
    evaluator = selection.evaluator()
    # the units are spliced into the FP32 graph at the INT8 graph's opset
    fp32_graph = token_int8.upgrade_opset(onnx.load(str(fp32)))
    with step("INT8 dynamic per-channel, every operator but the head", timings):
        full = optimize.quantize_int8(fp32, work / "int8-full.onnx")
    with step(f"per-token INT8: smoothing calibrated on {len(selection.texts)} selection texts", timings):
        head = optimize.head_nodes(fp32_graph)
        units = token_int8.units(fp32_graph, exclude=head)
        leftovers = token_int8.per_tensor_leftovers(fp32_graph, exclude=head)
        if leftovers:
            console.print(f"  [yellow]no per-token form for {', '.join(leftovers)}: ONNX Runtime's per-tensor INT8 "
                          "there, and the INT8 encoder runs each sentence alone[/yellow]")
        smoothing, by_alpha = mixed_precision.choose_smoothing(fp32_graph, units, evaluator)
        every_unit = optimize.quantize_int8(fp32, work / "int8-token.onnx", scales=TOKEN, smoothing=smoothing)
    with step(f"sensitivity search on {len(selection.texts)} selection texts", timings):
        graphs = mixed_precision.SplicedGraphs(fp32_graph, onnx.load(str(every_unit)))
        search = mixed_precision.search(graphs, evaluator, mixed_precision.Target())
        search.smoothing = {"alpha": smoothing.alpha, "selection_error": {
            str(alpha): round(measure.error, 8) for alpha, measure in by_alpha.items()}}
    kept = search.chosen.kept_fp32
    console.print(f"  FP32 units kept: {len(kept)} of {len(search.units)}" + (f" ({', '.join(kept)})" if kept else ""))
    path = every_unit
    if kept:
        with step(f"INT8 with {len(kept)} units in FP32", timings):
            path = optimize.quantize_int8(fp32, work / "int8.onnx", kept, scales=TOKEN, smoothing=smoothing)
    with step(f"validate int8 on {len(held_out.texts)} held-out texts", timings):
        report = held_out.check(Precision.INT8, path)
    return Int8Choice(path, full, report, search)


def choose_served_int8(options: BuildOptions, variants: dict[str, Path], reports: list, work: Path,
                       checks: ValidationSet, timings: dict) -> tuple[BuildOptions, Int8Choice | None]:
    """Adds the validated INT8 variant; without one, a default build serves FP32 (said loudly)
    and an explicit --precision int8 fails. Returns the options the repository is written with."""
    choice = quantize_validated(variants[Precision.FP32], work, checks, timings)
    if choice.report.passed:
        variants[Precision.INT8] = choice.path
        reports.append(choice.report)
        return options, choice
    failures = "; ".join(choice.report.failures)
    if options.precision == Precision.INT8:
        raise ConvertError(f"no INT8 variant passed the gate on the held-out texts on this CPU ({failures}); "
                           "build with --precision fp32")
    console.print(f"  [yellow]no INT8 variant passed the gate on the held-out texts ({failures}): "
                  "serving FP32[/yellow]")
    return replace(options, precision=Precision.FP32), choice


def add_serving_outputs(reference: Reference, variants: dict[str, Path], work: Path) -> dict[str, Path]:
    """Classifiers get `label` and `score` outputs in every served graph."""
    if not reference.labels:
        return variants
    return {precision: add_label_outputs(path, work / f"{precision}-served.onnx", reference.labels)
            for precision, path in variants.items()}


def build_tensorrt_plan(plain_onnx: Path, work: Path, reference: Reference, options: BuildOptions,
                        timings: dict) -> tuple[Path, dict]:
    """A TensorRT plan from the plain exported graph: TensorRT parses standard ONNX ops, not
    ONNX Runtime's fused ones, and chooses its own FP16 kernels (norms kept FP32)."""
    from . import tensorrt_engine  # lazy: TensorRT exists only on GPU hosts

    if not tensorrt_engine.gpu_available():
        raise ConvertError("TensorRT engines can only be built on a machine with an NVIDIA GPU; use --target cpu, "
                           "--no-tensorrt-plan, or run the convert service of docker-compose.yml on a GPU host")
    batch, length = options.max_batch_size, options.max_length
    profile = {name: ((1, 1), (max(1, batch // 2), min(length, 64)), (batch, length)) for name in reference.input_names}
    with step("TensorRT engine (FP16, timing cache)", timings):
        try:
            info = tensorrt_engine.build_engine(plain_onnx, work / "model.plan", profile=profile, fp16=True,
                                                timing_cache=work / "timing.cache")
        except (tensorrt_engine.GpuUnavailableError, tensorrt_engine.EngineBuildError, ValueError) as error:
            raise ConvertError(f"TensorRT engine build failed: {error}") from None
    return work / "model.plan", asdict(info)


# ---------------------------------------------------------------- repository layout

@dataclass(frozen=True)
class Layout:
    """Names and tensors of the models one build writes."""
    name: str
    token_tensors: list[tc.Tensor]
    encoder_outputs: list[tc.Tensor]
    ensemble_outputs: dict[str, tc.Tensor]     # encoder output -> ensemble output

    @property
    def names(self) -> ModelNames:
        return ModelNames.of(self.name)


def make_layout(name: str, reference: Reference) -> Layout:
    tokens = [tc.Tensor(n, tc.INT64, (-1,)) for n in reference.input_names]
    if reference.labels:
        classes = len(reference.labels)
        encoder_outputs = [tc.Tensor("probabilities", tc.FP32, (classes,), "labels.txt"),
                           tc.Tensor("label", tc.STRING, (1,)), tc.Tensor("score", tc.FP32, (1,))]
        names = {"probabilities": modelrepo.PROBABILITIES, "label": modelrepo.LABEL, "score": modelrepo.SCORE}
    else:
        encoder_outputs = [tc.Tensor("embedding", tc.FP32, (reference.hidden_size,))]
        names = {"embedding": modelrepo.EMBEDDING}
    ensemble_outputs = {t.name: tc.Tensor(names[t.name], t.data_type, t.dims, t.label_filename)
                        for t in encoder_outputs}
    return Layout(name, tokens, encoder_outputs, ensemble_outputs)


def _warmup_contents(layout: Layout, tokenizer, with_types: bool) -> tuple[dict[str, bytes], int]:
    feed = encode(tokenizer, [WARMUP_SENTENCE], with_types)
    contents = {f"warmup/{name}": int64_tensor_bytes(value[0]) for name, value in feed.items()}
    return contents, feed["input_ids"].shape[1]


def _labels_file(labels: list[str]) -> dict[str, bytes]:
    return {"labels.txt": ("\n".join(labels) + "\n").encode()} if labels else {}


def repository_folders(spec: ModelSpec, reference: Reference, layout: Layout, options: BuildOptions,
                       served_graphs: dict[str, Path], plan: Path | None) -> list[ModelFolder]:
    served_onnx = served_graphs[options.served_precision]
    tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", options.max_length)
    with_types = "token_type_ids" in reference.input_names
    warmup, warmup_length = _warmup_contents(layout, tokenizer, with_types)
    warmup_files = {t.name: t.name for t in layout.token_tensors}
    batching = tc.Batching(options.max_batch_size, options.queue_delay_us)
    labels = _labels_file(reference.labels)
    pad_id = tokenizer.padding["pad_id"]

    folders = [ModelFolder(
        layout.names.tokenizer,
        tc.tokenizer_config(layout.names.tokenizer, layout.token_tensors, tc.Batching(options.max_batch_size, 0),
                            max_length=options.max_length),
        files={"1/model.py": python_model_source("tokenizer"), "1/tokenizer.json": spec.checkpoint / "tokenizer.json"},
        contents={"warmup/text": string_tensor_bytes([WARMUP_SENTENCE])})]

    if options.target == Target.CPU:
        config = tc.cpu_encoder_config(layout.names.encoder, layout.token_tensors, layout.encoder_outputs, batching,
                                       onnx_file="model.onnx", intra_op_threads=options.intra_op_threads,
                                       spin=options.spin,
                                       warmup_files=warmup_files, warmup_length=warmup_length, pad_id=pad_id,
                                       row_by_row=validate.runs_row_by_row(served_onnx))
        folders.append(ModelFolder(layout.names.encoder, config, {"1/model.py": python_model_source("onnx_encoder"),
                                                            "1/model.onnx": served_onnx}, warmup | labels))
        folders.append(fused_folder(spec, layout, options, served_onnx, labels, pad_id))
    else:
        # TensorRT execution provider on the plain graph; CUDA alone on the fused FP16 graph.
        for name, use_trt, graph in ((layout.names.encoder, True, served_graphs[PLAIN]),
                                     (layout.names.cuda_encoder, False, served_graphs[options.served_precision])):
            config = tc.gpu_encoder_config(name, layout.token_tensors, layout.encoder_outputs, batching,
                                           max_length=options.max_length, opt_length=min(options.max_length, 64),
                                           use_tensorrt=use_trt, warmup_files=warmup_files, warmup_length=warmup_length)
            folders.append(ModelFolder(name, config, {"1/model.onnx": graph}, warmup | labels))
        if plan is not None:
            plan_outputs = [tc.Tensor(n, tc.FP32, (len(reference.labels) or reference.hidden_size,))
                            for n in reference.output_names]
            config = tc.tensorrt_plan_config(layout.names.plan_encoder, layout.token_tensors, plan_outputs, batching,
                                             warmup_files=warmup_files, warmup_length=warmup_length)
            folders.append(ModelFolder(layout.names.plan_encoder, config, {"1/model.plan": plan}, warmup | labels))

    ensemble = tc.ensemble_config(
        layout.name, tokenizer=layout.names.tokenizer, encoder=layout.names.encoder,
        token_tensors=[t.name for t in layout.token_tensors], outputs=layout.ensemble_outputs,
        max_batch_size=options.max_batch_size,
        parameters={"task": spec.task, "max_length": str(options.max_length), "target": options.target,
                    "precision": options.served_precision})
    folders.append(ModelFolder(layout.name, ensemble, {}, {"1/.keep": b""} | labels))
    return folders


def fused_folder(spec: ModelSpec, layout: Layout, options: BuildOptions, served_onnx: Path,
                 labels: dict[str, bytes], pad_id: int) -> ModelFolder:
    """`<name>-fused`: tokenizer and encoder in one Python model, the ensemble's outputs."""
    outputs = list(layout.ensemble_outputs.values())
    output_map = {tensor.name: graph_name for graph_name, tensor in layout.ensemble_outputs.items()}
    parameters = {"max_length": options.max_length, "onnx_file": "model.onnx", "pad_id": pad_id,
                  "intra_op_threads": options.intra_op_threads, "spin": int(options.spin),
                  "output_map": json.dumps(output_map),
                  "row_by_row": int(validate.runs_row_by_row(served_onnx)),
                  "task": spec.task, "target": options.target, "precision": options.served_precision}
    batching = tc.Batching(options.max_batch_size, options.queue_delay_us)
    config = tc.text_model_config(layout.names.fused, outputs, batching, parameters)
    files = {"1/model.py": python_model_source("text_encoder"),
             "1/tokenizer_model.py": python_model_source("tokenizer"),
             "1/onnx_encoder_model.py": python_model_source("onnx_encoder"),
             "1/tokenizer.json": spec.checkpoint / "tokenizer.json", "1/model.onnx": served_onnx}
    warmup = {"warmup/text": string_tensor_bytes([WARMUP_SENTENCE])}
    return ModelFolder(layout.names.fused, config, files, warmup | labels)


# ---------------------------------------------------------------- the whole build

def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import tokenizers
    import torch
    import transformers
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def _manifest_entry(spec, options, layout, folders, fusion, reports, variants, extra) -> ManifestEntry:
    evidence = {"model_type": spec.model_type, "fusion": asdict(fusion), "variants": variants,
                "validation": [r.as_dict() for r in reports],
                **extra["quantization"], "versions": _versions(), **extra.get("tensorrt", {}),
                "build_seconds": extra["build_seconds"]}
    return ManifestEntry(
        name=spec.name, task=Task(spec.task), target=options.target, precision=options.served_precision,
        max_length=options.max_length, max_batch_size=options.max_batch_size,
        ensemble=layout.name, tokenizer=layout.names.tokenizer, encoder=layout.names.encoder,
        fused=layout.names.fused if options.target == Target.CPU else None, folders=[f.name for f in folders],
        source=str(spec.checkpoint), head=str(spec.head_path) if spec.head_path else None,
        normalize=spec.normalize, fingerprint=extra["fingerprint"], inputs={modelrepo.TEXT_INPUT: "TYPE_STRING"},
        outputs={t.name: list(t.dims) for t in layout.ensemble_outputs.values()},
        num_labels=len(extra["labels"]), evidence=evidence)


def measure_variants(variants: dict[str, Path], reference: Reference, tokenizer, options: BuildOptions,
                     choice: Int8Choice | None, timings: dict) -> dict[str, dict]:
    """Size and in-process latency of each variant; with an INT8 choice, also of full INT8
    (every unit quantised), which the chosen variant's speed is measured against."""
    measured = dict(variants)
    if choice is not None and Precision.INT8 in variants:
        measured["int8-full"] = choice.full
    facts = {precision: {"size_mb": round(path.stat().st_size / 1e6, 1)} for precision, path in measured.items()}
    timed = {precision: path for precision, path in measured.items()
             if options.target == Target.CPU or precision != Precision.FP16}
    with step(f"in-process latency at 16 and 128 tokens, {len(timed)} variants in turn", timings):
        latencies = latencies_by_length(timed, tokenizer, max(validation_sentences(), key=len),
                                        reference.output_names[0], "token_type_ids" in reference.input_names)
    for precision, figures in latencies.items():
        facts[precision] |= figures
    return facts


def quantization_facts(choice: Int8Choice | None, checks: ValidationSet, variants: dict[str, Path],
                       facts: dict[str, dict], timings: dict) -> dict:
    """The manifest's INT8 fields (convert/int8_report.py); {} when INT8 was not asked for."""
    if choice is None:
        return {}
    if Precision.INT8 not in variants:
        return {"int8_rejected": "; ".join(choice.report.failures), "int8_choice": int8_facts(choice, None, None)}
    with step("held-out figures of FP32 and full INT8", timings):
        held_out = checks.subset(HELD_OUT)
        comparison = heldout_comparison(held_out, variants[Precision.FP32], choice.full, choice.path)
    return {"int8_scheme": "mixed" if choice.search.chosen.kept_fp32 else "full",
            "int8_choice": int8_facts(choice, speed_facts(facts), comparison)}


def heldout_comparison(held_out: ValidationSet, fp32: Path, full_int8: Path, served_int8: Path) -> dict:
    """Accuracy of the reference and FP32 on the held-out texts, how full INT8 does there, and
    how sure the reference was of the answers the served INT8 changed."""
    evaluator = held_out.evaluator()
    rows = list(range(len(held_out.texts)))
    fp32_outputs = evaluator.outputs(onnx.load(str(fp32)), rows)
    full = mixed_precision.measure(evaluator.outputs(onnx.load(str(full_int8)), rows), held_out.expected,
                                   evaluator.is_classifier)
    accuracy, changed = {}, None
    if evaluator.is_classifier:
        changed = mixed_precision.changed_answers(evaluator.outputs(onnx.load(str(served_int8)), rows),
                                                  held_out.expected)
        if (held_out.classes >= 0).any():
            accuracy = {"reference": validate.accuracy(held_out.expected, held_out.classes),
                        "fp32": validate.accuracy(fp32_outputs, held_out.classes)}
    return {"full_int8": full, "accuracy": accuracy, "changed_answers": changed}


def build(spec: ModelSpec, options: BuildOptions) -> BuildResult:
    timings: dict[str, float] = {}
    check_options(spec, options)
    requested = fingerprint(spec, options)   # of the options asked for, even if INT8 falls back to FP32
    check_writable(options.out)
    with tempfile.TemporaryDirectory(prefix="convert-") as scratch:
        work = Path(scratch)
        with step(f"load {spec.checkpoint.name} ({spec.task})", timings):
            reference = build_reference(spec)
        check_options(spec, options, reference.max_positions)
        tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", options.max_length)
        check_tokenizer(spec, tokenizer, reference)
        fusion, variants = build_variants(reference, work, options.target, options.served_precision, timings)
        checks = reference_answers(reference, tokenizer, timings)
        reports = run_validation(checks, variants, timings)
        for report in reports:
            console.print(f"  {report.variant}: {'passed' if report.passed else 'FAILED'}")
        validate.require_passed(reports)
        choice = None
        if options.served_precision == Precision.INT8:
            options, choice = choose_served_int8(options, variants, reports, work, checks, timings)

        served = add_serving_outputs(reference, variants, work)
        plan, extra = None, {"labels": reference.labels}
        if options.target == Target.GPU and options.tensorrt_plan:
            plan, engine = build_tensorrt_plan(work / "exported.onnx", work, reference, options, timings)
            extra["tensorrt"] = {"tensorrt": engine}
        variant_facts = measure_variants(variants, reference, tokenizer, options, choice, timings)
        extra["quantization"] = quantization_facts(choice, checks, variants, variant_facts, timings)
        layout = make_layout(spec.name, reference)
        with step("write the Triton repository", timings):
            folders = repository_folders(spec, reference, layout, options, served, plan)
            previous = read_manifest(options.out).get(spec.name)
            extra |= {"build_seconds": {k: round(v, 2) for k, v in timings.items()}, "fingerprint": requested}
            entry = _manifest_entry(spec, options, layout, folders, fusion, reports, variant_facts, extra)
            staging = stage_folders(folders, options.out)
            try:
                install(staging, options.out, entry,
                        [f for f in (previous.folders if previous else []) if f not in entry.folders])
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return BuildResult(spec.name, options.out, fusion, reports, variant_facts, timings, entry)
