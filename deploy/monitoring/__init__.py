"""Monitoring of triton-encoders: the shared rule files, the dashboard and the tools that check them.

    contract     where the chart's monitoring files are, the names they must hold, readers for them
    dashboard    writes the Grafana dashboard (python -m deploy.monitoring.dashboard)
    prometheus   a local Prometheus process and its HTTP API
    local        local tritonservers standing in for pods, scraped by that Prometheus
    load         perf_analyzer on every pod at once, for a fixed time
    ramp         a load ramp read back from Prometheus into a figure (python -m deploy.monitoring.ramp)

See docs/monitoring.md.
"""
