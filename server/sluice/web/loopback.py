"""The private way in for the gRPC-Web adapter: an insecure unix-domain socket of this
process's gRPC server, in a temporary directory only this user can enter (0700), removed at
shutdown. Insecure is safe here: nobody else can reach the socket, and every call through it
still passes the Guard (the browser's token travels as metadata)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import grpc


class LoopbackSocket:
    """Where the gRPC server listens for the adapter, and a channel to it."""

    def __init__(self) -> None:
        # mkdtemp makes the directory 0700: other users cannot connect to the socket inside.
        self.directory = Path(tempfile.mkdtemp(prefix="sluice-web-"))
        self.address = f"unix:{self.directory / 'grpc.sock'}"

    def channel(self, max_message_bytes: int) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
