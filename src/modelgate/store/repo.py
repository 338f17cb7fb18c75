"""A typed repository over the schema. Each method is one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from modelgate.domain.deployments import Deployment
from modelgate.domain.resources import Endpoint, EndpointConfig, Model, Tag
from modelgate.store.db import deployments, instances, resources, tags

T = TypeVar("T", bound=BaseModel)

MODEL = "model"
ENDPOINT_CONFIG = "endpoint-config"
ENDPOINT = "endpoint"
_KINDS: dict[type[BaseModel], str] = {Model: MODEL, EndpointConfig: ENDPOINT_CONFIG, Endpoint: ENDPOINT}


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    endpoint: str
    variant: str
    port: int
    pid: int | None
    created: float


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- resources -------------------------------------------------------------------------------

    def get(self, cls: type[T], name: str) -> T | None:
        kind = _KINDS[cls]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(resources.c.body).where(resources.c.kind == kind, resources.c.name == name)
            ).first()
        return cls.model_validate_json(row[0]) if row else None

    def all(self, cls: type[T]) -> list[T]:
        kind = _KINDS[cls]
        with self.engine.connect() as conn:
            rows = conn.execute(select(resources.c.body).where(resources.c.kind == kind)).all()
        return [cls.model_validate_json(r[0]) for r in rows]

    def insert(self, obj: Model | EndpointConfig | Endpoint, new_tags: Sequence[Tag] = ()) -> None:
        """Insert a new resource and its tags atomically; raises on a duplicate name."""
        kind = _KINDS[type(obj)]
        status = obj.status.value if isinstance(obj, Endpoint) else None
        with self.engine.begin() as conn:
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
        kind = _KINDS[cls]
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(resources.c.name).where(resources.c.kind == kind, resources.c.name == name)
                ).first()
                is not None
            )

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
        with self.engine.connect() as conn:
            row = conn.execute(select(deployments.c.body).where(deployments.c.endpoint == endpoint)).first()
        return Deployment.model_validate_json(row[0]) if row else None

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
                r[0]: r[1]
                for r in conn.execute(select(tags.c.key, tags.c.position).where(tags.c.arn == arn)).all()
            }
            nxt = max(existing.values(), default=-1) + 1
            for tag in new:
                if tag.key in existing:
                    conn.execute(
                        update(tags).where(tags.c.arn == arn, tags.c.key == tag.key).values(value=tag.value)
                    )
                else:
                    conn.execute(insert(tags).values(arn=arn, key=tag.key, value=tag.value, position=nxt))
                    existing[tag.key] = nxt
                    nxt += 1

    def delete_tags(self, arn: str, keys: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(tags).where(tags.c.arn == arn, tags.c.key.in_(list(keys))))

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
