"""Backends by name, the way inspect_ai registers model providers (``@modelapi``): a new backend is one
file with one decorator, and everything that needs to know the backends (campaign validation, the
``--backend`` choices, the price table, the credential and dependency checks) reads this registry.

    from aar.agents.backends import Backend, Completion, backend
    from aar.agents.prices import Price

    @backend("mine", default_model="mine-1", requires=("mysdk",), install="pip install mysdk",
             env_key="MINE_API_KEY", prices={"mine-1": Price(0.5, 2.0)})
    def mine():
        from my_package.backend import MineBackend  # the SDK is imported only when a researcher uses it

        return MineBackend

The decorated object is either a ``Backend`` subclass or a function that imports and returns one
(lazy: listing backends or validating a campaign never imports an SDK). A backend is constructed as
``cls(model, base_url=..., stream=..., retry=..., seed=..., direction=...)`` and should accept and ignore
options it does not use. ``own_loop=True`` marks a backend that runs its own agent loop (Claude Code):
its loader returns a session runner ``(toolbox, transcript, budget, system, kickoff, model) -> reason``.

Where registrations come from, in order: the built-ins (``aar.agents.backends.providers``), installed
packages' entry points in the group ``aar.backends`` (importing the module registers), and the modules
or ``.py`` files named in ``$AAR_PLUGINS`` (comma-separated), which child processes inherit: the lab's
researchers see the same backends as the lab that validated the campaign.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aar.agents.prices import Price

log = logging.getLogger("aar.agents")
ENTRY_POINT_GROUP = "aar.backends"
PLUGINS_ENV = "AAR_PLUGINS"


class UnknownBackend(ValueError):
    """A backend name nothing registered; the message lists the registered ones."""


class BackendMissingDependency(RuntimeError):
    """A registered backend whose packages are not installed; the message says what to install."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    loader: Callable[[], Any] = field(repr=False)
    default_model: str | None = None
    requires: tuple[str, ...] = ()  # importable module names the backend needs
    install: str | None = None  # how to get them, quoted in the error
    env_key: str | None = None  # the API key's variable (a base_url, e.g. a local server, may need none)
    prices: Mapping[str, Price] = field(default_factory=dict)
    own_loop: bool = False
    description: str = ""
    module: str = ""

    def missing(self) -> list[str]:
        """The required modules that cannot be imported here."""
        out = []
        for mod in self.requires:
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(mod)
        return out

    def check(self) -> None:
        missing = self.missing()
        if missing:
            how = f" ({self.install})" if self.install else ""
            raise BackendMissingDependency(
                f"backend {self.name!r} needs {', '.join(missing)}, which is not installed{how}"
            )

    def load(self) -> Any:
        """The backend class (or, for ``own_loop``, its session runner), importing its SDK now."""
        self.check()
        return self.loader()


_REGISTRY: dict[str, BackendInfo] = {}
_lock = threading.RLock()
_discovered = False


def backend(
    name: str,
    *,
    default_model: str | None = None,
    requires: tuple[str, ...] | list[str] = (),
    install: str | None = None,
    env_key: str | None = None,
    prices: Mapping[str, Price] | None = None,
    own_loop: bool = False,
    description: str = "",
) -> Callable[[Any], Any]:
    """Register a backend under ``name`` (see the module docstring); returns the object unchanged."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"backend name {name!r}: use letters, digits, '-' and '_'")

    def register(obj: Any) -> Any:
        from aar.agents.backends.base import Backend

        if isinstance(obj, type):
            if not issubclass(obj, Backend) and not own_loop:
                raise TypeError(f"@backend({name!r}) decorates a Backend subclass or a loader function")

            def loader() -> Any:
                return obj
        elif callable(obj):
            loader = obj
        else:
            raise TypeError(f"@backend({name!r}) decorates a class or a function, not {type(obj).__name__}")
        doc = description or ((obj.__doc__ or "").strip().splitlines() or [""])[0]
        info = BackendInfo(
            name=name,
            loader=loader,
            default_model=default_model,
            requires=tuple(requires),
            install=install,
            env_key=env_key,
            prices=dict(prices or {}),
            own_loop=own_loop,
            description=doc,
            module=getattr(obj, "__module__", ""),
        )
        with _lock:
            old = _REGISTRY.get(name)
            if old is not None and old.module != info.module:
                log.warning("backend %r from %s replaces the one from %s", name, info.module, old.module)
            _REGISTRY[name] = info
        return obj

    return register


def _import_plugin(spec: str) -> None:
    """Import one ``$AAR_PLUGINS`` entry: a module name, or a path to a ``.py`` file."""
    if spec.endswith(".py"):
        path = Path(spec).expanduser().resolve()
        modname = f"aar_plugin_{path.stem}"
        loaded = importlib.util.spec_from_file_location(modname, path)
        if loaded is None or loaded.loader is None or not path.is_file():
            raise UnknownBackend(f"{PLUGINS_ENV}: no such plugin file {spec!r}")
        import sys

        module = importlib.util.module_from_spec(loaded)
        sys.modules[modname] = module
        loaded.loader.exec_module(module)
        return
    importlib.import_module(spec)


def discover() -> None:
    """Import the built-ins, the entry points and ``$AAR_PLUGINS`` once per process. A plugin that fails
    to import is an error naming it (a campaign must not silently lose a backend)."""
    global _discovered
    with _lock:
        if _discovered:
            return
        _discovered = True  # set first: the modules imported below call back into this registry
        importlib.import_module("aar.agents.backends.providers")
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 (a broken third-party package: name it, go on)
                log.error("backend plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
        for spec in filter(None, (s.strip() for s in os.environ.get(PLUGINS_ENV, "").split(","))):
            try:
                _import_plugin(spec)
            except UnknownBackend:
                raise
            except Exception as exc:  # noqa: BLE001 (reported with the plugin's name)
                raise UnknownBackend(f"{PLUGINS_ENV}: plugin {spec!r} failed to import: {exc}") from exc


def backend_names() -> list[str]:
    discover()
    with _lock:
        return sorted(_REGISTRY)


def backend_info(name: str) -> BackendInfo:
    discover()
    with _lock:
        info = _REGISTRY.get(name)
    if info is None:
        raise UnknownBackend(
            f"unknown backend {name!r}; registered: {', '.join(backend_names())} "
            f"(a backend of your own: name its module or .py file in ${PLUGINS_ENV})"
        )
    return info


def create_backend(name: str, model: str | None = None, **options: Any) -> Any:
    """An instance of the turn-by-turn backend ``name`` (not for ``own_loop`` backends)."""
    info = backend_info(name)
    if info.own_loop:
        raise ValueError(f"backend {name!r} runs its own loop: use its session runner (BackendInfo.load)")
    cls = info.load()
    return cls(model or info.default_model, **options)


def registered_prices() -> dict[str, Price]:
    """Every registered backend's model prices (USD per million tokens)."""
    discover()
    out: dict[str, Price] = {}
    with _lock:
        for info in _REGISTRY.values():
            out.update(info.prices)
    return out
