"""gateway: the shop's single HTTP entry point (Starlette on uvicorn; ``pip install
'bus[gateway]'``). It turns HTTP into bus requests to orders; it holds no state, so any
number may run. ``python -m services.gateway --port 8080`` serves it alone."""

from services.gateway.app import create_app
from services.gateway.server import serving

__all__ = ["create_app", "serving"]
