"""Failure 1 of issue 25: the App (no login; its /media endpoint serves any file the user
can read) stays on loopback unless the user opts in with --allow-remote, and is then
warned. Nothing here launches an App."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from pcbforge.cli.main import app
from pcbforge.datasets import fiftyone as fiftyone_io
from pcbforge.datasets.fiftyone import is_loopback, launch_app

runner = CliRunner()


@pytest.fixture
def no_fiftyone(monkeypatch):
    """Stop `view` where it would load FiftyOne: a refusal must come before that."""
    def stop(*args, **kwargs):
        raise ValueError("stopped by the test before FiftyOne")

    monkeypatch.setattr(fiftyone_io, "to_fiftyone", stop)


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", "::", "myhost.example"])
def test_a_public_address_is_refused_with_one_line(inspection_dataset, no_fiftyone, address):
    run = runner.invoke(app, ["view", str(inspection_dataset), "--address", address,
                              "--remote"])
    assert run.exit_code == 2, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.output, run.output
    assert lines[0].startswith(f"error: refusing to serve the App on {address}")
    assert "any file you can read" in lines[0] and "--allow-remote" in lines[0]
    assert "ssh -L 5151:localhost:5151" in lines[0]


def test_allow_remote_goes_on_with_a_warning(inspection_dataset, no_fiftyone):
    run = runner.invoke(app, ["view", str(inspection_dataset), "--address", "0.0.0.0",
                              "--remote", "--allow-remote", "--port", "6001"])
    assert "stopped by the test before FiftyOne" in run.output  # got past the check
    warning = run.output.strip().splitlines()[0]
    assert warning.startswith("warning:")
    assert "anyone who can reach 0.0.0.0:6001 can read them" in warning
    assert "ssh -L 6001:localhost:6001" in warning


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1", "::1", "localhost"])
def test_loopback_addresses_need_no_flag(inspection_dataset, no_fiftyone, address):
    run = runner.invoke(app, ["view", str(inspection_dataset), "--address", address])
    assert "stopped by the test before FiftyOne" in run.output
    assert "warning" not in run.output


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("10.0.0.5", False), ("example.com", False), ("", False),
])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_the_library_refuses_a_public_address_too():
    with pytest.raises(ValueError, match="refusing to serve the App on 0.0.0.0"):
        launch_app(object(), address="0.0.0.0", port=5151)


def test_the_library_goes_on_with_allow_remote():
    """Past the check, the next one (a busy port) answers: the gate let it through."""
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot serve the App on 0.0.0.0:{port}"):
            launch_app(object(), address="0.0.0.0", port=port, allow_remote=True)
