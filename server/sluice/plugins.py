"""Plugins: `module:function` callables, given the step registry at start to add or replace
step types (`--plugin`, SLUICE_PLUGINS).

Whatever is wrong with one (a malformed spec, a module that does not import, a missing or
uncallable function, a function that raises, a handler that breaks the contract) is a
ConfigError naming the plugin, in one line: the server refuses to start rather than fail every
step of that type later.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from typing import cast

from sluice.config import ConfigError
from sluice.engine.handlers import HandlerRegistry, InvalidHandler

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SPEC = re.compile(rf"^{_DOTTED}:{_DOTTED}$")

Plugin = Callable[[HandlerRegistry], object]


def load(specs: Iterable[str], registry: HandlerRegistry) -> None:
    """Import and call each plugin in turn with `registry`."""
    for spec in specs:
        plugin = resolve(spec)
        try:
            plugin(registry)
        except InvalidHandler as exc:
            raise ConfigError(f"plugin {spec}: {_line(exc)}") from None
        except Exception as exc:
            raise ConfigError(f"plugin {spec} failed: {_described(exc)}") from None


def resolve(spec: str) -> Plugin:
    """The callable a `module:function` spec names."""
    if not _SPEC.match(spec):
        raise ConfigError(f"plugin {spec!r} must be module:function, e.g. mypackage.steps:register")
    module_name, _, attribute = spec.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(
                f"plugin {spec}: no module named {exc.name!r} (is its folder on PYTHONPATH?)"
            ) from None
        raise ConfigError(
            f"plugin {spec}: importing {module_name} failed: {_described(exc)}"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"plugin {spec}: importing {module_name} failed: {_described(exc)}"
        ) from None
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise ConfigError(f"plugin {spec}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, name)
    if not callable(target):
        raise ConfigError(
            f"plugin {spec}: {attribute} is {type(target).__name__!r}, not a function taking "
            "the step registry"
        )
    return cast(Plugin, target)


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_line(exc)}" if str(exc) else type(exc).__name__


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
