"""Who is calling. Until authentication is configured every caller is one local user; the
owner is still stored with every run and template and checked in every query."""

from __future__ import annotations

from typing import Any

import grpc

LOCAL_USER = "local"


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    return LOCAL_USER
