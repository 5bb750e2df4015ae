from __future__ import annotations

import pytest

from sluice.server import SluiceServer
from tests.conftest import ServerFactory
from tests.support.crypto import SECRET


@pytest.fixture
async def auth_server(start_server: ServerFactory) -> SluiceServer:
    """A server that requires HS256 bearer tokens signed with SECRET."""
    return await start_server(auth_jwt_secret=SECRET)
