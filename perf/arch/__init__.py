"""python -m perf arch: the size-and-length study (BERT-base to BERT-tiny, 16 to 512 tokens).

configs.py   the five architectures, their checkpoints (random weights but MiniLM's) and builds
runtimes.py  PyTorch eager, TorchScript, ONNX Runtime FP32 / INT8, Triton fused / ensemble
study.py     the grid a preset measures, run in one process, rows to results.csv
report.py    report.md, summary tables and plots from that CSV
"""
