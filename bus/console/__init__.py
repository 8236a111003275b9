"""The console: a small web application showing a running system through the bus — live
services (presence), flow charts, dead letters to browse and replay, and the contracts
(AsyncAPI). ``bus console`` serves it; ``pip install 'bus[console]'``.

``Console(url, Auth(token), services)`` holds its state, ``create_app`` makes the ASGI
app and ``serving`` runs it (on 127.0.0.1 by default) inside the caller's event loop.
"""

from bus.console.app import Console, create_app
from bus.console.auth import TOKEN_ENV, Auth, token_from_env
from bus.console.server import serving

__all__ = ["TOKEN_ENV", "Auth", "Console", "create_app", "serving", "token_from_env"]
