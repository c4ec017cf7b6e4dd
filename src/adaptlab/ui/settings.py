"""Settings of the web app, chosen by whoever starts the server (never by a browser)."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from adaptlab.errors import ConfigError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# The access token's environment variable (`adaptlab ui --token` reads it too).
TOKEN_ENV = "ADAPTLAB_UI_TOKEN"
# A token travels in a header, a cookie and a URL: URL-safe characters only, and long enough not to be guessed.
_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")
DEFAULT_MAX_UPLOAD_MB = 100.0
DEFAULT_RETENTION_DAYS = 30.0


@dataclass
class SketchSettings:
    """The sketch mode's size: a subsample of BBC News, first words of each article, a short refit.

    Sized so that the whole sketch (probe vs refit over 3 seeds, MMD, domain shift) runs in well
    under a minute on two CPU cores with the packaged MiniLM (see the README for the measured time).
    """

    n_labeled: int = 300
    n_unlabeled: int = 200
    n_reference: int = 100
    words: int = 40
    seeds: int = 3
    refit_budget: str = "20steps"
    refit_batch_size: int = 16
    refit_max_seq_length: int = 48
    mmd_n: int = 150
    mmd_permutations: int = 200
    # Small batches gain little from more threads, and on a 2-core machine shared with busy processes one
    # thread measured 3x faster than two (36 s vs 112 s for the whole sketch). UISettings.torch_threads wins.
    torch_threads: Optional[int] = 1

    def __post_init__(self) -> None:
        for name in ("n_labeled", "n_unlabeled", "n_reference", "words", "seeds", "refit_batch_size",
                     "refit_max_seq_length", "mmd_n", "mmd_permutations"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError.invalid(f"sketch.{name}", v, "an integer >= 1")
        if self.n_labeled < 50:
            raise ConfigError.invalid("sketch.n_labeled", self.n_labeled, "an integer >= 50 (10 per BBC class)")


@dataclass
class UISettings:
    """Where the app keeps its state and what it may touch.

    Args:
        home: Run store and caches (``<home>/runs.sqlite``), shared with the CLI. Job state lives in
            ``<home>/ui/jobs`` and uploads in ``<home>/ui/uploads`` so a resumed study finds its data.
        models_root: The coordinator page lists model folders directly under it; no other folder can
            be named from the browser.
        max_upload_mb: Largest request body accepted (an upload), in MiB.
        encoder: Encoder folder used by studies, the planner and the sketch (None: packaged MiniLM).
        host: Interface the server binds; only loopback hosts are accepted in the Host header unless the
            server was deliberately bound to all interfaces.
        upload_dir: Where uploads go (default ``<home>/ui/uploads``).
        n_boot: Bootstrap resamples of the bands (the study default 1000).
        torch_threads: Threads torch uses for jobs (None: torch's default). On a machine shared with
            other busy processes, 1 is often several times faster than 2 (threads wait on each other).
        retention_days: Uploads and finished jobs older than this are deleted (at start-up and after each
            job; see ``adaptlab.ui.retention``). None or 0 keeps them forever. Shipped models, the run store
            and jobs still queued or running are never deleted.
        token: Access token every request must carry (``Authorization: Bearer TOKEN``, or ``?token=TOKEN``
            once, which a browser then keeps in an HttpOnly cookie); see :mod:`adaptlab.ui.auth`. Required
            when ``host`` is not a loopback address, unless ``no_auth``; None on loopback: no token asked.
        no_auth: Serve beyond loopback without a token (a network where everyone who can reach the port may
            upload data and retrain models).
    """

    home: Path = field(default_factory=lambda: Path("adaptlab-runs"))
    models_root: Path = field(default_factory=lambda: Path("models"))
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    encoder: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8765
    upload_dir: Optional[Path] = None
    n_boot: int = 1000
    sketch: SketchSettings = field(default_factory=SketchSettings)
    torch_threads: Optional[int] = None
    extra_hosts: tuple[str, ...] = ()
    retention_days: Optional[float] = DEFAULT_RETENTION_DAYS
    token: Optional[str] = field(default=None, repr=False)
    no_auth: bool = False

    def __post_init__(self) -> None:
        self.home = Path(self.home).expanduser()
        self.models_root = Path(self.models_root).expanduser()
        if self.upload_dir is None:
            self.upload_dir = self.home / "ui" / "uploads"
        self.upload_dir = Path(self.upload_dir).expanduser()
        if isinstance(self.max_upload_mb, bool) or not isinstance(self.max_upload_mb, (int, float)) \
                or not self.max_upload_mb > 0:
            raise ConfigError.invalid("max_upload_mb", self.max_upload_mb, "a positive number of MiB, e.g. 100")
        if self.torch_threads is not None and (isinstance(self.torch_threads, bool)
                                               or not isinstance(self.torch_threads, int) or self.torch_threads < 1):
            raise ConfigError.invalid("torch_threads", self.torch_threads, "None or an integer >= 1")
        if self.retention_days is not None and (isinstance(self.retention_days, bool)
                                                or not isinstance(self.retention_days, (int, float))
                                                or self.retention_days < 0):
            raise ConfigError.invalid("retention_days", self.retention_days, "None, 0 (keep forever) or a number "
                                      "of days >= 0, e.g. 30")
        if not isinstance(self.port, int) or not 0 <= self.port < 65536:
            raise ConfigError.invalid("port", self.port, "a TCP port in 1-65535")
        self._check_access()

    def _check_access(self) -> None:
        """A server reachable beyond this machine asks for a token unless ``no_auth`` says it must not."""
        if self.token is not None and (not isinstance(self.token, str) or not _TOKEN.match(self.token)):
            # The value is a secret: the message does not repeat it.
            raise ConfigError("the access token is not valid: expected 16 to 256 letters, digits or '-', '_', '.', "
                              f"'~'. Fix: leave --token and ${TOKEN_ENV} unset to get a generated one.")
        if self.token is not None and self.no_auth:
            raise ConfigError("a token and no_auth=True (--no-auth) contradict each other. Fix: drop one of them.")
        if self.exposed and self.token is None and not self.no_auth:
            raise ConfigError(f"host={self.host!r} serves beyond this machine, so requests need an access token. "
                              f"Fix: pass token=... (adaptlab ui --token, or ${TOKEN_ENV}; `adaptlab ui` generates "
                              "one when neither is given), or no_auth=True (--no-auth) on a network you trust.")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def jobs_dir(self) -> Path:
        return self.home / "ui" / "jobs"

    @property
    def exposed(self) -> bool:
        """True when the server listens beyond this machine (then any Host header is accepted)."""
        return self.host not in LOOPBACK_HOSTS

    def allowed_hosts(self) -> set[str]:
        return {*LOOPBACK_HOSTS, "[::1]", self.host, *self.extra_hosts}


def access_token(host: str, token: Optional[str], no_auth: bool) -> tuple[Optional[str], bool]:
    """The token a server on ``host`` asks for, and whether it was generated here.

    The given ``token`` if any; else, beyond loopback and without ``no_auth``, a fresh random one; else None
    (loopback, or ``no_auth``: no token).

    Example:
        >>> access_token("127.0.0.1", None, False)
        (None, False)
        >>> token, generated = access_token("0.0.0.0", None, False)
        >>> len(token) >= 32, generated
        (True, True)
        >>> access_token("0.0.0.0", None, True), access_token("::1", "a-token-of-my-own-choice", False)
        ((None, False), ('a-token-of-my-own-choice', False))
    """
    if token:
        return token, False
    if no_auth or host in LOOPBACK_HOSTS:
        return None, False
    return secrets.token_urlsafe(24), True
