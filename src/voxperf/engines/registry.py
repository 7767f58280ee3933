"""Engines as plugins: an :class:`EnginePlugin` per engine, found through the ``voxperf.engines``
entry-point group, and engine specs (``name[:key=value,...]``) that name them.

Any installed distribution can add engines by declaring, in its ``pyproject.toml``::

    [project.entry-points."voxperf.engines"]
    "stt.my-engine" = "my_package.engine:PLUGIN"

where ``PLUGIN`` is an :class:`EnginePlugin` (or a list of them). voxperf's own engines register
exactly the same way. A plugin declares its options (name, type, default, help), so specs are
checked before anything loads: an unknown key or a bad value is a one-line usage error listing the
valid options. Loading an entry point imports only the plugin's module, which must import its
engine package lazily (inside the factory), so listing engines loads no model.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from voxperf.errors import DependencyMissingError, UnknownEngineError, UsageError
from voxperf.extras import installed

__all__ = [
    "ENTRY_POINT_GROUP",
    "ROLES",
    "EngineOption",
    "EnginePlugin",
    "EngineSource",
    "EngineSpec",
    "create_engine",
    "describe_engines",
    "engine_names",
    "engine_plugin",
    "engine_plugins",
    "is_factory",
    "parse_spec",
    "plugin_problems",
    "redact_spec",
    "register_engine",
    "registered",
    "resolve_engine",
]

ENTRY_POINT_GROUP = "voxperf.engines"
Role = Literal["stt", "tts", "vad", "rewrite"]
ROLES: tuple[Role, ...] = get_args(Role)
OptionKind = Literal["str", "int", "float", "bool", "duration", "path"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_SECRET_KEYS = ("key", "token", "password", "secret")
_KIND_WORDS = {"int": "an integer", "float": "a number"}


@dataclass(frozen=True, slots=True)
class EngineOption:
    """One option of an engine spec: ``kind`` decides how its text is parsed before the engine
    sees it (``duration`` accepts ``60ms``/``1.5s`` and is passed as the text, which the engine
    parses); ``choices`` restricts the value; ``secret`` masks it in results and messages."""

    name: str
    kind: OptionKind = "str"
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    secret: bool = False

    def parse(self, engine: str, value: object) -> Any:
        """The typed value of ``value`` (text from a spec, or a Python value), or a usage error."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if self.choices and text.lower() not in self.choices:
            raise UsageError(
                f"bad {self.name}={value!r} for {engine}",
                f"{self.name} must be one of: {', '.join(self.choices)}",
            )
        try:
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
        except ValueError:
            raise UsageError(
                f"bad {self.name}={value!r} for {engine}: not {_KIND_WORDS[self.kind]}",
                f"write e.g. {self.name}={self.default if self.default is not None else 1}",
            ) from None
        if self.kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise UsageError(
                f"bad {self.name}={value!r} for {engine}: not a boolean",
                f"use {self.name}=true or {self.name}=false",
            )
        return text.lower() if self.choices else text


