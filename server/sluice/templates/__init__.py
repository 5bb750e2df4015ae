"""The predefined templates, shipped as proto-JSON files beside this module (the same form a
client sends to CreateTemplate), loaded and validated when the server starts."""

from __future__ import annotations

import dataclasses
from importlib import resources

from google.protobuf import json_format

from sluice.api.convert import template_from_proto
from sluice.engine.model import Template
from sluice.v1 import template_pb2


def load_predefined() -> list[Template]:
    found = []
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            message = json_format.Parse(entry.read_text(encoding="utf-8"), template_pb2.Template())
            template = template_from_proto(message)
            found.append(dataclasses.replace(template, version=1, predefined=True))
    return found
