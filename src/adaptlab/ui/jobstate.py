"""The states of a web-app job, shared by the job manager and the retention housekeeping."""

# A job in one of these states runs no more (its files may be deleted after the retention period).
FINISHED = ("done", "failed", "cancelled", "interrupted")
# A job in one of these states can be resumed from what the run store already holds.
RESUMABLE = ("failed", "cancelled", "interrupted")

__all__ = ["FINISHED", "RESUMABLE"]
