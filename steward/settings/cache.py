"""Settings of the cache capability: Redis connection, warmers and invalidation rules.

``[cache]`` keeps its connection keys (``url``, ``key_prefix``, ``socket_timeout``, from
:class:`~steward.settings.stores.CacheSettings`) and adds ``[[cache.warmers]]`` (what
``warm-cache`` writes) and ``[[cache.invalidations]]`` (which outbox events delete or refresh
which keys). The defaults are the warmers and rules of the example schema.

Key templates are ``str.format`` fields naming columns (``product:{id}``); invalidation
templates name event fields (``product:{aggregate_id}``). Templates are checked here; the
columns a warmer names are checked against its query's result before anything is written.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from steward.settings.stores import CacheSettings as CacheConnectionSettings
from steward.settings.stores import FlowDatabaseUrl, flow_database_url

__all__ = [
    "EVENT_PLACEHOLDERS",
    "CacheSettings",
    "InvalidationRule",
    "WarmerSettings",
    "template_fields",
]

EVENT_PLACEHOLDERS = ("aggregate_id", "aggregate_type", "event_type", "event_id")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NAMESPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def template_fields(template: str) -> list[str]:
    """The placeholder names of a key template; ValueError when one is not a plain name."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"key template {template!r}: {exc}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"key template {template!r}: placeholder {{{name}}} must be a plain column "
                "name such as {id}"
            )
        names.append(name)
    return names


