"""Secrets are referenced (env var or file), resolved late, and never printed."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

from handlers.errors import ConfigError


class SecretRef(BaseModel):
    """Where a secret lives: ``{env: NAME}`` or ``{file: /path}``. Never the value itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self) -> str:
        """Read the secret now; a missing one is a ``ConfigError`` naming the reference."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"secret env var {self.env} is not set (or empty)")
            return value
        assert self.file is not None
        try:
            value = self.file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"secret file {self.file} cannot be read: {exc.strerror}") from exc
        if not value:
            raise ConfigError(f"secret file {self.file} is empty")
        return value

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()})"
