"""As root, the dev cluster runs unprivileged even when the checkout sits in a private (0700) directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pcigate.devstack import binaries, postgres
from pcigate.devstack.ports import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the relocation only happens when running as root"),
]


def test_cluster_in_private_checkout_runs_unprivileged(tmp_path: Path) -> None:
    private = tmp_path / "checkout"
    private.mkdir(mode=0o700)
    # A private copy of the installation, laid out as in site-packages, so the unprivileged user can
    # reach neither the binaries nor the state directory where they are.
    source = binaries.postgres_bindir().parent
    site = private / "site"
    shutil.copytree(source, site / source.parent.name / source.name, symlinks=True)
    libs = source.parent.parent / f"{source.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    bindir = site / source.parent.name / source.name / "bin"
    state = private / ".pcigate"
    state.mkdir()

    cluster = postgres.plan_cluster(state, bindir, free_port())
    assert cluster.run_as is not None and cluster.run_as.uid != 0
    assert not cluster.datadir.is_relative_to(private), "data must move where the unprivileged user can reach"
    assert not cluster.bindir.is_relative_to(private), "binaries must be copied where that user can run them"
    try:
        cluster.init("secret-pw")
        cluster.start()
        assert cluster.running()
        pid = cluster.pid()
        assert pid is not None
        assert Path(f"/proc/{pid}").stat().st_uid == cluster.run_as.uid
    finally:
        cluster.stop()
        shutil.rmtree(cluster.datadir.parent, ignore_errors=True)
    assert not cluster.running()
