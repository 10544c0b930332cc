"""Run `vilt-edge bench` / `validate` on another machine over SSH and bring the results back.

    vilt-edge bench out/int8 --remote robot@orin.local [--python /opt/venv/bin/python]

The bundle is copied (tar over ssh) into a fresh temporary directory on the remote host,
vilt-edge runs there with the given Python (which must have vilt-edge installed: on a Jetson,
`pip install vilt-edge`), its JSON comes back on stdout (and, for `validate --out`, the results
file is copied back), and the directory is removed whatever happens. Uses the system's OpenSSH
client, so `~/.ssh/config`, keys and agents work as usual; `ssh_config` names another config
file. Never prompts: `BatchMode=yes`, so a host needing a password fails with one line.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from vilt_edge.errors import InputError, ViltEdgeError

CONNECT_TIMEOUT_S = 10


class RemoteError(ViltEdgeError):
    """The remote host cannot be reached or the command failed there."""

    exit_code = 6


class Remote:
    def __init__(self, host: str, python: str = "python3", ssh_config: str | None = None):
        if not host or host.startswith("-") or any(c.isspace() for c in host):
            raise InputError(f"--remote must be [user@]host, not {host!r}")
        if shutil.which("ssh") is None:
            raise RemoteError("--remote needs the OpenSSH client (ssh), which is not installed")
        self.host = host
        self.python = python
        self.base = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        if ssh_config is not None:
            if not Path(ssh_config).is_file():
                raise InputError(f"ssh config not found: {ssh_config}")
            self.base += ["-F", str(ssh_config)]

    def _ssh(self, command: str, stdin=None, timeout: float | None = None) -> str:
        try:
            done = subprocess.run(
                [*self.base, self.host, command],
                stdin=stdin,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.host}: no answer within {timeout:.0f} s") from None
        if done.returncode == 255:  # ssh's own failure: connection, authentication, host key
            reason = _last_line(done.stderr) or "connection failed"
            raise RemoteError(f"cannot reach {self.host} over ssh ({reason})")
        if done.returncode != 0:
            reason = _last_line(done.stderr) or f"exit {done.returncode}"
            raise RemoteError(f"on {self.host}: {reason}")
        return done.stdout.decode("utf-8", errors="replace")

    def run_vilt_edge(
        self, bundles: dict[str, Path], args: list[str], fetch: str | None = None
    ) -> tuple[dict[str, Any], bytes | None]:
        """Copy each bundle, run `vilt-edge <args>` there (`{name}` in `args` becomes the remote
        path of `bundles[name]`, `{work}` the remote directory), parse its stdout as JSON, and
        fetch `{work}/<fetch>`."""
        work = self._ssh("mktemp -d /tmp/vilt-edge-XXXXXX", timeout=60).strip()
        if not work.startswith("/tmp/vilt-edge-"):
            raise RemoteError(f"{self.host}: could not make a temporary directory")
        try:
            places = {"work": work}
            for index, (key, bundle) in enumerate(bundles.items()):
                self._copy(bundle, f"{work}/{index}")
                places[key] = f"{work}/{index}/{bundle.name}"
            quoted = []
            for arg in args:
                for key, place in places.items():
                    arg = arg.replace("{" + key + "}", place)
                quoted.append(shlex.quote(arg))
            python = shlex.quote(self.python)
            check = (
                f"{python} -c 'import vilt_edge' 2>/dev/null || "
                f"{{ echo 'error: vilt-edge is not installed for {self.python}' >&2; exit 3; }}"
            )
            output = self._ssh(f"{check}; {python} -m vilt_edge.cli {' '.join(quoted)}")
            try:
                result = json.loads(output)
            except json.JSONDecodeError:
                raise RemoteError(f"{self.host}: vilt-edge printed no JSON") from None
            fetched = None
            if fetch is not None:
                fetched = self._ssh(f"cat {shlex.quote(work + '/' + fetch)}").encode("utf-8")
            return result, fetched
        finally:
            try:
                self._ssh(f"rm -rf {shlex.quote(work)}", timeout=60)
            except RemoteError:
                pass  # the result (or the first error) matters more than the clean-up

    def _copy(self, bundle: Path, work: str) -> None:
        tar = subprocess.Popen(
            ["tar", "-C", str(bundle.parent), "-cf", "-", bundle.name], stdout=subprocess.PIPE
        )
        try:
            self._ssh(
                f"mkdir -p {shlex.quote(work)} && tar -C {shlex.quote(work)} -xf -",
                stdin=tar.stdout,
            )
        finally:
            tar.stdout.close()
            tar.wait()


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("Warning: Permanently")]
    if lines and lines[-1].startswith("error: "):
        return lines[-1].removeprefix("error: ")
    return lines[-1] if lines else ""


def validate_remote(bundle: str, host: str, python: str, ssh_config: str | None,
                    reference: str | None, args: list[str]):  # fmt: skip
    """`vilt-edge validate` on a remote host: copy the bundle (and its reference: the one named,
    else the FP32 source its manifest names, if it is here), run, fetch the results file."""
    from vilt_edge.default_bundle import open_bundle
    from vilt_edge.results import Results

    local = open_bundle(bundle)
    bundles = {"bundle": local.path}
    if reference is None:
        source = (local.manifest.source or {}).get("bundle")
        reference = source if source and Path(source).is_dir() else "none"
    if reference.lower() != "none":
        bundles["reference"] = open_bundle(reference).path
        args = [*args, "--reference", "{reference}"]
    else:
        args = [*args, "--reference", "none"]
    _, fetched = Remote(host, python, ssh_config).run_vilt_edge(
        bundles,
        ["validate", "{bundle}", *args, "--json", "--out", "{work}/results.json"],
        fetch="results.json",
    )
    data = json.loads(fetched)
    # Name the bundles as they are here (the remote copies are gone); say where it ran.
    data["variant"].update(bundle=str(local.path), remote=host)
    if data.get("reference") and "reference" in bundles:
        data["reference"]["bundle"] = str(bundles["reference"])
    return Results.from_json(data)


def bench_remote(bundle: str, host: str, python: str, ssh_config: str | None,
                 args: list[str]) -> dict[str, Any]:  # fmt: skip
    """`vilt-edge bench` on a remote host: the bundle, verified here, is copied and run there."""
    from vilt_edge.default_bundle import open_bundle

    local = open_bundle(bundle)  # verified here before it travels
    figures, _ = Remote(host, python, ssh_config).run_vilt_edge({"bundle": local.path}, args)
    figures["remote"] = host
    return figures
