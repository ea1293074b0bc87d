"""JobSpec: one schema for a job, whether it comes as YAML to ``plot run`` or JSON to the API.

Every model is frozen and refuses unknown keys, so a typo is an error naming its field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from core.errors import SpecError

# The job vocabularies, defined here only; the modules that act on them import them.
BuiltinTask = Literal["hierarchical_equality", "binary_addition", "mcqa"]
PairScheme = Literal["balanced", "paper"]
CalibrationScope = Literal["shared", "per_variable"]
Granularity = Literal["position", "layer", "step", "head", "block", "neuron", "pca"]
LevelComponent = Literal["resid", "attn", "mlp"]
LevelScope = Literal["shared", "per_variable"]
Solver = Literal["sinkhorn", "emd", "unbalanced"]
CostKind = Literal["mse", "cosine", "agreement"]
SiteMarginal = Literal["uniform", "effect"]
DasMode = Literal["off", "guided", "full"]
DasInit = Literal["handle", "pca", "random"]
DasRank = Literal["auto", "full", "low"]
RandomWeights = Literal["reinit", "shuffle"]
RandomNetScope = Literal["handles", "first_level", "schedule"]


# Hard ceilings of the schema: no deployment needs more, so a value past one is a mistake
# (or an attack), refused with its field path before anything is estimated or stored. The
# deployment's own, lower budgets are ``core.admission.AdmissionLimits``.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1  # a torch / numpy seed is an int64
MAX_BANK_PAIRS = 10_000_000     # pairs in one bank (the deployment's default is far lower)
MAX_LEVELS = 16                 # progressive levels of one job
MAX_KEEP = 4096                 # sites kept per variable by a level
MAX_SITE_SIZE = 1 << 20         # block_size, band_size, a DAS rank: coordinates of one site
MAX_LAYER = 4096                # a block index of a token net
MAX_POSITIONS = 8192            # positions enumerated by a token level
MAX_GRID = 64                   # entries of the coupling grids (epsilons, betas) and das.dims
MAX_CALIBRATION_GRID = 256      # entries of calibration.top_k and calibration.strengths
MAX_ITER = 1_000_000            # Sinkhorn / EMD iterations
MAX_SCREEN_PAIRS = 1_000_000    # calibration pairs of the screening round
MAX_FINALISTS = 100_000         # candidates scored on the whole calibration bank
MAX_EPOCHS = 100_000            # DAS epochs
MAX_RESTARTS = 100              # DAS seeds per (location, k, variable)
MAX_BATCH = 1 << 20             # DAS batch size
MAX_PERMUTATIONS = 10_000       # label permutations per level
MAX_ROWS = 1 << 28              # rows per stacked forward
MAX_NAME_CHARS = 120            # a job's display name
MAX_TAGS = 16                   # tags of one job
MAX_TAG_CHARS = 32              # characters of one tag
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"  # no spaces or commas: tags are stored joined



@dataclass(frozen=True)
class at_most:
    """Pydantic metadata refusing an integer over ``limit`` (or under ``low``) with a message
    that gives the value and the limit (``1000000000 is over the limit of 10000000``);
    the JSON schema declares the bound."""

    limit: int
    low: int | None = None

    def check(self, value: int) -> int:
        if value > self.limit:
            raise ValueError(f"{value} is over the limit of {self.limit}")
        if self.low is not None and value < self.low:
            raise ValueError(f"{value} is under the limit of {self.low}")
        return value

    def check_number(self, value: Any) -> Any:
        """A JSON number such as ``1e30`` arrives as a float, too large for pydantic's int
        parse: refuse it here with the same message."""
        if isinstance(value, float) and value.is_integer():
            self.check(int(value))
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> CoreSchema:
        checked = core_schema.no_info_after_validator_function(self.check, handler(source))
        return core_schema.no_info_before_validator_function(self.check_number, checked)

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler
                                     ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["maximum"] = self.limit
        if self.low is not None:
            json_schema["minimum"] = self.low
        return json_schema


Seed = Annotated[int, at_most(SEED_MAX, SEED_MIN)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NetRef(_Frozen):
    """Which net to run: a directory (``config.json`` + ``model.safetensors``) or a
    registered model id of the service. Omit both to use a built-in task's default net."""

    path: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> NetRef:
        if self.path is not None and self.id is not None:
            raise ValueError("give either path or id, not both")
        return self


