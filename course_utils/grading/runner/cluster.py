"""A grading cluster only its members can join: Dask over TLS with the course's own certificate, no web pages.

    $ python -m course_utils.grading cluster certs                      # made on first use; prints where
    $ python -m course_utils.grading cluster certs --export /media/usb  # a copy for the worker machines
    $ python -m course_utils.grading cluster scheduler --host 10.0.0.5  # tls://10.0.0.5:8786
    $ python -m course_utils.grading cluster worker tls://10.0.0.5:8786 --nworkers 4 --host 10.0.0.6

Dask runs whatever a client submits, as the workers' user (root, for a grader that jails kernels): a
cluster anyone can reach is a root shell for anyone. So every cluster the course starts speaks TLS with
``require_encryption`` and requires each peer (scheduler, worker, client) to present a certificate signed
by the course's own authority: a self-signed certificate and its key, made on first use in
``DEFAULT_FOLDER`` (or ``c.Grader.certificates``), readable by their owner only. Whoever holds the key is
a member: copy it to the worker machines and nowhere else. Local clusters of worker processes use a
temporary certificate of their own (in memory only) and listen on 127.0.0.1. No member serves Dask's web
pages: the HTTP routes are off (``NO_HTTP``) and the HTTP servers Dask always starts listen on 127.0.0.1 and
answer nothing but 404.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import stat
from pathlib import Path

#: where the course's cluster certificate lives unless ``c.Grader.certificates`` says otherwise
DEFAULT_FOLDER = Path.home() / ".config" / "course-grading" / "cluster"
CERT, KEY = "cluster.pem", "cluster.key"
#: Dask's settings that leave its HTTP servers without a single route (no dashboard, /json, /info, /metrics)
NO_HTTP = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
LOOPBACK_HTTP = "127.0.0.1:0"
VALID_DAYS = 3650


class CertificateError(RuntimeError):
    """The cluster's certificate is missing, or readable by others than its owner."""


def make_certificates(folder: Path = DEFAULT_FOLDER) -> Path:
    """Make the certificate and its key in ``folder`` (mode 0700, files 0600) unless they are there; return it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder = Path(folder)
    if (folder / CERT).is_file() and (folder / KEY).is_file():
        check_private(folder)
        return folder
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "course-grading-cluster")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("course-grading-cluster")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        folder / KEY,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_private(folder / CERT, cert.public_bytes(serialization.Encoding.PEM))
    return folder


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def check_private(folder: Path) -> None:
    """Refuse certificates that are links, not their owner's (this user's), or readable by anyone else."""
    for path in (folder, folder / CERT, folder / KEY):
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise CertificateError(
                f"{path} must belong to you and be private (chmod 700 the folder, 600 the "
                "files): whoever can read the key can run code on the cluster"
            )


def security(folder: Path | None = None):
    """Dask's ``Security`` for a member of the course's cluster (certificates in ``folder``)."""
    from distributed.security import Security

    folder = Path(folder or DEFAULT_FOLDER)
    if not (folder / KEY).is_file():
        raise CertificateError(
            f"no cluster certificate in {folder}: run `python -m course_utils.grading cluster "
            "certs` (and copy it to the worker machines with --export)"
        )
    check_private(folder)
    cert, key = str(folder / CERT), str(folder / KEY)
    return Security(
        require_encryption=True,
        tls_ca_file=cert,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
    )


def temporary_security():
    """A certificate for one local cluster only, in memory (``Security.temporary``), encryption required."""
    from distributed.security import Security

    return Security.temporary()


def export(folder: Path, target: Path) -> Path:
    """Copy the certificate and key to ``target`` (made private) for a worker machine."""
    check_private(Path(folder))
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(target, 0o700)
    for name in (CERT, KEY):
        _write_private(target / name, (Path(folder) / name).read_bytes())
    return target


def check_address(address: str) -> None:
    """Only TLS addresses: a tcp:// scheduler has no authentication."""
    if not address.startswith("tls://"):
        raise CertificateError(
            f"{address}: the grading cluster speaks TLS only (tls://host:8786); start it with "
            "`python -m course_utils.grading cluster scheduler`"
        )


async def _run_scheduler(host: str, port: int, sec) -> None:
    import dask
    from distributed import Scheduler

    with dask.config.set(NO_HTTP):
        async with Scheduler(
            host=host, port=port, protocol="tls", security=sec, dashboard=False, dashboard_address=LOOPBACK_HTTP
        ) as scheduler:
            print(f"scheduler at {scheduler.address}", flush=True)
            await scheduler.finished()


def run_scheduler(host: str = "127.0.0.1", port: int = 8786, folder: Path | None = None) -> None:
    """Serve a TLS scheduler on ``host:port`` until interrupted."""
    asyncio.run(_run_scheduler(host, port, security(folder)))


async def _run_workers(address: str, count: int, nthreads: int, host: str, name: str | None, sec) -> None:
    import dask
    from distributed import Nanny

    with dask.config.set(NO_HTTP):
        nannies = [
            Nanny(
                address,
                nthreads=nthreads,
                host=host,
                security=sec,
                protocol="tls",
                dashboard=False,
                dashboard_address=LOOPBACK_HTTP,
                name=f"{name}-{i}" if name and count > 1 else name,
            )
            for i in range(count)
        ]
        await asyncio.gather(*nannies)
        print(f"{count} worker(s) of {nthreads} thread(s) joined {address}", flush=True)
        await asyncio.gather(*(nanny.finished() for nanny in nannies))


def run_workers(
    address: str,
    count: int = 1,
    nthreads: int = 1,
    host: str = "127.0.0.1",
    name: str | None = None,
    folder: Path | None = None,
) -> None:
    """Join ``address`` with ``count`` worker processes of ``nthreads`` threads each, until interrupted."""
    check_address(address)
    asyncio.run(_run_workers(address, count, nthreads, host, name, security(folder)))


__all__ = [
    "CertificateError",
    "DEFAULT_FOLDER",
    "NO_HTTP",
    "check_address",
    "export",
    "make_certificates",
    "run_scheduler",
    "run_workers",
    "security",
    "temporary_security",
]
