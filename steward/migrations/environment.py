"""Running an Alembic environment (``env.py``) with Steward's hooks, whoever wrote it.

An application's ``env.py`` configures its own migration context (its connection, its
``target_metadata``, its options) and knows nothing of Steward. :class:`HookedEnvironment`
adds Steward's ``on_version_apply`` callbacks to whatever that ``env.py`` passes to
``context.configure``, so each applied revision's checksum is written on the same connection,
inside the same transaction as the revision itself, for the example's ``env.py`` and an
application's alike.

The Config is built in code, without a config file: an ``env.py`` that calls
``fileConfig(config.config_file_name)`` when there is one therefore leaves the process's
logging (Prefect's handlers) alone. The database URL goes in as ``sqlalchemy.url``, which is
what the standard ``env.py`` template reads.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from steward.migrations.sources import DEFAULT_SCRIPT_LOCATION

__all__ = ["alembic_config", "hooked_environment", "run_alembic"]


def alembic_config(
    script_location: Path = DEFAULT_SCRIPT_LOCATION,
    *,
    options: Mapping[str, str] | None = None,
    url: str | None = None,
    output_buffer: Any = None,
    **attributes: Any,
) -> Config:
    """An Alembic Config built in code (independent of the working directory)."""
    cfg = Config(output_buffer=output_buffer, stdout=io.StringIO())
    for key, value in (options or {}).items():
        cfg.set_main_option(key, value.replace("%", "%%"))
    cfg.set_main_option("script_location", str(Path(script_location).resolve()).replace("%", "%%"))
    cfg.set_main_option("path_separator", (options or {}).get("path_separator", "os"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes.update(attributes)
    return cfg


def hooked_environment(
    config: Config, script: ScriptDirectory, *, hooks: Iterable[Any], **kw: Any
) -> EnvironmentContext:
    """An EnvironmentContext whose ``configure`` adds ``hooks`` to env.py's ``on_version_apply``.

    The override sits on the instance: Alembic publishes the instance's attributes as
    ``alembic.context`` (keyed by class, so a subclass would not be published at all).
    """
    env = EnvironmentContext(config, script, **kw)
    original: Callable[..., None] = env.configure
    extra = list(hooks)

    def configure(*args: Any, **opts: Any) -> None:
        theirs = opts.get("on_version_apply") or ()
        opts["on_version_apply"] = [*([theirs] if callable(theirs) else theirs), *extra]
        original(*args, **opts)

    env.configure = configure  # type: ignore[method-assign]
    return env


def run_alembic(
    cfg: Config,
    direction: str,
    target: str,
    *,
    sql: bool = False,
    starting_rev: str | None = None,
    hooks: Iterable[Callable[..., None]] = (),
) -> None:
    """``alembic upgrade/downgrade target`` (``--sql`` with ``sql``) with ``hooks`` attached."""
    script = ScriptDirectory.from_config(cfg)

    def step(rev: Any, context: Any) -> Any:
        if direction == "upgrade":
            return script._upgrade_revs(target, rev)
        return script._downgrade_revs(target, rev)

    with hooked_environment(
        cfg,
        script,
        hooks=hooks,
        fn=step,
        as_sql=sql,
        starting_rev=starting_rev,
        destination_rev=target,
    ):
        script.run_env()
