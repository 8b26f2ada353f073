"""The FiftyOne App and its database: launch on loopback (a public address only when
asked, with the risk said), shut down cleanly, say which database is in use.

The database is FiftyOne's: its bundled MongoDB, or ``FIFTYONE_DATABASE_URI`` when the
user set one. FiftyOne attaches to a database service that is already running for the
same user whatever ``FIFTYONE_DATABASE_DIR`` says; :func:`database_description` reports
the one actually in use.
"""

from __future__ import annotations

import ipaddress
import socket

from pcbforge.datasets.fiftyone.library import import_fiftyone


def database_description() -> str:
    """Which database FiftyOne uses (call after it connected)."""
    fo = import_fiftyone()
    if fo.config.database_uri:
        return "FIFTYONE_DATABASE_URI (your MongoDB)"
    import fiftyone.core.odm.database as fodb

    service = getattr(fodb, "_db_service", None)
    path = fo.config.database_dir
    if service is not None and getattr(service, "child", None) is not None:
        try:
            for child in service.child.children(recursive=True):
                cmdline = child.cmdline()
                if "--dbpath" in cmdline:
                    path = cmdline[cmdline.index("--dbpath") + 1]
        except Exception:  # noqa: BLE001 - a process that just exited: keep the config's
            pass
        shared = " (shared with another FiftyOne process)" if service.attached else ""
        return f"bundled MongoDB at {path}{shared}"
    return f"bundled MongoDB at {path}"


def is_loopback(address: str) -> bool:
    """Whether ``address`` is reachable from this machine only: ``localhost``, 127.0.0.0/8
    or ``::1``. Any other name or address (``0.0.0.0`` above all) may be public."""
    if address.strip().lower().rstrip(".") in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


#: Why the App stays on this machine unless asked otherwise.
REMOTE_RISK = ("the FiftyOne App has no login, and its /media endpoint serves any file "
               "this user can read, so anyone who can reach {address}:{port} can read them")


def remote_warning(address: str, port: int) -> str:
    """What a user who serves the App on a non-loopback ``address`` must know."""
    return (REMOTE_RISK.format(address=address, port=port) + ". The safe way to use it from "
            f"another machine: keep the default address and run `ssh -L {port}:localhost:"
            f"{port} THIS_HOST` there, then open http://localhost:{port}")


def launch_app(fo_dataset, *, port: int = 5151, address: str = "127.0.0.1",
               remote: bool = False, allow_remote: bool = False):
    """Start the App on ``fo_dataset``; returns the FiftyOne session and the dataset URL.

    A port already in use is refused (``ValueError``): FiftyOne would otherwise join
    whatever App serves it, or wait a minute for a server that cannot start. So is an
    ``address`` other than loopback unless ``allow_remote`` (see :func:`remote_warning`):
    the App would publish every file this user can read.
    """
    if not is_loopback(address) and not allow_remote:
        raise ValueError(f"refusing to serve the App on {address}: "
                         + REMOTE_RISK.format(address=address, port=port)
                         + f". Use `ssh -L {port}:localhost:{port} THIS_HOST` from the other "
                         "machine, or pass --allow-remote (allow_remote=True) to accept this")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as err:
            raise ValueError(f"cannot serve the App on {address}:{port} ({err.strerror}); "
                             f"pass another --port or --address") from err
    fo = import_fiftyone()
    session = fo.launch_app(fo_dataset, port=port, address=address, remote=remote, auto=False)
    return session, f"http://{address}:{port}/datasets/{fo_dataset.slug}"


def shutdown(session=None, timeout: float = 30.0) -> str:
    """Close the App server, then stop the database service this process started (if
    another FiftyOne process still uses it, it stops when that one exits). Returns what
    happened, in words."""
    fo = import_fiftyone()
    import fiftyone.core.odm.database as fodb

    if session is not None:
        session.close()  # stops the App server process and waits for it
    fo.close_app()
    service = getattr(fodb, "_db_service", None)
    # Disconnect first: FiftyOne's exit hook would otherwise wait 30 s for a stopped server.
    fodb._disconnect()
    if service is None or fo.config.database_uri:
        return "App closed; the database is yours (FIFTYONE_DATABASE_URI), left running"
    if service.attached or service.child is None:
        return "App closed; the database belongs to another FiftyOne process, left running"
    process = service.child
    service.stop()  # closes its stdin: the service stops mongod when no client is left
    fodb._db_service = None
    try:
        process.wait(timeout)
    except Exception:  # noqa: BLE001 - psutil.TimeoutExpired: still used by another client
        return "App closed; the database is still used by another FiftyOne process"
    return "App and database stopped"

