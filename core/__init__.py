"""The PLOT engine: localize causal variables in a net by optimal transport, from a notebook.

    from core import localize
    result = localize(my_module, "hierarchical_equality", sites=["blocks.0"])  # or any net

or from a spec, as ``plot run`` does:

    from pathlib import Path
    from core import JobContext, parse_job_spec, run_job

    spec = parse_job_spec({"task": {"builtin": "hierarchical_equality"}})
    result = run_job(spec, JobContext(Path("."), Path("."), Path("~/.cache/plot").expanduser()))
    result.handles["WX"].sites, result.handles["WX"].iia_test
"""

from core.admission import Admission, AdmissionLimits, NetInfo, admit, describe_job
from core.backend import ComputeBackend, LocalBackend
from core.calibrate import IIA
from core.control import JobControl
from core.cost import cost_matrix
from core.coupling import Coupling, marginals, solve_coupling
from core.engine import BankTraces, Interventions, run_interventions, trace_bank
from core.errors import (
    DatasetError,
    JobCancelled,
    ModelLoadError,
    PlotError,
    SiteError,
    SolverError,
    SpecError,
    TaskError,
)
from core.events import EngineEvent
from core.intervene import interchange
from core.job import JobContext, run_job
from core.level_inputs import LevelInputs
from core.nets.module import ModuleNet, ModuleSite
from core.notebook import PythonTask, export, localize
from core.progressive import best_handles, run_levels
from core.report import render_report
from core.result import ControlsResult, HandleResult, JobResult, LevelResult
from core.signatures import abstract_signatures, neural_signatures
from core.sites import Site, parse_site
from core.spec import ControlsSpec, JobSpec, LevelSpec, load_job_spec, parse_job_spec

__all__ = [
    "IIA",
    "Admission",
    "AdmissionLimits",
    "BankTraces",
    "ComputeBackend",
    "ControlsResult",
    "ControlsSpec",
    "Coupling",
    "DatasetError",
    "EngineEvent",
    "HandleResult",
    "Interventions",
    "JobCancelled",
    "JobContext",
    "JobControl",
    "JobResult",
    "JobSpec",
    "LevelInputs",
    "LevelResult",
    "LevelSpec",
    "LocalBackend",
    "ModelLoadError",
    "ModuleNet",
    "ModuleSite",
    "NetInfo",
    "PlotError",
    "PythonTask",
    "Site",
    "SiteError",
    "SolverError",
    "SpecError",
    "TaskError",
    "abstract_signatures",
    "admit",
    "best_handles",
    "cost_matrix",
    "describe_job",
    "export",
    "interchange",
    "load_job_spec",
    "localize",
    "marginals",
    "neural_signatures",
    "parse_job_spec",
    "parse_site",
    "render_report",
    "run_interventions",
    "run_job",
    "run_levels",
    "solve_coupling",
    "trace_bank",
]
