"""The live web view (`SLUICE_HTTP_LISTEN`): the browser app's static files, and the API for
the browser as gRPC-Web, forwarded to this server's own gRPC server so that the browser gets
exactly the service every other client gets (authentication, validation, errors, metrics).

- `grpc_web.py`: the protocol adapter (gRPC-Web framing <-> a gRPC call, bytes untouched).
- `loopback.py`: the private unix socket the adapter reaches the gRPC server on.
- `assets.py`: the built app (clients/web, built by `make web` into `static/`).
- `site.py`: the HTTP server that puts them together.
"""
