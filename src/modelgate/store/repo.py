"""A typed repository over the schema. Each method is one transaction.

Names are unique per kind case-insensitively and kept as given, as SageMaker's are ("The name is
case-insensitive in CreateEndpoint, but the case is preserved"): :meth:`Repository.get` finds ``CaseC`` by
``casec``, and :meth:`Repository.insert` refuses ``casec`` when ``CaseC`` exists.

A stored document that no longer validates is never served and never stops a caller: it is moved to the
``quarantine`` table (raw text, tags and the reason kept for the operator) and logged, and the read goes on
without it (:meth:`Repository.get` answers None, :meth:`Repository.all` leaves it out).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.domain.deployments import Deployment
from modelgate.domain.resources import Endpoint, EndpointConfig, Model, Tag
from modelgate.store.db import deployments, instances, quarantine, resources, tags

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

MODEL = "model"
ENDPOINT_CONFIG = "endpoint-config"
ENDPOINT = "endpoint"
DEPLOYMENT = "deployment"  # a kind in the quarantine table only
_KINDS: dict[type[BaseModel], str] = {Model: MODEL, EndpointConfig: ENDPOINT_CONFIG, Endpoint: ENDPOINT}


class DuplicateName(Exception):
    """A resource of this kind already has this name, in some case."""


@dataclass(frozen=True)
class QuarantinedRow:
    kind: str
    name: str
    body: str
    reason: str


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    endpoint: str
    variant: str
    port: int
    pid: int | None
    created: float


class Repository:
    def __init__(self, engine: Engine, now: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.now = now

    # --- resources -------------------------------------------------------------------------------

    def get(self, cls: type[T], name: str) -> T | None:
        """The resource of this name in any case (the exact case first); None if none loads."""
        kind = _KINDS[cls]
        by_kind = (resources.c.kind == kind,)
        with self.engine.connect() as conn:
            row = conn.execute(
                select(resources.c.name, resources.c.body).where(*by_kind, resources.c.name == name)
            ).first()
            if row is None:
                row = conn.execute(
                    select(resources.c.name, resources.c.body)
                    .where(*by_kind, func.lower(resources.c.name) == name.lower())
                    .order_by(resources.c.creation_time, resources.c.name)
                ).first()
        return self._load(cls, kind, row[0], row[1]) if row else None

    def all(self, cls: type[T]) -> list[T]:
        """Every resource of the kind that loads (the others are quarantined on the way)."""
        kind = _KINDS[cls]
        with self.engine.connect() as conn:
            rows = conn.execute(select(resources.c.name, resources.c.body).where(resources.c.kind == kind)).all()
        loaded = (self._load(cls, kind, r[0], r[1]) for r in rows)
        return [obj for obj in loaded if obj is not None]

    def insert(self, obj: Model | EndpointConfig | Endpoint, new_tags: Sequence[Tag] = ()) -> None:
        """Insert a new resource and its tags atomically; DuplicateName if its name exists in any case."""
        kind = _KINDS[type(obj)]
        status = obj.status.value if isinstance(obj, Endpoint) else None
        with self.engine.begin() as conn:
            if _exists(conn, kind, obj.name):
                raise DuplicateName(obj.name)
            conn.execute(
                insert(resources).values(
                    kind=kind,
                    name=obj.name,
                    creation_time=obj.creation_time,
                    status=status,
                    body=obj.model_dump_json(),
                )
            )
            for i, tag in enumerate(new_tags):
                conn.execute(insert(tags).values(arn=obj.arn, key=tag.key, value=tag.value, position=i))

    def exists(self, cls: type[BaseModel], name: str) -> bool:
        """Whether a resource of the kind has this name, in any case."""
        with self.engine.connect() as conn:
            return _exists(conn, _KINDS[cls], name)

    def save_endpoint(self, ep: Endpoint) -> None:
        with self.engine.begin() as conn:
            _save_endpoint(conn, ep)

    def delete(self, cls: type[BaseModel], name: str, arn: str) -> None:
        kind = _KINDS[cls]
        with self.engine.begin() as conn:
            conn.execute(delete(resources).where(resources.c.kind == kind, resources.c.name == name))
            conn.execute(delete(tags).where(tags.c.arn == arn))
            if kind == ENDPOINT:
                conn.execute(delete(deployments).where(deployments.c.endpoint == name))

    def model_data_urls(self) -> set[str]:
        """Every ModelDataUrl a stored model, endpoint snapshot or deployment in progress names (what the artifact
        cache must keep)."""
        models = [*self.all(Model)]
        for ep in self.all(Endpoint):
            models.extend(ep.models)
        with self.engine.connect() as conn:
            bodies = conn.execute(select(deployments.c.body)).scalars().all()
        for body in bodies:
            models.extend(Deployment.model_validate_json(body).models)
        return {c.model_data_url for m in models for c in m.containers if c.model_data_url}

    # --- deployments (UpdateEndpoint in progress) ------------------------------------------------

    def get_deployment(self, endpoint: str) -> Deployment | None:
        """The stored deployment; None if there is none, or if it no longer loads (then quarantined: the
        endpoint is restored on its current fleet instead of resuming the update)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(deployments.c.body).where(deployments.c.endpoint == endpoint)).first()
        if row is None:
            return None
        try:
            return Deployment.model_validate_json(row[0])
        except ValueError as exc:  # pydantic's ValidationError is one
            with self.engine.begin() as conn:
                gone = conn.execute(
                    delete(deployments).where(deployments.c.endpoint == endpoint, deployments.c.body == row[0])
                ).rowcount
                if gone:
                    self._move_aside(conn, DEPLOYMENT, endpoint, row[0], None, str(exc))
            return None

    def save_deployment(self, dep: Deployment, ep: Endpoint | None = None) -> None:
        """Store the deployment (and the endpoint with it, in the same transaction)."""
        body = dep.model_dump_json()
        with self.engine.begin() as conn:
            conn.execute(
                sqlite_insert(deployments)
                .values(endpoint=dep.endpoint, body=body)
                .on_conflict_do_update(index_elements=[deployments.c.endpoint], set_={"body": body})
            )
            if ep is not None:
                _save_endpoint(conn, ep)

    def finish_deployment(self, ep: Endpoint) -> None:
        """Store the endpoint as the deployment left it and forget the deployment, atomically."""
        with self.engine.begin() as conn:
            _save_endpoint(conn, ep)
            conn.execute(delete(deployments).where(deployments.c.endpoint == ep.name))

    # --- tags ------------------------------------------------------------------------------------

    def tags(self, arn: str) -> list[Tag]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(tags.c.key, tags.c.value).where(tags.c.arn == arn).order_by(tags.c.position)
            ).all()
        return [Tag(key=r[0], value=r[1]) for r in rows]

    def put_tags(self, arn: str, new: Sequence[Tag]) -> None:
        with self.engine.begin() as conn:
            existing = {
                r[0]: r[1] for r in conn.execute(select(tags.c.key, tags.c.position).where(tags.c.arn == arn)).all()
            }
            nxt = max(existing.values(), default=-1) + 1
            for tag in new:
                if tag.key in existing:
                    conn.execute(update(tags).where(tags.c.arn == arn, tags.c.key == tag.key).values(value=tag.value))
                else:
                    conn.execute(insert(tags).values(arn=arn, key=tag.key, value=tag.value, position=nxt))
                    existing[tag.key] = nxt
                    nxt += 1

    def delete_tags(self, arn: str, keys: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(tags).where(tags.c.arn == arn, tags.c.key.in_(list(keys))))

    # --- quarantine ------------------------------------------------------------------------------

    def quarantined(self) -> list[QuarantinedRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(quarantine.c.kind, quarantine.c.name, quarantine.c.body, quarantine.c.reason).order_by(
                    quarantine.c.id
                )
            ).all()
        return [QuarantinedRow(r[0], r[1], r[2], r[3]) for r in rows]

    def _load(self, cls: type[T], kind: str, name: str, body: str) -> T | None:
        try:
            return cls.model_validate_json(body)
        except ValueError as exc:  # pydantic's ValidationError is one; so is a body that is not JSON
            self._quarantine(kind, name, body, str(exc))
            return None

    def _quarantine(self, kind: str, name: str, body: str, reason: str) -> None:
        """Move a resource row that does not load aside, with its tags and (an endpoint's) deployment."""
        arn = _arn_in(body)
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(resources).where(resources.c.kind == kind, resources.c.name == name, resources.c.body == body)
            ).rowcount
            if not gone:  # rewritten or moved meanwhile: nothing to do
                return
            kept: str | None = None
            if arn is not None:
                rows = conn.execute(
                    select(tags.c.key, tags.c.value).where(tags.c.arn == arn).order_by(tags.c.position)
                ).all()
                conn.execute(delete(tags).where(tags.c.arn == arn))
                kept = json.dumps([[r[0], r[1]] for r in rows]) if rows else None
            self._move_aside(conn, kind, name, body, kept, reason)
            if kind == ENDPOINT:
                dep = conn.execute(select(deployments.c.body).where(deployments.c.endpoint == name)).first()
                if dep is not None:
                    conn.execute(delete(deployments).where(deployments.c.endpoint == name))
                    self._move_aside(conn, DEPLOYMENT, name, dep[0], None, f"its endpoint {name} was quarantined")

    def _move_aside(
        self, conn: Connection, kind: str, name: str, body: str, kept_tags: str | None, reason: str
    ) -> None:
        conn.execute(
            insert(quarantine).values(
                kind=kind, name=name, body=body, tags=kept_tags, reason=reason, quarantined_at=self.now()
            )
        )
        first = " ".join(reason.split())[:300]
        log.error(
            "stored %s %r does not load; moved to the quarantine table (raw text kept), serving the rest: %s",
            kind,
            name,
            first,
        )

    # --- instances -------------------------------------------------------------------------------

    def add_instance(self, rec: InstanceRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(instances).values(
                    id=rec.id,
                    endpoint=rec.endpoint,
                    variant=rec.variant,
                    port=rec.port,
                    pid=rec.pid,
                    created=rec.created,
                )
            )

    def set_instance_pid(self, instance_id: str, pid: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(instances).where(instances.c.id == instance_id).values(pid=pid))

    def remove_instance(self, instance_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(instances).where(instances.c.id == instance_id))

    def all_instances(self) -> list[InstanceRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(instances)).all()
        return [InstanceRecord(r.id, r.endpoint, r.variant, r.port, r.pid, r.created) for r in rows]


def _save_endpoint(conn: Connection, ep: Endpoint) -> None:
    conn.execute(
        update(resources)
        .where(resources.c.kind == ENDPOINT, resources.c.name == ep.name)
        .values(status=ep.status.value, body=ep.model_dump_json())
    )


def _exists(conn: Connection, kind: str, name: str) -> bool:
    query = select(resources.c.name).where(resources.c.kind == kind, func.lower(resources.c.name) == name.lower())
    return conn.execute(query.limit(1)).first() is not None


def _arn_in(body: str) -> str | None:
    """The ``arn`` of a stored document that does not validate, if its JSON still says one."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    arn = doc.get("arn") if isinstance(doc, dict) else None
    return arn if isinstance(arn, str) else None