class WarmerSettings(BaseModel):
    """One warmer: rows from a query (or a ``module:function``) written as keys.

    ``shape = "json"``: one string key per row (``value`` column, or the whole row as a JSON
    object). ``"hash"``: rows grouped by key, ``field`` template -> ``value`` column (or the
    row as JSON). ``"zset"``: rows grouped by key, ``field`` template = member, ``value``
    column = score; ``max_members`` keeps the highest scores.
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    name: str = Field(pattern=NAME_PATTERN, description="Warmer name (warm-cache warmers=[...]).")
    query: str | None = Field(
        default=None,
        description="SQL returning the rows; values only through :named parameters (params).",
    )
    source: str | None = Field(
        default=None,
        description="module:function(connection, params) returning an iterable of row mappings "
        "(instead of query).",
    )
    params: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="Bound parameters of the query (or the function)."
    )
    key: str = Field(min_length=1, description="Key template, e.g. product:{id}.")
    shape: Literal["json", "hash", "zset"] = Field(
        default="json", description="Value shape: json string, Redis hash, or sorted set."
    )
    field: str | None = Field(
        default=None, description="hash: field template; zset: member template (e.g. {id})."
    )
    value: str | None = Field(
        default=None,
        description="json/hash: column stored as the value (None = the row as a JSON object); "
        "zset: the score column.",
    )
    ttl_seconds: int = Field(
        default=86_400, ge=0, le=365 * 86_400, description="Key TTL; 0 = no expiry."
    )
    ttl_jitter_pct: float = Field(
        default=10.0,
        ge=0,
        le=90,
        description="Each TTL is drawn uniformly from ttl * (1 +/- pct/100): keys warmed "
        "together do not all expire together.",
    )
    mode: Literal["refresh", "versioned"] = Field(
        default="refresh",
        description="refresh: overwrite keys in place. versioned: write a new generation "
        "{namespace}:v{n}:..., flip {namespace}:current, then remove the old generation.",
    )
    namespace: str | None = Field(
        default=None,
        pattern=NAMESPACE_PATTERN,
        description="versioned: the namespace (warmers sharing one are warmed together); "
        "refresh: the stats namespace. None = the key template's first segment.",
    )
    max_members: int | None = Field(
        default=None, ge=1, description="zset: keep only the N highest-scored members."
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=100_000, description="Rows per pipeline; None = cache.batch_size."
    )
    enabled: bool = Field(default=True, description="False keeps the warmer but skips it.")

    @field_validator("key", "field")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str | None) -> str | None:
        if value is not None:
            module, _, function = value.partition(":")
            if not module or not function.isidentifier():
                raise ValueError("expected module:function, e.g. myapp.cache:category_rows")
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> WarmerSettings:
        if (self.query is None) == (self.source is None):
            raise ValueError(f"warmer {self.name!r}: set exactly one of query or source")
        if self.shape in ("hash", "zset") and not self.field:
            raise ValueError(f"warmer {self.name!r}: shape {self.shape} needs field (a template)")
        if self.shape == "zset" and not self.value:
            raise ValueError(f"warmer {self.name!r}: shape zset needs value (the score column)")
        if self.max_members is not None and self.shape != "zset":
            raise ValueError(f"warmer {self.name!r}: max_members applies to shape zset only")
        return self

    @property
    def effective_namespace(self) -> str:
        if self.namespace:
            return self.namespace
        if self.mode == "versioned":
            return self.name
        return self.key.split(":", 1)[0].split("{", 1)[0] or self.name


class InvalidationRule(BaseModel):
    """Outbox events whose ``{aggregate_type}.{event_type}`` matches ``events`` change keys.

    ``keys`` are deleted (UNLINK), ``patterns`` are deleted by SCAN + UNLINK, ``warmers`` are
    run again. Templates may use {aggregate_id}, {aggregate_type}, {event_type}, {event_id}.
    With ``namespace`` set (a versioned namespace) keys and patterns are resolved in its current
    generation; otherwise they are plain keys under cache.key_prefix.
    """

    # A misspelt key is an error. The attribute is not called ``keys``: Prefect walks models
    # passed to tasks with ``dict(model)``, which would call a ``keys`` field as a method.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    events: list[str] = Field(
        min_length=1,
        description="Glob patterns on aggregate_type.event_type, e.g. product.* or *.Deleted.",
    )
    delete_keys: list[str] = Field(
        default_factory=list, alias="keys", description="Key templates to delete."
    )
    patterns: list[str] = Field(
        default_factory=list, description="Key glob templates deleted with SCAN + UNLINK."
    )
    warmers: list[str] = Field(default_factory=list, description="Warmers to run again.")
    namespace: str | None = Field(
        default=None, pattern=NAMESPACE_PATTERN, description="Versioned namespace of the keys."
    )

    @field_validator("delete_keys", "patterns")
    @classmethod
    def _check_placeholders(cls, value: list[str]) -> list[str]:
        for template in value:
            unknown = [n for n in template_fields(template) if n not in EVENT_PLACEHOLDERS]
            if unknown:
                raise ValueError(
                    f"template {template!r}: unknown placeholder {{{unknown[0]}}}; accepted: "
                    + ", ".join("{" + name + "}" for name in EVENT_PLACEHOLDERS)
                )
        return value

    @model_validator(mode="after")
    def _check_action(self) -> InvalidationRule:
        if not (self.delete_keys or self.patterns or self.warmers):
            raise ValueError(f"rule for {self.events}: set keys, patterns or warmers")
        return self


# --- The example schema's warmers and rules -----------------------------------------------

PRODUCT_DETAIL_SQL = """
SELECT p.id, p.sku, p.name, p.brand, p.category_id, pr.amount AS price, pr.currency,
       COALESCE(i.on_hand - i.reserved, 0) AS available
FROM products p
LEFT JOIN prices pr
  ON pr.product_id = p.id AND pr.currency = :currency AND pr.effective_to IS NULL
LEFT JOIN inventory i ON i.product_id = p.id
WHERE p.deleted_at IS NULL
"""

TOP_SELLERS_SQL = """
SELECT p.category_id, oi.product_id, SUM(oi.quantity) AS sold
FROM order_items oi
JOIN orders o ON o.id = oi.order_id
JOIN products p ON p.id = oi.product_id
WHERE o.deleted_at IS NULL AND o.status <> :excluded_status
  AND p.deleted_at IS NULL AND p.category_id IS NOT NULL
GROUP BY p.category_id, oi.product_id
"""

PRICE_LIST_SQL = """
SELECT p.category_id, p.id, pr.amount
FROM products p
JOIN prices pr
  ON pr.product_id = p.id AND pr.currency = :currency AND pr.effective_to IS NULL
