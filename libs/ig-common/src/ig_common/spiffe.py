"""SPIFFE IDs of the form Istio and SPIRE use: ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ID = re.compile(r"spiffe://(?P<domain>[a-z0-9.\-_]{1,255})/ns/(?P<ns>[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)"
                 r"/sa/(?P<sa>[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?)")


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> SpiffeId | None:
        """The ID, or None for anything that is not exactly a workload ID of this form."""
        match = _ID.fullmatch(uri)
        if match is None:
            return None
        return cls(match["domain"], match["ns"], match["sa"])

    def sibling(self, name: str) -> SpiffeId:
        """Another workload of the same trust domain and namespace."""
        return SpiffeId(self.trust_domain, self.namespace, name)

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.name}"
