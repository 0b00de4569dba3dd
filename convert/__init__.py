"""convert: a Hugging Face encoder to a validated Triton model repository.

From a terminal, `python -m convert [preset | checkpoint folder] [options]`. From Python,
the same build (this is what `python -m perf` calls when the repository is missing):

    from convert import build_repository
    build_repository("minilm-intent", Path("triton_models"), if_stale=True)

The repository it writes follows modelrepo, the contract every later stage reads it by.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # the build pulls in torch: imported when a build is asked for, not before
    from .pipeline import BuildOptions, BuildResult
    from .source import ModelSpec


def plan_build(model: str, out: Path, *, task: str | None = None, name: str | None = None, head: Path | None = None,
               normalize: bool = True, **options: Any) -> tuple[ModelSpec, BuildOptions]:
    """What `python -m convert MODEL --out OUT ...` would build; `options` are BuildOptions fields
    (target, precision, max_length, max_batch_size, ...). Raises ConvertError for bad input."""
    from ._modelrepo import Precision, Target
    from .pipeline import BuildOptions
    from .source import resolve_model_spec

    spec = resolve_model_spec(model, task=task, name=name, head=head, normalize=normalize)
    target = Target(options.pop("target", Target.CPU))
    precision = options.pop("precision", None) or (spec.cpu_precision if target == Target.CPU else None)
    return spec, BuildOptions(target=target, precision=Precision(precision) if precision else None, out=Path(out),
                              **options)


def build_repository(model: str, out: Path, *, if_stale: bool = False, **options: Any) -> BuildResult | None:
    """Build `model` (a preset or a checkpoint folder) into the repository `out`; with if_stale, do
    nothing (return None) when `out` already holds this exact build."""
    from .pipeline import build, is_up_to_date

    spec, build_options = plan_build(model, out, **options)
    if if_stale and is_up_to_date(spec, build_options):
        return None
    return build(spec, build_options)
