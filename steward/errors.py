"""Steward's exceptions: one root, transient vs terminal, translated once at the storage boundary.

Hierarchy::

    StewardError
    ├── ConfigError                     (terminal) a setting or parameter is invalid
    │   ├── AuthenticationFailed        (terminal) a store refused the configured credentials
    │   ├── NotInstalled                (terminal) Steward's tables missing: run `steward install`
    │   └── PermissionDenied            (terminal) the role lacks a privilege the job needs
    ├── SourceUnavailable               (transient) a database / cache / store cannot be reached
    │   └── StoresDown                  (check) check-health found a store down
    ├── ObjectStoreError
    │   ├── ObjectNotFound              (terminal) no object at that key
    │   ├── ObjectExists                (terminal) a write that must not overwrite met an object
    │   ├── ObjectCorrupted             (terminal) bytes read do not match the stored SHA-256
    │   └── ObjectArchived              (terminal) object in GLACIER/DEEP_ARCHIVE needs a restore
    ├── IntegrityViolation              (terminal) data would be lost, duplicated or is inconsistent
    │   ├── ArchiveVerificationFailed   (check) an archive object failed verification
    │   ├── BackupVerificationFailed    (check) a restored backup differs from its manifest
    │   ├── ValidationFailed            (check) critical data expectations failed
    │   └── RestoreIncomplete           (check) some archived rows could not be restored
    ├── ArchiveBusy                     (transient) another run is archiving / restoring a table
    ├── ArchiveDeleteBlocked            (transient) a guarded delete was refused, rolled back
    ├── BackupBusy                      (transient) another backup run held the lock too long
    ├── MigrationError                  (terminal)
    │   ├── MigrationLocked             (transient) another runner holds the migration lock
    │   └── MigrationChecksumMismatch   (terminal) an applied migration file was edited
    ├── PayloadRejected                 (terminal) a payload a sink refuses (poison event)
    ├── RelayConflict                   (transient) an outbox batch hit a deadlock; it rolled back
    ├── NightlyBusy                     (transient) another nightly run of the source holds its lock
    └── NightlyStepsFailed              (check) a critical step of the nightly job failed

``Transient`` and ``Terminal`` are mixins: retries (``retry_condition_fn`` on tasks) apply to
:class:`Transient` errors only. ``FailedCheck`` (the "(check)" entries, all terminal but
``StoresDown``) marks a check that ran and found the data or a store failing it: the CLI exits 1
for those, 2 for every other Steward error (bad input, unreachable store). Every message names
the table, key, object or setting involved and says what to do next.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

__all__ = [
    "ArchiveBusy",
    "ArchiveDeleteBlocked",
    "ArchiveVerificationFailed",
    "AuthenticationFailed",
    "BackupBusy",
    "BackupVerificationFailed",
    "ConfigError",
    "FailedCheck",
    "IntegrityViolation",
    "MigrationChecksumMismatch",
    "MigrationError",
    "MigrationLocked",
    "NightlyBusy",
    "NightlyStepsFailed",
    "NotInstalled",
    "ObjectArchived",
    "ObjectCorrupted",
    "ObjectExists",
    "ObjectNotFound",
    "ObjectStoreError",
    "PayloadRejected",
    "PermissionDenied",
    "RelayConflict",
    "RestoreIncomplete",
    "SourceUnavailable",
    "StewardError",
    "StoresDown",
    "Terminal",
    "Transient",
    "ValidationFailed",
    "closest_name",
    "is_transient",
]


class Transient:
    """Mixin: the operation may succeed if retried later."""


class Terminal:
    """Mixin: retrying will not help; a person has to act."""


class FailedCheck:
    """Mixin: a check ran and found the data or a store failing it (exit code 1, not 2)."""


class StewardError(Exception):
    """Root of every error Steward raises on purpose."""


class ConfigError(StewardError, Terminal):
    """A setting or parameter is invalid.

    The message names the key path, the value and what is accepted.
    """


class NotInstalled(ConfigError):
    """Steward's own tables are not in the database: ``steward install`` was never run there."""


