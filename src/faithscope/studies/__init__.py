"""Studies: a resumable grid of models x seeds x datasets x explainers x metrics.

``load_spec``/``load_preset`` read a YAML spec, ``run_study`` plans and runs it (locally or on
Ray) into a study directory, ``open_study`` reads the results back (DuckDB over Parquet shards).
"""

from .executors import run_study
from .plan import Plan, Unit, plan_study
from .results import Study, open_study
from .spec import (
                   DatasetSpec,
                   ExplainerSpec,
                   ModelSpec,
                   SpecError,
                   StudySpec,
                   apply_overrides,
                   load_preset,
                   load_spec,
                   parse_spec,
                   preset_names,
)

__all__ = ["DatasetSpec", "ExplainerSpec", "ModelSpec", "Plan", "SpecError", "Study", "StudySpec",
           "Unit", "apply_overrides", "load_preset", "load_spec", "open_study", "parse_spec",
           "plan_study", "preset_names", "run_study"]
