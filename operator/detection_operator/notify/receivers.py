"""Receivers the operator can deliver alerts to, configured in a file (a mounted Secret).

```yaml
allowedHosts: [hooks.example.com, alertmanager.monitoring.svc]   # optional allow-list
receivers:
  - name: platform-webhook
    type: webhook
    url: https://hooks.example.com/detection
    hmacKey: "…"             # signs X-Signature-SHA256; lives in the Secret, never in a spec
  - name: alertmanager
    type: alertmanager
    url: http://alertmanager.monitoring.svc:9093
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel


class Receiver(BaseModel):
    """One delivery target."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    type: Literal["webhook", "alertmanager"]
    url: str
    hmac_key: SecretStr | None = None
    timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    attempts: int = Field(default=5, ge=1, le=10)

    @field_validator("url")
    @classmethod
    def _absolute_http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return url.rstrip("/")


class ReceiverConfig(BaseModel):
    """All receivers, and the hosts they may point at."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    allowed_hosts: list[str] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checked(self) -> ReceiverConfig:
        names = [r.name for r in self.receivers]
        if len(names) != len(set(names)):
            raise ValueError("receiver names must be unique")
        if self.allowed_hosts:
            for receiver in self.receivers:
                host = urlsplit(receiver.url).hostname or ""
                if host not in self.allowed_hosts:
                    raise ValueError(f"receiver {receiver.name}: host {host} is not in allowedHosts")
        return self

    def get(self, name: str) -> Receiver | None:
        """The receiver called ``name``, if configured."""
        return next((r for r in self.receivers if r.name == name), None)

    @classmethod
    def load(cls, path: str | None) -> ReceiverConfig:
        """Read the receivers file; no path means no receivers (Events are still posted)."""
        if not path:
            return cls()
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})
