"""A campaign file: what to study (tasks, model pair), who studies it (researchers with directions,
backends, budgets) and how the referee judges (seeds, query budgets). YAML, validated with pydantic so a
typo is an error naming the field, never a silently ignored key."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aar.lab.directions import default_direction, slug
from aar.w2s import defaults

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _known_task(name: str, declared: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """A built-in or registered task, or one the campaign declares from a file."""
    from aar.w2s.tasks import task_specs

    known = sorted({s.name for s in task_specs()} | set(declared))
    if name not in known:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(known)}")
    return name


def _known_backend(name: str) -> str:
    """A backend name the registry knows (built-ins, entry points, $AAR_PLUGINS); the error lists them."""
    from aar.agents.backends.registry import UnknownBackend, backend_info

    try:
        backend_info(name)
    except UnknownBackend as exc:
        raise ValueError(str(exc)) from None
    return name


BackendName = Annotated[str, AfterValidator(_known_backend)]


class TaskFileSpec(Strict):
    """A task from a file (``aar.w2s.task_files``): its path is relative to the campaign file. The whole
    file is validated when the campaign is loaded and its digest recorded, so a bad row is an error
    naming the file, the line and the field before anything starts, and a file edited afterwards is
    refused (the digest is part of the campaign's fingerprint and is checked when the rows are built)."""

    name: Name
    path: str
    format: Literal["auto", "binary", "preference", "text"] = "auto"
    domain: str = Field("custom", min_length=1)
    # where the task goes when the testbed does not list it: home, visible or held_out
    role: Literal["home", "visible", "held_out"] | None = None
    description: str = ""
    sha256: str | None = None  # filled in on load; give it to pin the file's content

    @model_validator(mode="after")
    def _read(self, info: ValidationInfo) -> TaskFileSpec:
        from aar.w2s.task_files import TaskFile, declare
        from aar.w2s.tasks import TaskDataError

        base = (info.context or {}).get("base_dir")
        try:
            declared = declare(TaskFile(**self.model_dump()), Path(base) if base else None)
        except TaskDataError as exc:
            raise ValueError(str(exc)) from None
        self.path, self.sha256 = declared.path, declared.sha256
        return self

    def declaration(self) -> dict:
        """The record the referee keeps and registers the task from (``TaskFile.from_json``)."""
        return self.model_dump()


class TierModels(Strict):
    weak: str | None = Field(None, min_length=1)
    strong: str | None = Field(None, min_length=1)


class Testbed(Strict):
    # tasks of your own (see README); first, so the task lists below may name them
    task_files: list[TaskFileSpec] = Field(default_factory=list)
    home: str = defaults.HOME_TASK
    held_out: list[str] = Field(default_factory=lambda: list(defaults.HELD_OUT_TASKS))
    # secondary tasks whose public part researchers see scored, like the home task's
    visible: list[str] = Field(default_factory=list)
    # the (weak, strong) model pair and the student: frozen features + head (default, fast, published,
    # bf16: the default pair with mpnet in bfloat16) or the LoRA-fine-tuned causal LM (lora: SmolLM2
    # teaches gemma-3-270m; slow on a CPU). auto: bf16 where the CPU computes bf16 natively, else
    # default; resolved once when the campaign is loaded (the resolved name is what is recorded)
    tier: Literal["default", "fast", "published", "lora", "bf16", "auto"] = "default"
    # the tier's models replaced by name: a packaged model, a local folder or a Hugging Face id (lora)
    models: TierModels | None = None
    max_rows: int | None = Field(None, ge=200)
    # why ``auto`` became the tier it did (shown to the user when the lab starts); None: not auto
    _tier_note: str | None = PrivateAttr(None)

    @field_validator("home")
    @classmethod
    def _known_home(cls, v: str, info: ValidationInfo) -> str:
        return _known_task(v, {t.name for t in info.data.get("task_files", [])})

    @field_validator("held_out", "visible")
    @classmethod
    def _known_tasks(cls, v: list[str], info: ValidationInfo) -> list[str]:
        return [_known_task(t, {t.name for t in info.data.get("task_files", [])}) for t in v]

    @model_validator(mode="after")
    def _resolve_auto_tier(self) -> Testbed:
        """``auto`` -> "bf16" or "default" by this CPU's flags, once, here: everything downstream (the
        fingerprint, the campaign copy, the referee's manifest, the report) sees the resolved name."""
        if self.tier == "auto":
            self.tier, self._tier_note = defaults.resolve_tier("auto")
        return self

    @property
    def tier_note(self) -> str | None:
        return self._tier_note

    @model_validator(mode="after")
    def _place_task_files(self) -> Testbed:
        """A file task with a role joins that list unless listed already (where it must agree);
        role home replaces the default home task, not one the campaign names."""
        names = [t.name for t in self.task_files]
        if len(set(names)) != len(names):
            raise ValueError("task_files declares a task name twice")
        for tf in self.task_files:
            listed = (
                "home"
                if tf.name == self.home
                else next((f for f in ("held_out", "visible") if tf.name in getattr(self, f)), None)
            )
            if tf.role is None or listed == tf.role:
                if listed is None:
                    raise ValueError(
                        f"task file {tf.name!r} has no role and is not listed in home, held_out or visible"
                    )
                continue
            if listed is not None:
                raise ValueError(f"task file {tf.name!r} has role {tf.role} but is listed as {listed}")
            if tf.role == "home":
                if "home" in self.model_fields_set:
                    raise ValueError(f"task file {tf.name!r} has role home but home is {self.home!r}")
                self.home = tf.name
                self.model_fields_set.add("home")
            else:
                getattr(self, tf.role).append(tf.name)
        return self

    @model_validator(mode="after")
    def _distinct(self) -> Testbed:
        for field in ("held_out", "visible"):
            listed = getattr(self, field)
            if self.home in listed:
                raise ValueError(f"home task {self.home!r} is also listed in {field}")
            if len(set(listed)) != len(listed):
                raise ValueError(f"{field} lists a task twice")
        both = sorted(set(self.held_out) & set(self.visible))
        if both:
            raise ValueError(f"tasks both held out and visible: {', '.join(both)}")
        return self

    @property
    def tasks(self) -> list[str]:
        """Every task the referee prepares, home first (the order ``initialise`` expects)."""
        return [self.home, *self.held_out, *self.visible]

    @property
    def model_pair(self) -> tuple[str, str]:
        tier = defaults.TIERS[self.tier]
        models = self.models or TierModels()
        return models.weak or tier.weak, models.strong or tier.strong


class RefereeSettings(Strict):
    seeds: int = Field(3, ge=1, le=20)
    dev_budget_per_day: int = Field(200, ge=1)
    run_budget_per_day: int = Field(20, ge=1)
    run_workers: int = Field(1, ge=1, le=64)
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)  # the dashboard; 0 = any free port
    drain_minutes: float = Field(15.0, ge=0)  # wait this long for queued official runs at the end
    # the built-in baselines scored at set-up (default: all that the tier can run); on the slow LoRA
    # tier on a CPU, e.g. [vanilla]
    baselines: list[str] | None = None

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, v: list[str] | None) -> list[str] | None:
        from aar.w2s.methods import builtin_methods

        unknown = [m for m in v or [] if m not in builtin_methods() or m == "ceiling"]
        if unknown:
            known = ", ".join(m for m in builtin_methods() if m != "ceiling")
            raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; built-in: {known}")
        return v