@dataclass(frozen=True, slots=True)
class EnginePlugin:
    """An engine voxperf can create from a spec.

    ``factory`` is the engine class (or any callable returning an engine), or ``"module:attr"``
    imported only when the engine is created. ``requires`` are the importable modules and
    ``binaries`` the executables it needs; ``install`` is what to install when they are missing
    (e.g. ``voxperf[whisper]``). ``distribution`` is filled in from the entry point's package."""

    role: Role
    name: str
    factory: str | Callable[..., Any]
    options: tuple[EngineOption, ...] = ()
    summary: str = ""
    requires: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    install: str | None = None
    distribution: str | None = None
    is_fake: bool = False

    def option(self, name: str) -> EngineOption | None:
        return next((o for o in self.options if o.name == name), None)

    def missing(self) -> str | None:
        """What is not installed for this engine (``None`` when it can be created)."""
        gone = [m for m in self.requires if not installed(m)]
        gone += [f"the {b} program" for b in self.binaries if shutil.which(b) is None]
        return ", ".join(gone) or None

    def install_hint(self) -> str:
        if self.binaries and all(shutil.which(b) is None for b in self.binaries):
            return f"install {', '.join(self.binaries)} (e.g. apt-get install {' '.join(self.binaries)})"
        return f"pip install '{self.install or self.distribution or self.name}'"

    def load_factory(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DependencyMissingError(
                f"{self.role} engine {self.name!r} needs a package that is not installed ({exc.name or exc})",
                self.install_hint(),
            ) from exc
        return cast(Callable[..., Any], getattr(module, attr))

    def parse_options(self, options: Mapping[str, object]) -> dict[str, Any]:
        """Typed values for the options given; an unknown key is a usage error naming the valid ones."""
        out: dict[str, Any] = {}
        for key, value in options.items():
            opt = self.option(key)
            if opt is None:
                valid = ", ".join(o.name for o in self.options) or "none"
                raise UsageError(
                    f"unknown option {key!r} for {self.role} engine {self.name!r}",
                    f"valid options: {valid} (see `voxperf engines {self.name}`)",
                )
            out[key] = opt.parse(self.name, value)
        return out


EngineSource = Any  # a spec string, an engine instance, or a zero-argument factory returning one


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """A parsed engine spec: ``faster-whisper:model=tiny.en,compute_type=int8``."""

    role: str
    name: str
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        """The spec with secret values masked: this is what result files and messages show."""
        opts = ",".join(f"{k}={'***' if _is_secret(k) else v}" for k, v in self.options.items())
        return f"{self.name}:{opts}" if opts else self.name


def is_factory(source: EngineSource) -> bool:
    """A class or a function that makes an engine (an engine instance has its ``info``)."""
    return isinstance(source, type) or (callable(source) and not hasattr(source, "info"))


def _is_secret(option: str) -> bool:
    return any(word in option.lower() for word in _SECRET_KEYS)


def redact_spec(text: str) -> str:
    """A raw spec string with secret option values masked (for messages and recorded configs)."""
    name, sep, rest = text.partition(":")
    if not sep:
        return text
    parts = []
    for part in rest.split(","):
        key, eq, _ = part.partition("=")
        parts.append(f"{key}=***" if eq and _is_secret(key) else part)
    return f"{name}:{','.join(parts)}"


class _Plugins:
    """The engines found through entry points (loaded once), plus ones registered in process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[str, dict[str, EnginePlugin]] | None = None
        self._registered: dict[str, dict[str, EnginePlugin]] = {role: {} for role in ROLES}
        self.problems: list[str] = []

    def _discover(self) -> dict[str, dict[str, EnginePlugin]]:
        found: dict[str, dict[str, EnginePlugin]] = {role: {} for role in ROLES}
        eps = sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
            key=lambda ep: (ep.dist is None or ep.dist.name != "voxperf", ep.name),  # built-ins first
        )
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else None
            try:
                loaded = ep.load()
                plugins = list(loaded) if isinstance(loaded, list | tuple) else [loaded]
                if not all(isinstance(p, EnginePlugin) for p in plugins):
                    raise TypeError("the entry point must name an EnginePlugin or a list of them")
            except Exception as exc:  # a broken third-party plugin must not break voxperf
                self.problems.append(f"entry point {ep.name!r} of {dist}: {type(exc).__name__}: {exc}")
                continue
            for plugin in plugins:
                if plugin.role not in found:
                    self.problems.append(f"{plugin.name!r} of {dist}: unknown role {plugin.role!r}")
                elif plugin.name in found[plugin.role]:
                    other = found[plugin.role][plugin.name].distribution
                    self.problems.append(
                        f"{plugin.role} engine {plugin.name!r} of {dist} ignored: {other} already provides it"
                    )
                else:
                    found[plugin.role][plugin.name] = _with_distribution(plugin, dist)
        if not any(found.values()):
            self.problems.append(
                "no engines found: voxperf's entry points are missing (install it: pip install -e .)"
            )
        return found

    def all(self, role: str) -> dict[str, EnginePlugin]:
        with self._lock:
            if self._found is None:
                self._found = self._discover()
            return {**self._found.get(role, {}), **self._registered.get(role, {})}

    def register(self, plugin: EnginePlugin) -> Callable[[], None]:
        if plugin.role not in ROLES:
            raise UsageError(f"unknown engine role {plugin.role!r}", f"use one of {', '.join(ROLES)}")
        with self._lock:
            previous = self._registered[plugin.role].get(plugin.name)
            self._registered[plugin.role][plugin.name] = plugin

        def unregister() -> None:
            with self._lock:
                if previous is None:
                    self._registered[plugin.role].pop(plugin.name, None)
                else:
                    self._registered[plugin.role][plugin.name] = previous

        return unregister


def _with_distribution(plugin: EnginePlugin, dist: str | None) -> EnginePlugin:
    if plugin.distribution is not None or dist is None:
        return plugin
    from dataclasses import replace

    return replace(plugin, distribution=dist)


_PLUGINS = _Plugins()


def engine_plugins(role: str) -> dict[str, EnginePlugin]:
    """The engines of a role by name: every installed plugin plus those registered in this process."""
    return _PLUGINS.all(role)


def plugin_problems() -> list[str]:
    """Entry points that failed to load or clashed with another (shown by ``voxperf engines``)."""
    _PLUGINS.all("stt")
    return list(_PLUGINS.problems)


def register_engine(plugin: EnginePlugin) -> Callable[[], None]:
    """Make an engine available in this process (a notebook, a test) without packaging it;
    it takes precedence over an installed one of the same name. Returns a function undoing it.

    Bench lanes run in fresh processes, which see only installed entry points: run an engine
    registered this way with ``run_bench(..., isolate=False)`` or pass its factory instead."""
    return _PLUGINS.register(plugin)


@contextlib.contextmanager
def registered(*plugins: EnginePlugin) -> Iterator[None]:
    """:func:`register_engine` for the duration of a ``with`` block."""
    undo = [register_engine(p) for p in plugins]
    try:
        yield
    finally:
        for u in reversed(undo):
            u()


def engine_names(role: str) -> list[str]:
    return sorted(engine_plugins(role))


def engine_plugin(role: str, name: str) -> EnginePlugin:
    """The plugin for ``name`` in ``role``, or an :class:`UnknownEngineError` listing the others."""
    if role not in ROLES:
        raise UsageError(f"unknown engine role {role!r}", f"use one of {', '.join(ROLES)}")
    plugin = engine_plugins(role).get(name)
    if plugin is None:
        raise UnknownEngineError(
            f"unknown {role} engine {name!r}", f"choose one of: {', '.join(engine_names(role))}"
        )
    return plugin


def describe_engines() -> list[dict[str, Any]]:
    """Every engine with its availability and options (what ``voxperf engines`` prints)."""
    out = []
    for role in ROLES:
        for name, plugin in sorted(engine_plugins(role).items()):
            missing = plugin.missing()
            out.append(
                {
                    "role": role,
                    "name": name,
                    "summary": plugin.summary,
                    "distribution": plugin.distribution,
                    "available": missing is None,
                    "missing": missing,
                    "install": None if missing is None else plugin.install_hint(),
                    "isFake": plugin.is_fake,
                    "options": [
                        {
                            "name": o.name,
                            "type": o.kind,
                            "choices": list(o.choices),
                            "default": o.default,
                            "help": o.help,
                        }
                        for o in plugin.options
                    ],
                }
            )
    return out


def parse_spec(role: str, text: str) -> EngineSpec:
    """Parse ``name[:k=v,k=v]`` for a role and check its options against the engine's declared
    ones (types and choices too); unknown names, keys and values are usage errors."""
    text = text.strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    plugin = engine_plugin(role, name)
    options: dict[str, str] = {}
    if rest.strip():
        for part in rest.split(","):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise UsageError(
                    f"malformed option {part!r} in {role} spec {redact_spec(text)!r}",
                    f"write options as key=value, e.g. {name}:key=value,other=value",
                )
            options[key] = value.strip()
    plugin.parse_options(options)
    return EngineSpec(role=role, name=name, options=options)


def create_engine(spec: EngineSpec, **extra: Any) -> Any:
    """Construct the engine a spec names, with its options typed (this is where models load)."""
    plugin = engine_plugin(spec.role, spec.name)
    options = plugin.parse_options(spec.options)
    factory = plugin.load_factory()
    try:
        return factory(**options, **extra)
    except TypeError as exc:  # a factory whose signature disagrees with its declared options
        raise UsageError(
            f"bad option for {spec.role} engine {spec.name!r}: {exc}",
            f"see `voxperf engines {spec.name}` for the options it accepts",
        ) from exc


def resolve_engine(role: str, source: EngineSource) -> tuple[Any, EngineSpec | None]:
    """An engine from a spec string, an engine instance or a zero-argument factory (a class or
    function returning an engine); the spec is returned when there was one."""
    if isinstance(source, str):
        spec = parse_spec(role, source)
        return create_engine(spec), spec
    if isinstance(source, EngineSpec):
        return create_engine(source), source
    if is_factory(source):
        return source(), None
    return source, None


def describe_source(source: EngineSource) -> str:
    """How a non-spec engine source is recorded in a result's config (``module:qualname``)."""
    if isinstance(source, str):
        return redact_spec(source)
    target = source if is_factory(source) else type(source)
    module = getattr(target, "__module__", "?")
    name = getattr(target, "__qualname__", type(target).__qualname__)
    kind = "instance of " if target is type(source) else ""
    return f"{kind}{module}:{name}"
