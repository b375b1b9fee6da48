"""The comparator: a local web app that builds, screens, contrasts and attacks unlearned models (``expunge ui``).

``sources`` finds experiments under the given paths (bench directories, run stores, audit outputs) and resolves
their files safely; ``analysis`` computes each view's numbers; ``app`` serves them as a JSON API with the single page
in ``static/``; ``build`` queues unlearning runs started from the page; ``export`` writes the same views as a static
bundle. Importing this package imports no web framework: FastAPI, uvicorn and plotly (the ``expunge[ui]`` extra)
are imported by :func:`create_app`, :func:`serve` and :func:`export_bundle` when called.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

INSTALL_HINT = "the comparator needs fastapi, uvicorn and plotly: pip install 'expunge[ui]'"


def require() -> None:
    """ValueError with one line when the comparator's packages are not installed."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "plotly") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"{INSTALL_HINT} ({', '.join(missing)} missing)")


def create_app(paths: Sequence[str | Path], store: str | Path | None = None, token: str | None = None,
               allow_build: bool = True, **kwargs: Any):
    """The FastAPI app over ``paths`` (see :func:`expunge.ui.app.create_app`)."""
    require()
    from .app import create_app as _create

    return _create(paths, store=store, token=token, allow_build=allow_build, **kwargs)


def export_bundle(paths: Sequence[str | Path], dest: str | Path, store: str | Path | None = None, **kwargs: Any):
    """Write the static bundle of every view to ``dest`` (see :func:`expunge.ui.export.export_bundle`)."""
    require()
    from .export import export_bundle as _export

    return _export(paths, dest, store=store, **kwargs)


@dataclass
class Options:
    """What ``expunge ui`` was asked, checked (see :func:`check_options`)."""

    paths: list[Path]
    host: str
    port: int
    store: Path
    token: str | None
    export: Path | None


def check_options(paths: Sequence[str | Path], *, host: str = "127.0.0.1", port: int = 8765,
                  store: str | Path | None = None, token: str | None = None,
                  export: str | Path | None = None) -> Options:
    """Check ``expunge ui``'s arguments before anything starts; ValueError with one line otherwise: every path
    exists and can be read, the port is valid and free, a host other than a loopback address comes with a token
    (and the token is long enough), ``--export`` names an empty directory, a new one or a previous export."""
    given = [Path(p).expanduser() for p in paths] or [Path(".")]
    for p in given:
        if not p.exists():
            raise ValueError(f"{p} does not exist; give bench or audit output directories, run stores (*.db) or "
                             "directories holding them")
        if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
            raise ValueError(f"{p} cannot be read (permission denied)")
        if not p.is_dir() and p.suffix not in (".db", ".sqlite", ".sqlite3"):
            raise ValueError(f"{p} is a file but not a run store (*.db); give directories or run stores")
    check_token(token)
    if export is not None:
        from .export import check_destination

        check_destination(Path(export))
        return Options(given, host, port, Path(store) if store else default_store(given), token, Path(export))
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"--port {port} is not allowed; expected an integer from 1 to 65535")
    if not host or not isinstance(host, str):
        raise ValueError("--host must be an address or a host name, e.g. 127.0.0.1")
    if not is_loopback(host) and token is None:
        raise ValueError(f"--host {host} is reachable from other machines; give --token T (16+ characters; every "
                         "request then needs it) or keep the default --host 127.0.0.1")
    _check_port(host, port)
    return Options(given, host, port, Path(store).expanduser() if store else default_store(given), token, None)


def _check_port(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"--host {host} cannot be resolved ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None


def default_store(paths: Sequence[str | Path]) -> Path:
    """Where runs built from the page are recorded by default: the first path when it is a run store (a file),
    else ``ui-runs.db`` in the first path (the current directory when none is given)."""
    first = Path(paths[0]) if paths else Path(".")
    return first if first.is_file() else first / "ui-runs.db"


TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_.~-]{16,256}")


def check_token(token: str | None) -> str | None:
    """The token as given, or ValueError with one line when it is too short or has characters URLs must escape."""
    if token is None:
        return None
    if not isinstance(token, str) or not TOKEN_PATTERN.fullmatch(token):
        raise ValueError("--token must be 16 to 256 characters from A-Z a-z 0-9 _ . ~ - (e.g. the output of "
                         "python -c 'import secrets; print(secrets.token_urlsafe())')")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) names this machine only."""
    import ipaddress

    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def serve(options: Options, *, build: bool = True, echo: Callable[[str], None] = print) -> None:
    """Serve the comparator with uvicorn until interrupted; ValueError (one line) for a host other than a loopback
    address without a token, whoever built ``options``."""
    import uvicorn

    check_token(options.token)
    if not is_loopback(options.host) and options.token is None:      # Options built by hand skip check_options
        raise ValueError(f"--host {options.host} is reachable from other machines; give --token T (16+ characters; "
                         "every request then needs it) or keep the default --host 127.0.0.1")
    app = create_app(options.paths, store=options.store, token=options.token, allow_build=build)
    shown = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{shown}:{options.port}/" + ("?token=<your token>" if options.token else "")
    count = len(app.state.workspace.experiments())
    echo(f"expunge ui: {count} experiments from {', '.join(str(p) for p in options.paths)}; runs built from the "
         f"page go to {options.store}" if build else
         f"expunge ui: {count} experiments from {', '.join(str(p) for p in options.paths)}; Build is off")
    echo(f"Open {url} (Ctrl-C stops)")
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False)


__all__ = ["create_app", "export_bundle", "require", "check_options", "serve", "default_store", "check_token",
           "is_loopback", "Options", "INSTALL_HINT"]
