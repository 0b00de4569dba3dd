"""The batch-throughput gap: served batch-32 requests against plain ONNX Runtime in-process, in one run.

    python -m perf.gap --model-repository triton_models --model minilm-embed
    python -m perf gap --model-repository triton_models --model minilm-embed   # the same

Every variant answers the same exact-length texts, 32 per request. The variants take turns,
a few requests back to back each (the first not timed: it absorbs what the previous variant
left running), for as long as each has been timed for `--seconds`; so a busy spell of a
shared machine falls on every variant alike, and each turn gives a paired ratio to `ort`.

- cli.py: the options, one parser for both commands; study.py: one run, served and in-process;
- variants.py: what is measured (in-process ONNX Runtime, the served models over HTTP with
  JSON or binary tensors and gRPC, copies of the served models with other settings);
- measure.py: the turns, CPU time, Triton's per-model statistics;
- report.py: gap.md, gap.csv (per variant and length), breakdown.csv (server side per model),
  samples.csv (per request).
"""
