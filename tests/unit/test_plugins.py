"""Plugins at start: each way one can be wrong is refused with one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice import plugins
from sluice.config import ConfigError
from sluice.engine.handlers import HandlerRegistry

BAD = "tests.support.bad_plugins"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bad_plugins", "plugin 'bad_plugins' must be module:function, e.g. mypackage.steps:register"),
        ("a-b:c", "plugin 'a-b:c' must be module:function, e.g. mypackage.steps:register"),
        ("no_such_module_x:register", "plugin no_such_module_x:register: no module named 'no_such_module_x' (is its folder on PYTHONPATH?)"),
        (f"{BAD}:missing", f"plugin {BAD}:missing: {BAD} has no attribute 'missing'"),
        (f"{BAD}:NOT_CALLABLE", f"plugin {BAD}:NOT_CALLABLE: NOT_CALLABLE is 'int', not a function taking the step registry"),
        (f"{BAD}:raises", f"plugin {BAD}:raises failed: RuntimeError: no licence key found"),
        (f"{BAD}:registers_a_function", f"plugin {BAD}:registers_a_function: step type 'plain': 'plain' is a function; register an object with a method `async def run(self, ctx) -> StepResult`"),
        (f"{BAD}:registers_a_class", f"plugin {BAD}:registers_a_class: step type 'handler': the class Handler was registered, not an instance: register Handler()"),
        (f"{BAD}:registers_a_bad_schema", f"plugin {BAD}:registers_a_bad_schema: step type 'schemed': BadSchema.config_schema is not a valid JSON Schema: $.required: 'name' is not of type 'array'"),
    ],
)  # fmt: skip
def test_a_broken_plugin_is_refused_with_one_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plugins.load([spec], HandlerRegistry())
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_a_plugin_may_be_a_dotted_attribute() -> None:
    registry = HandlerRegistry()
    plugins.load([f"{BAD}:Nested.register"], registry)
    assert "nested" in registry


def test_a_module_that_fails_to_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin_mod.py").write_text("import no_such_dependency_y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        plugins.load(["broken_plugin_mod:register"], HandlerRegistry())
    assert str(caught.value) == (
        "plugin broken_plugin_mod:register: importing broken_plugin_mod failed: "
        "ModuleNotFoundError: No module named 'no_such_dependency_y'"
    )
