"""Plugins that break the contract in each way a server must refuse at start."""

from __future__ import annotations

from sluice.engine.handlers import HandlerRegistry, StepContext, StepResult


async def plain(ctx: StepContext) -> StepResult:
    return StepResult({})


class Handler:
    async def run(self, ctx: StepContext) -> StepResult:
        return StepResult({})


class BadSchema(Handler):
    config_schema = {"type": "object", "required": "name"}


def registers_a_function(registry: HandlerRegistry) -> None:
    registry.register("plain", plain)  # type: ignore[arg-type]


def registers_a_class(registry: HandlerRegistry) -> None:
    registry.register("handler", Handler)  # type: ignore[arg-type]


def registers_a_bad_schema(registry: HandlerRegistry) -> None:
    registry.register("schemed", BadSchema())


def raises(registry: HandlerRegistry) -> None:
    raise RuntimeError("no licence key\nfound")


class Nested:
    @staticmethod
    def register(registry: HandlerRegistry) -> None:
        registry.register("nested", Handler())


NOT_CALLABLE = 3
