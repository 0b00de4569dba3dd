"""`python -m perf tune`: Triton Model Analyzer's config search on this machine's CPU server.

    space.py        the one search space (presets) and the Model Analyzer configs built from it
    environment.py  Model Analyzer's own venv (.venv/analyzer) and the environment it runs in
    runner.py       one Model Analyzer run per token length and search, progress shown
    results.py      its checkpoint read back into rows
    report.py       the best configs within a p99 budget: tune.md, tune.csv, tune.json
    apply.py        a chosen config written into a built repository through modelrepo
    cli.py          the subcommand
"""