class Budget(Strict):
    minutes: float | None = Field(None, gt=0)  # active wall-clock time
    usd: float | None = Field(None, ge=0)
    tokens: int | None = Field(None, ge=1)
    official_runs: int | None = Field(None, ge=0)
    turns: int | None = Field(None, ge=1)


class ResearcherDefaults(Strict):
    backend: BackendName = "scripted"
    model: str | None = None
    base_url: str | None = None
    budget: Budget = Field(default_factory=lambda: Budget(minutes=60))
    gpus: bool = False  # the GPU device nodes in each researcher's sandbox (local runs on the lora tier)


class ResearcherSpec(Strict):
    name: Name | None = None
    direction: str | None = None
    backend: BackendName | None = None
    model: str | None = None
    base_url: str | None = None
    seed: int | None = None
    budget: Budget | None = None
    gpus: bool | None = None


class Researcher(Strict):
    """One fully resolved researcher (defaults applied)."""

    name: Name
    direction: str
    backend: str
    model: str | None
    base_url: str | None
    seed: int
    budget: Budget
    gpus: bool = False


class RaySettings(Strict):
    """Official-run units on a Ray cluster (aar.referee.executors.ray); absent: everything local."""

    address: str = Field(..., min_length=3)  # host:port of the Ray head
    token_file: str | None = None  # Ray's auth token (default: $RAY_AUTH_TOKEN in the lab's environment)
    resources: dict[str, float] = Field(default_factory=dict)  # custom resources each unit asks for
    num_cpus: float = Field(1.0, gt=0)  # per unit
    concurrent_runs: int = Field(4, ge=1, le=256)  # official runs driven at once
    researchers: bool = False  # researchers as Ray actors too (aar.lab.ray_researchers)
    researcher_cpus: float = Field(1.0, gt=0)  # per researcher actor (+1 GPU where its spec says gpus)
    researcher_resources: dict[str, float] = Field(default_factory=dict)  # custom resources per actor


