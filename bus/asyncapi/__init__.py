"""AsyncAPI 3.0 documents generated from services alone: ``bus docs`` and the console's
contracts view. ``document(services, url=...)`` builds one (a dict ready for JSON),
``render(doc, "json" | "yaml")`` writes it out."""

from bus.asyncapi.document import document
from bus.asyncapi.render import render

__all__ = ["document", "render"]