class AuthenticationFailed(ConfigError):
    """A database, cache or store refused the configured user or password: retrying won't help.

    The message names the store (URL masked) and the setting to fix.
    """


class PermissionDenied(ConfigError):
    """The database role lacks a privilege the job needs (SQLSTATE 42501): retrying won't help.

    The message names the role, the privilege, the object and what the job was doing, e.g.
    "role steward_archiver lacks DELETE on public.orders (archive policy orders)".
    """


class SourceUnavailable(StewardError, Transient):
    """A database, cache or object store could not be reached or timed out."""


class StoresDown(SourceUnavailable, FailedCheck):
    """A health check reached the stores and found at least one down."""


class ObjectStoreError(StewardError):
    """An object-store operation failed."""


class ObjectNotFound(ObjectStoreError, Terminal):
    """No object exists at the key."""


class ObjectExists(ObjectStoreError, Terminal):
    """A create-only write (``put_if_absent``) found an object already at the key."""


class ObjectCorrupted(ObjectStoreError, Terminal):
    """The bytes read back do not match the SHA-256 recorded when the object was written."""


class ObjectArchived(ObjectStoreError, Terminal):
    """The object sits in a cold storage class and must be restored before it can be read."""


class IntegrityViolation(StewardError, Terminal):
    """Continuing would lose, duplicate or corrupt data."""


class ArchiveVerificationFailed(IntegrityViolation, FailedCheck):
    """An archive object does not match what was written (size, checksum or row count)."""


class BackupVerificationFailed(IntegrityViolation, FailedCheck):
    """A backup restored into a scratch database does not match its manifest."""


class ValidationFailed(IntegrityViolation, FailedCheck):
    """Data expectations failed (critical ones, or any with ``fail_on="warning"``).

    ``summary`` holds the validation summary (every suite's outcome and the failures).
    """

    summary: dict[str, object] | None = None


class RestoreIncomplete(IntegrityViolation, FailedCheck):
    """Some archived rows could not be restored (a clash or a conflict); the others were."""


class BackupBusy(StewardError, Transient):
    """Another backup run kept the backup lock longer than ``backup.lock_timeout_s``."""


class MigrationError(StewardError, Terminal):
    """A migration could not be planned or applied."""


class MigrationLocked(MigrationError, Transient):
    """Another migration runner holds the lock."""


class MigrationChecksumMismatch(MigrationError):
    """A migration that was already applied has been edited since."""


class PayloadRejected(StewardError, Terminal):
    """A sink refused a payload (too large, not serialisable): retrying it won't help."""


class ArchiveBusy(StewardError, Transient):
    """Another archive or restore run holds the table (runs of one table never overlap)."""


class ArchiveDeleteBlocked(StewardError, Transient):
    """The guarded delete of an archived batch was refused (e.g. a row got a new reference).

    The transaction rolled back, the batch stays verified and the next attempt finishes it.
    """


class RelayConflict(StewardError, Transient):
    """An outbox batch hit a deadlock or serialization failure with another relay or writer.

    Its transaction rolled back (nothing was marked) and retrying the batch is safe.
    """


class NightlyBusy(StewardError, Transient):
    """Another nightly run of the same source holds the nightly lock; this run changed nothing."""


class NightlyStepsFailed(StewardError, Terminal, FailedCheck):
    """A critical step of the nightly job failed (or could not run); the others ran.

    ``summary`` holds the nightly summary (every step's outcome and the health report).
    """

    summary: dict[str, object] | None = None


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying (a :class:`Transient` Steward error)."""
    return isinstance(exc, Transient)


def closest_name(name: str, candidates: Sequence[str], cutoff: float = 0.5) -> str | None:
    """The candidate a misspelt ``name`` most likely meant (case ignored), for "did you mean"."""
    lowered = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[close[0]] if close else None