WHERE p.deleted_at IS NULL AND p.category_id IS NOT NULL
"""


def _example_warmers() -> list[WarmerSettings]:
    catalog = {"mode": "versioned", "namespace": "catalog", "ttl_seconds": 2 * 86_400}
    return [
        WarmerSettings(
            name="product-detail",
            query=PRODUCT_DETAIL_SQL,
            params={"currency": "EUR"},
            key="product:{id}",
        ),
        WarmerSettings(
            name="category-tree",
            source="steward.cache.example:category_tree",
            key="category:tree",
            value="tree",
            **catalog,  # type: ignore[arg-type]
        ),
        WarmerSettings(
            name="top-sellers",
            query=TOP_SELLERS_SQL,
            params={"excluded_status": "cancelled"},
            key="category:{category_id}:top-sellers",
            shape="zset",
            field="{product_id}",
            value="sold",
            max_members=100,
            **catalog,  # type: ignore[arg-type]
        ),
        WarmerSettings(
            name="price-lists",
            query=PRICE_LIST_SQL,
            params={"currency": "EUR"},
            key="category:{category_id}:prices",
            shape="hash",
            field="{id}",
            value="amount",
            **catalog,  # type: ignore[arg-type]
        ),
    ]


def _example_rules() -> list[InvalidationRule]:
    return [
        # ProductCreated, PriceChanged, StockAdjusted, an application's ProductUpdated...
        InvalidationRule(
            events=["product.*"],
            keys=["product:{aggregate_id}"],
            warmers=["price-lists", "top-sellers"],
        ),
        InvalidationRule(
            events=["order.*"], keys=["order:{aggregate_id}", "order:{aggregate_id}:items"]
        ),
        InvalidationRule(
            events=["user.*"], keys=["user:{aggregate_id}", "user:{aggregate_id}:orders"]
        ),
    ]


class CacheSettings(CacheConnectionSettings):
    """Redis (connection), cache warmers, invalidation rules and cache-aside behaviour."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error

    database_url: FlowDatabaseUrl = flow_database_url("the cache warmers (their queries)")
    warmers: list[WarmerSettings] = Field(
        default_factory=_example_warmers,
        description="[[cache.warmers]]: what warm-cache writes (default: the example schema's).",
    )
    invalidations: list[InvalidationRule] = Field(
        default_factory=_example_rules,
        description="[[cache.invalidations]]: outbox events -> keys deleted / warmers rerun.",
    )
    batch_size: int = Field(
        default=5000, ge=1, le=100_000, description="Rows read and keys written per pipeline."
    )
    consumer_group: str = Field(
        default="steward-cache",
        pattern=NAME_PATTERN,
        description="Consumer group invalidate-cache reads the outbox streams as.",
    )
    consumer_name: str = Field(
        default="invalidate-cache",
        min_length=1,
        max_length=120,
        description="Consumer name in the group (stable, so a rerun picks up its own "
        "unacknowledged entries).",
    )
    lock_ms: int = Field(
        default=5000,
        ge=10,
        le=600_000,
        description="get_or_load: how long one loader holds a cold key's lock (SET NX PX).",
    )
    reconnect_max_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="cache invalidate --forever: longest wait between reconnect attempts while "
        "Redis or the database is away (starts at 0.5 s, doubles, jittered).",
    )
    stats_scan_limit: int = Field(
        default=200_000,
        ge=100,
        description="cache stats: keys examined with SCAN per namespace before counting stops.",
    )

    @field_validator("warmers")
    @classmethod
    def _check_warmers(cls, warmers: list[WarmerSettings]) -> list[WarmerSettings]:
        names = [w.name for w in warmers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"warmer names must be unique: {', '.join(duplicates)}")
        versioned = {w.effective_namespace for w in warmers if w.mode == "versioned"}
        for warmer in warmers:
            if warmer.mode == "refresh" and warmer.effective_namespace in versioned:
                raise ValueError(
                    f"warmer {warmer.name!r} (refresh) uses namespace "
                    f"{warmer.effective_namespace!r} of a versioned warmer; give it another"
                )
        return warmers

    @field_validator("invalidations")
    @classmethod
    def _check_rules(
        cls, rules: list[InvalidationRule], info: ValidationInfo
    ) -> list[InvalidationRule]:
        names = [w.name for w in info.data.get("warmers", [])]
        for i, rule in enumerate(rules):
            unknown = [w for w in rule.warmers if w not in names]
            if unknown:
                raise ValueError(
                    f"invalidations[{i}] names unknown warmer {unknown[0]!r}; "
                    f"warmers: {', '.join(names) or '(none)'}"
                )
        return rules
