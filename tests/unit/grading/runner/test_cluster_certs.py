"""course_utils.grading.runner.cluster: the course's certificate is made once, private to its owner, refused when
others can read it; Dask's Security built from it requires encryption; only tls:// addresses are accepted."""

from __future__ import annotations

import os

import pytest

from course_utils.grading.runner import cluster


def test_the_certificate_is_made_once_and_private(tmp_path):
    folder = cluster.make_certificates(tmp_path / "certs")
    key = (folder / cluster.KEY).read_bytes()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()} == {"0o600"}
    assert cluster.make_certificates(folder) == folder and (folder / cluster.KEY).read_bytes() == key
    security = cluster.security(folder)
    assert security.require_encryption and security.tls_client_key == str(folder / cluster.KEY)


def test_a_certificate_others_can_read_is_refused(tmp_path):
    folder = cluster.make_certificates(tmp_path / "certs")
    os.chmod(folder / cluster.KEY, 0o644)
    with pytest.raises(cluster.CertificateError, match="must belong to you and be private"):
        cluster.security(folder)


def test_a_missing_certificate_says_how_to_make_one(tmp_path):
    with pytest.raises(cluster.CertificateError, match="cluster certs"):
        cluster.security(tmp_path / "none")


def test_only_tls_addresses(tmp_path):
    cluster.check_address("tls://10.0.0.5:8786")
    with pytest.raises(cluster.CertificateError, match="TLS only"):
        cluster.check_address("tcp://10.0.0.5:8786")


def test_export_copies_privately(tmp_path):
    folder = cluster.make_certificates(tmp_path / "certs")
    target = cluster.export(folder, tmp_path / "usb")
    assert (target / cluster.KEY).read_bytes() == (folder / cluster.KEY).read_bytes()
    assert oct((target / cluster.KEY).stat().st_mode & 0o777) == "0o600"