class TaskSpec(_Frozen):
    """The causal side: a built-in task with parameters, or a counterfactual dataset
    (a JSONL file for ``plot run``, an uploaded dataset id for the service)."""

    builtin: BuiltinTask | None = None
    params: dict[str, Any] = Field(
        default_factory=dict, max_length=16,
        description="the built-in task's parameters; names and ranges are checked at "
        "submission (core.causal.registry.check_task_params)")
    dataset: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TaskSpec:
        if (self.builtin is None) == (self.dataset is None):
            raise ValueError("give exactly one of builtin or dataset")
        if self.dataset is not None and self.params:
            raise ValueError("params belong to a builtin task, not to a dataset")
        return self


class PairsSpec(_Frozen):
    """Sizes of the fit / calibration / test banks and the seed that draws them."""

    fit: Annotated[int, at_most(MAX_BANK_PAIRS)] = Field(1000, ge=2)
    calibration: Annotated[int, at_most(MAX_BANK_PAIRS)] = Field(1000, ge=2)
    test: Annotated[int, at_most(MAX_BANK_PAIRS)] = Field(1000, ge=2)
    seed: Seed = 0
    changed_share: float = Field(
        0.5, ge=0.0, le=1.0,
        description="target share of pairs where each variable's interchange changes the "
        "output (built-in tasks)",
    )
    scheme: PairScheme = Field(
        "balanced",
        description="built-in tasks: `balanced` draws every bank with each variable's "
        "change share at `changed_share`; `paper` builds the PLOT authors' banks (HEQ: "
        "uniform entities, WX-only / YZ-only calibration, per-variable sensitive and "
        "invariant test banks; adder: each base with its structured sources; MCQA: the "
        "answer-position families) and ignores `changed_share`",
    )
    calibration_scope: CalibrationScope = Field(
        "shared",
        description="`shared`: every calibration pair scores every variable (the paper "
        "scheme's HEQ bank: the authors' WX-only and YZ-only pairs); `per_variable` (HEQ, "
        "paper scheme): each variable's handle is chosen on its own calibration pairs, half "
        "where its interchange changes the output and half where it does not (the test "
        "banks' construction; `calibration` rounded down to a multiple of 4)",
    )

    @model_validator(mode="after")
    def _scope_needs_paper(self) -> PairsSpec:
        if self.calibration_scope == "per_variable" and self.scheme != "paper":
            raise ValueError("calibration_scope per_variable needs scheme: paper (a balanced "
                             "bank already scores every variable on every pair)")
        return self


class LevelSpec(_Frozen):
    """One progressive level: which sites it enumerates and how many it keeps."""

    granularity: Granularity
    keep: Annotated[int, at_most(MAX_KEEP)] = Field(2, ge=1,
                      description="top sites per variable refined by the next level")
    block_size: Annotated[int, at_most(MAX_SITE_SIZE)] = Field(8, ge=1,
                            description="coordinates per group (granularity block)")
    block_sizes: list[Annotated[int, Field(ge=1), at_most(MAX_SITE_SIZE)]] | None = Field(
        None, min_length=1, max_length=MAX_GRID,
        description="granularity block: several group sizes at once (multi-resolution "
        "coordinate groups, all in the same coupling); None: block_size alone",
    )
    band_size: Annotated[int, at_most(MAX_SITE_SIZE)] = Field(4, ge=1,
                           description="principal directions per band (pca)")
    prefixes: bool = Field(
        True, description="granularity pca: also offer the nested prefixes of the principal "
        "directions (the top 1, 2, 4, … of each parent) beside the bands")
    layer: Annotated[int, at_most(MAX_LAYER)] | None = Field(
        None, ge=0,
        description="token nets, granularity position: the block whose output is patched at "
        "each position (None: block (n_layers - 1) // 2)",
    )
    component: LevelComponent = Field(
        "resid", description="token nets, granularity position or layer: which output")
    positions: list[Annotated[str, Field(max_length=32)]] | None = Field(
        None, max_length=MAX_POSITIONS,
        description="token nets, granularity position (or a first layer level): the positions "
        "to enumerate (None: every position of the net)",
    )
    scope: LevelScope = Field(
        "shared",
        description="shared: one coupling of every variable over the refinement of all kept "
        "sites; per_variable: each variable coupled only with the refinement of its own kept "
        "sites (stage B of the paper: 'inside the chosen timestep')",
    )

    @property
    def group_sizes(self) -> list[int]:
        """The coordinate-group sizes of a block level, without repeats, in the given order."""
        return list(dict.fromkeys(self.block_sizes or [self.block_size]))


DEFAULT_COSTS: tuple[CostKind, ...] = ("mse", "cosine")


