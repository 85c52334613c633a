"""The replicas serving one model name, and which one gets the next request.

Least outstanding requests, weighted: the replica with the smallest ``(in flight + 1) /
weight`` wins, so a weight-2 server carries about twice the load of a weight-1 one. Replicas
whose breaker is open are skipped; ties go to the replica listed first.
"""

from __future__ import annotations

from dataclasses import dataclass

from localloom.upstream.server import UpstreamServer

__all__ = ["Pool", "Replica"]


@dataclass(frozen=True)
class Replica:
    """One upstream serving a model, under the upstream's own model name."""

    server: UpstreamServer
    remote_model: str

    @property
    def n_ctx(self) -> int:
        """The context the upstream reported for the model, else the configured one."""
        return self.server.n_ctx.get(self.remote_model, self.server.config.n_ctx)


@dataclass
class Pool:
    """Every replica of one local model name."""

    model: str
    replicas: list[Replica]

    def pick(self, tried: set[str]) -> Replica | None:
        """The replica for the next attempt (not one of ``tried`` upstream names), or None
        when every remaining replica's breaker is open."""
        candidates = [r for r in self.replicas if r.server.name not in tried]
        ranked = sorted(candidates, key=lambda r: (r.server.outstanding + 1)
                        / r.server.config.weight)
        for replica in ranked:
            if replica.server.breaker.allow():
                return replica
        return None

    @property
    def names(self) -> list[str]:
        """Upstream names, in order."""
        return [r.server.name for r in self.replicas]

    @property
    def n_ctx(self) -> int:
        """The smallest context among replicas (a task's chunks must fit any of them)."""
        return min(r.n_ctx for r in self.replicas)

    @property
    def capacity(self) -> int:
        """Requests the replicas take at once, together."""
        return sum(r.server.config.max_concurrency for r in self.replicas)
