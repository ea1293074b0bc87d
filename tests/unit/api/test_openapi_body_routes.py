"""Every operation that takes a body declares the 413 the body-limit middleware can send."""

from __future__ import annotations

from pathlib import Path

from api.app import create_app
from api.settings import Settings


def test_every_body_method_declares_413(tmp_path: Path) -> None:
    document = create_app(Settings(data_dir=tmp_path)).openapi()
    missing = [f"{method.upper()} {path}"
               for path, operations in document["paths"].items()
               for method, operation in operations.items()
               if method in ("post", "put", "patch") and "413" not in operation["responses"]]
    assert missing == []
