"""perf.peers: the embedding servers and libraries a user would pick instead, in the same run.

`python -m perf peers` loads the same local MiniLM weights into infinity-emb (REST server,
torch and ONNX Runtime engines), sentence-transformers (torch and ONNX backends) and
fastembed, beside this project's ensemble on the local tritonserver and plain ONNX Runtime
on the repository's own graph. Every peer's embeddings are checked against
sentence-transformers (torch) before its speed is measured; see docs/peers.md.

The peers' packages clash with the serving venv (transformers 4 against 5), so they live in
their own venv (.venv/peers, scripts/setup-peers.sh) and run through `_runner.py` there.
"""