class CouplingSpec(_Frozen):
    """The transport problem and the grids of its knobs, chosen on the calibration bank."""

    solver: Solver = "sinkhorn"
    cost: list[CostKind] = Field(
        default_factory=lambda: list(DEFAULT_COSTS), min_length=1, max_length=3,
        description="cost kinds tried; each variable's is chosen on the calibration bank "
        "with epsilon, beta, k and lambda (a single name is a one-kind list)",
    )
    epsilons: list[float] = Field(default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 0.3],
                                  max_length=MAX_GRID)
    betas: list[float] = Field(
        default_factory=lambda: [0.05, 0.1, 0.5, 1.0, 5.0], max_length=MAX_GRID,
        description="KL weight of the relaxed site marginal (solver unbalanced)",
    )
    null_row: bool = True
    site_marginal: SiteMarginal = "uniform"
    max_iter: Annotated[int, at_most(MAX_ITER)] = Field(2000, ge=1)
    tol: float = Field(1e-9, gt=0)

    @field_validator("cost", mode="before")
    @classmethod
    def _one_kind(cls, value: object) -> object:
        """A single kind (``cost: mse``, as specs before the list) is a one-kind list; an
        unknown single name is refused at ``coupling.cost`` itself."""
        if not isinstance(value, str):
            return value
        kinds = get_args(CostKind)
        if value not in kinds:
            raise ValueError("Input should be " + ", ".join(f"'{k}'" for k in kinds[:-1])
                             + f" or '{kinds[-1]}'")
        return [value]

    @field_validator("cost")
    @classmethod
    def _distinct_kinds(cls, value: list[CostKind]) -> list[CostKind]:
        if len(set(value)) != len(value):
            raise ValueError("each cost kind once")
        return value

    @model_validator(mode="after")
    def _positive_grids(self) -> CouplingSpec:
        for name in ("epsilons", "betas"):
            values = getattr(self, name)
            if not values or any(v <= 0 for v in values):
                raise ValueError(f"{name} must be a non-empty list of positive numbers")
        return self


class CalibrationSpec(_Frozen):
    """Grids of handle size k (top sites) and strength lambda."""

    top_k: list[Annotated[int, at_most(MAX_KEEP)]] = Field(
        default_factory=lambda: list(range(1, 21)), max_length=MAX_CALIBRATION_GRID)
    strengths: list[float] = Field(
        default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0,
                                 16.0, 24.0, 32.0, 48.0, 64.0, 80.0],
        max_length=MAX_CALIBRATION_GRID,
    )

    screen_pairs: Annotated[int, at_most(MAX_SCREEN_PAIRS)] = Field(
        256, ge=0,
        description="successive halving: score every candidate on this many calibration "
        "pairs first (after a first rung on a quarter of them drops the hopeless ones), "
        "then only the best `finalists` on the whole bank (0: score all on all)",
    )
    finalists: Annotated[int, at_most(MAX_FINALISTS)] = Field(32, ge=1)

    @model_validator(mode="after")
    def _positive_grids(self) -> CalibrationSpec:
        if not self.top_k or any(k < 1 for k in self.top_k):
            raise ValueError("top_k must be a non-empty list of integers >= 1")
        if not self.strengths or any(s <= 0 for s in self.strengths):
            raise ValueError("strengths must be a non-empty list of positive numbers")
        return self


class DasSpec(_Frozen):
    """DAS baselines run after the PLOT levels (plot-method.md §6).

    ``full`` trains at every location × k × variable; ``guided`` only at the locations
    PLOT kept, with k narrowed by the finer level's handle (see ``core.das_search``).
    """

    mode: DasMode = "off"
    dims: list[Annotated[int, Field(ge=1), at_most(MAX_SITE_SIZE)]] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16], min_length=1, max_length=MAX_GRID,
        description="subspace ranks k tried (clipped to each location's width)",
    )
    max_epochs: Annotated[int, at_most(MAX_EPOCHS)] = Field(100, ge=1)
    min_epochs: Annotated[int, at_most(MAX_EPOCHS)] = Field(2, ge=1)
    lr: float = Field(0.01, gt=0)
    restarts: Annotated[int, at_most(MAX_RESTARTS)] = Field(
        1, ge=1, description="seeds per (location, k, variable); best on the calibration bank "
        "is kept")
    batch_size: Annotated[int, at_most(MAX_BATCH)] = Field(256, ge=1)
    patience: Annotated[int, at_most(MAX_EPOCHS)] = Field(3, ge=1,
                          description="epochs without relative loss improvement")
    rel_delta: float = Field(1e-3, ge=0, lt=1)
    init: DasInit = Field("handle", description="handle: guided runs start from the "
                          "handle's directions (principal directions at a PCA level, "
                          "coordinate axes at a block/neuron level); pca: only at a PCA "
                          "level; random: never")
    rank: DasRank = Field("auto", description="full rotation, low-rank D×k basis, or auto "
                          "(low-rank above low_rank_above)")
    low_rank_above: Annotated[int, at_most(MAX_SITE_SIZE)] = Field(64, ge=1)
    widen_below: float | None = Field(
        None, ge=0, le=1, description="guided: a variable whose best calibration IIA is "
        "under this is also trained at the other locations (None: never)")
    restart_best: bool = Field(
        True, description="guided: train each variable's best (location, k) once more from "
        "a random start when it started from the handle's directions; keep the better on "
        "calibration")
    widen_weak_handle: float | None = Field(
        0.9, ge=0, le=1, description="guided: a variable whose PLOT handle's calibration IIA "
        "is under this (a weak guide) is also trained at the other locations (None: never)")
    widen_margin: float | None = Field(
        0.02, ge=0, le=1, description="guided: a variable whose best calibration IIA trails "
        "its PLOT handle's calibration IIA by more than this is also trained at the other "
        "locations, with its ranks and the next one (None: never)")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML 1.1 reads a bare ``off`` as false: ``mode: off`` means the mode ``off``."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _epoch_bounds(self) -> DasSpec:
        if self.min_epochs > self.max_epochs:
            raise ValueError("min_epochs must not exceed max_epochs")
        return self