class Campaign(Strict):
    name: Name
    description: str = ""
    testbed: Testbed = Field(default_factory=Testbed)
    referee: RefereeSettings = Field(default_factory=RefereeSettings)
    defaults: ResearcherDefaults = Field(default_factory=ResearcherDefaults)
    n_researchers: int | None = Field(None, ge=1, le=64)  # default: len(researchers), else 9
    researchers: list[ResearcherSpec] = Field(default_factory=list)
    report_top_k: int = Field(5, ge=1)  # the report confirms the k best by public PGR on private
    ray: RaySettings | None = None  # `aar lab run --ray HOST:PORT`: official runs on Ray

    @field_validator("researchers")
    @classmethod
    def _unique_names(cls, v: list[ResearcherSpec]) -> list[ResearcherSpec]:
        names = [r.name for r in v if r.name]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"researcher names repeat: {', '.join(sorted(dup))}")
        return v

    def resolved(self) -> list[Researcher]:
        """The researchers with defaults applied; missing ones get the default directions in order."""
        n = self.n_researchers or len(self.researchers) or 9
        out: list[Researcher] = []
        taken: set[str] = set()
        for i in range(n):
            spec = self.researchers[i] if i < len(self.researchers) else ResearcherSpec()
            short, text = default_direction(i)
            direction = spec.direction or text
            name = spec.name or f"r{i + 1}-{slug(short if not spec.direction else spec.direction, 16)}"
            while name in taken:
                name = f"{name}-{i + 1}"
            taken.add(name)
            base = self.defaults.budget.model_dump()
            base.update(
                {k: v for k, v in (spec.budget.model_dump() if spec.budget else {}).items() if v is not None}
            )
            out.append(
                Researcher(
                    name=name,
                    direction=direction,
                    backend=spec.backend or self.defaults.backend,
                    model=spec.model or self.defaults.model,
                    base_url=spec.base_url or self.defaults.base_url,
                    seed=spec.seed if spec.seed is not None else i,
                    budget=Budget(**base),
                    gpus=spec.gpus if spec.gpus is not None else self.defaults.gpus,
                )
            )
        return out


class CampaignError(ValueError):
    """A campaign file that cannot be used; the message names the file and the field."""


def _format(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid campaign"]
    for err in exc.errors()[:10]:
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (typo?)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def set_path(data: dict, dotted: str, raw: str) -> None:
    """Apply one ``--set a.b.c=value`` override; the value is parsed as YAML (numbers, null, lists)."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k, {}), dict):
            raise CampaignError(f"--set {dotted}: {k} is not a section")
        node = node.setdefault(k, {})
    node[keys[-1]] = yaml.safe_load(raw) if raw != "" else None


def parse(
    data: object, source: str = "campaign", overrides: list[str] | None = None, base_dir: Path | None = None
) -> Campaign:
    """Validate a campaign; ``base_dir`` is where relative task file paths start (the file's folder)."""
    if not isinstance(data, dict):
        raise CampaignError(f"{source}: a campaign is a YAML mapping, got {type(data).__name__}")
    for item in overrides or []:
        if "=" not in item:
            raise CampaignError(f"--set {item!r}: expected key.path=value")
        key, value = item.split("=", 1)
        set_path(data, key.strip(), value)
    try:
        return Campaign.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise CampaignError(_format(exc, source)) from None


def load(path: Path, overrides: list[str] | None = None) -> Campaign:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CampaignError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CampaignError(f"{path}: not valid YAML: {exc}") from None
    return parse(data, str(path), overrides, base_dir=path.parent)


def backend_problems(c: Campaign, env: dict[str, str]) -> list[str]:
    """Researchers whose backend cannot run here: its packages are missing, or it cannot authenticate.
    Found before anything starts, not after three crashed restarts. A base_url (a proxy or a local
    server) may not need a key, so it is not flagged. Both facts come from the backend's registration."""
    from aar.agents.backends.registry import backend_info

    problems = []
    for r in c.resolved():
        info = backend_info(r.backend)
        missing = info.missing()
        if missing:
            how = f" ({info.install})" if info.install else ""
            problems.append(f"researcher {r.name}: backend {r.backend} needs {', '.join(missing)}{how}")
        key = info.env_key
        if key and not env.get(key) and not r.base_url:
            problems.append(f"researcher {r.name}: backend {r.backend} needs {key} in the environment")
    return problems


missing_credentials = backend_problems  # the name callers used before dependencies were checked too


def fingerprint(c: Campaign) -> str:
    """What must not change when a killed campaign is resumed (the testbed and the referee's rules).
    An empty ``visible`` or ``task_files`` is left out, so campaigns started before they existed still
    resume; a task file's digest is in, so an edited file is refused on resume."""
    testbed = c.testbed.model_dump()
    for key in ("visible", "task_files", "models"):  # left out when empty: older campaigns still resume
        if not testbed[key]:
            del testbed[key]
    stable = {"testbed": testbed, "seeds": c.referee.seeds}
    return hashlib.sha256(yaml.safe_dump(stable, sort_keys=True).encode()).hexdigest()[:16]
