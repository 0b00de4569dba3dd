"""perf: perf_analyzer sweeps of the Triton deployment beside in-process and HTTP baselines.

`python -m perf install` puts perf_analyzer under `.venv/perf_analyzer/`;
`python -m perf run --preset quick` measures and writes a results folder with a report.
"""