class ControlsSpec(_Frozen):
    """Controls run beside the localization (all on by default; each can be turned off).

    Coupling diagnostics (row entropy, null-row mass, margins, similar-signature and
    near-uniform warnings) cost no forward pass and are always computed.
    """

    random_net: bool = Field(
        True, description="calibrate handles on the same architecture with random weights "
        "and report their test IIA next to the real ones")
    random_net_scope: RandomNetScope = Field(
        "handles", description="handles: on the random net, the site set of every handle the "
        "job chose (at every level), its strength recalibrated, the best per variable; "
        "first_level: also the schedule's first level run there; schedule: the whole "
        "schedule rerun there (about the levels' cost)")
    random_weights: RandomWeights = Field(
        "reinit", description="reinit: freshly initialised weights; shuffle: every weight "
        "tensor's entries permuted (keeps each layer's weight distribution)")
    label_permutation: bool = Field(
        True, description="couple the level's site signatures with counterfactual labels "
        "permuted across pairs (no new forwards) and report the mass on the kept sites")
    permutations: Annotated[int, at_most(MAX_PERMUTATIONS)] = Field(16, ge=1,
                              description="label permutations averaged per level")
    depth_check: bool = Field(
        True, description="test IIA of the plain full-vector interchange at each handle's "
        "locations and every location after them")
    seed: Seed | None = Field(None, description="seed of the random weights and the label "
                             "permutations (None: the job's seed)")


class JobSpec(_Frozen):
    """A whole localization job."""

    model: NetRef = Field(default_factory=NetRef)
    task: TaskSpec
    pairs: PairsSpec = Field(default_factory=PairsSpec)
    levels: list[LevelSpec] | None = Field(None, max_length=MAX_LEVELS)
    coupling: CouplingSpec = Field(default_factory=CouplingSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    das: DasSpec = Field(default_factory=DasSpec)
    controls: ControlsSpec = Field(default_factory=ControlsSpec)
    seed: Seed = 0
    priority: int = Field(0, ge=-10, le=10)
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS,
                             description="a display name for the job list (any text without "
                             "control characters)")
    tags: list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS,
                                    pattern=TAG_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_TAGS,
        description="labels the job list filters on: letters, digits and _ . : - "
        "(starting with a letter or digit)")
    max_rows: Annotated[int, at_most(MAX_ROWS)] | None = Field(
        None, ge=1,
        description="rows (intervention × pair) per stacked forward; None sizes it to the device",
    )

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("control characters are not allowed in a job name")
        return value.strip() or None if value is not None else None

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))  # the first of each, in order


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming its field path (``coupling.epsilons.0``)."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(spec)"
        message = str(item["msg"]).removeprefix("Value error, ")
        value = item.get("input")
        if isinstance(value, int | float) and "limit" not in message:
            message += f" (got {value!r})"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def parse_job_spec(data: Any, where: str = "spec") -> JobSpec:
    """Validate a mapping as a JobSpec.

    Raises:
        SpecError: naming every bad field path.
    """
    if not isinstance(data, dict):
        raise SpecError(f"a job spec is a mapping, got {type(data).__name__}", where)
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error), where) from None


def load_job_spec(path: Path) -> JobSpec:
    """Read a YAML (or JSON) job spec file.

    Raises:
        SpecError: the file is missing, is not YAML, or does not validate.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SpecError(f"cannot read the spec: {error.strerror}", str(path)) from None
    except yaml.YAMLError as error:
        raise SpecError(f"not valid YAML: {error}", str(path)) from None
    return parse_job_spec(data, str(path))
