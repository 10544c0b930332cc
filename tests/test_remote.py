"""`bench --remote` and `validate --remote` against a real OpenSSH server on 127.0.0.1.

The fixture starts Debian's sshd (`.ci/run` installs openssh-server) on a free port with a
throwaway host key and client key, and writes an ssh config naming it `edge-box`; the remote
"device" is this machine, its Python the test's own interpreter.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.results import read_results

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory):
    if not Path(SSHD).exists():
        raise RuntimeError("sshd not found: install openssh-server (.ci/run does)")
    home = tmp_path_factory.mktemp("ssh")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)],
                       check=True)  # fmt: skip
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    os.chmod(home / "authorized_keys", 0o600)
    port = _free_port()
    (home / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nPidFile {home / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nPermitUserEnvironment no\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(home / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = home / "ssh_config"
    common = (
        f"  User {getpass.getuser()}\n"
        f"  IdentityFile {home / 'client_key'}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    closed = _free_port()
    config.write_text(
        f"Host edge-box\n  HostName 127.0.0.1\n  Port {port}\n{common}"
        f"Host dead-box\n  HostName 127.0.0.1\n  Port {closed}\n{common}"
    )
    for _ in range(100):  # wait until sshd accepts connections
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield str(config)
    server.terminate()
    server.wait(timeout=10)


def remote_args(config: str) -> list[str]:
    return ["--remote", "edge-box", "--ssh-config", config, "--python", sys.executable]


def test_bench_remote_brings_back_the_figures(ssh_host, tiny_vqa_bundle):
    result = CliRunner().invoke(
        app, ["bench", str(tiny_vqa_bundle), "--runs", "5", "--json", *remote_args(ssh_host)]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["remote"] == "edge-box" and figures["runs"] == 5
    assert figures["latency_ms"]["p50"] > 0 and "/tmp/vilt-edge-" in figures["bundle"]
    leftovers = [p for p in Path("/tmp").glob("vilt-edge-*") if p.is_dir()]
    assert not [p for p in leftovers if (p / "0" / tiny_vqa_bundle.name).exists()]


def test_validate_remote_writes_local_results(ssh_host, tiny_vqa_bundle, tmp_path):
    out = tmp_path / "remote.json"
    result = CliRunner().invoke(
        app,
        ["validate", str(tiny_vqa_bundle), "--data", "easy-vqa:test", "--limit", "8",
         "--reference", str(tiny_vqa_bundle), "--out", str(out), *remote_args(ssh_host)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 8 and summary["remote"] == "edge-box" and summary["agreement"] == 1.0
    results = read_results(out)
    assert results.variant["remote"] == "edge-box"
    assert results.variant["bundle"] == str(tiny_vqa_bundle)
    assert len(results.predictions) == 8


def test_remote_failures_are_one_line(ssh_host, tiny_vqa_bundle, tmp_path):
    runner = CliRunner()
    bench = ["bench", str(tiny_vqa_bundle), "--runs", "2"]
    dead = ["--remote", "dead-box", "--ssh-config", ssh_host, "--python", sys.executable]
    one_line_error(runner.invoke(app, [*bench, *dead]), 6, "cannot reach dead-box")
    no_vilt = ["--remote", "edge-box", "--ssh-config", ssh_host, "--python", "/usr/bin/python3"]
    one_line_error(runner.invoke(app, [*bench, *no_vilt]), 6, "vilt-edge is not installed")
    # The remote's own one-line errors come back as they are.
    result = runner.invoke(app, [*bench, "--image-size", "33x64", *remote_args(ssh_host)])
    one_line_error(result, 6, "edge-box")
    one_line_error(runner.invoke(app, [*bench, "--remote", "-oProxyCommand=x"]), 2, "--remote")
    one_line_error(
        runner.invoke(app, [*bench, *remote_args(str(tmp_path / "none"))]), 2, "ssh config"
    )
