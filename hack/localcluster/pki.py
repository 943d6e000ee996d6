"""The cluster's PKI, made with `cryptography`: one CA, leaf certificates, the service-account key.

Everything is written once under <state>/pki and reused; leaf certificates whose SANs no longer
match (the node's address changed) are reissued. Keys are EC P-256: fast to generate on 2 cores.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class LeafSpec:
    """One certificate to issue: file stem, subject, usages and SANs."""

    stem: str
    common_name: str
    organizations: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def node_leaf_specs(node_name: str, node_ip: str, suffix: str = "") -> list[LeafSpec]:
    """A kubelet's two certificates: its client identity (what the Node authorizer and
    NodeRestriction expect) and its serving certificate (the apiserver checks it)."""
    return [
        LeafSpec(
            f"kubelet-client{suffix}", f"system:node:{node_name}", ("system:nodes",), client=True
        ),
        LeafSpec(
            f"kubelet-serving{suffix}",
            node_name,
            server=True,
            dns_names=(node_name, "localhost"),
            ip_addresses=("127.0.0.1", node_ip),
        ),
    ]


def leaf_specs(
    node_name: str, node_ip: str, service_ip: str, sandbox_nodes: tuple[tuple[str, str], ...] = ()
) -> list[LeafSpec]:
    """Every leaf the cluster needs; names are what RBAC and NodeRestriction expect. The host
    node's kubelet certificates are always made; each sandbox node (name, address) gets its own,
    with the node's name as the file suffix."""
    api_dns = (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        node_name,
    )
    return [
        LeafSpec(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=api_dns,
            ip_addresses=("127.0.0.1", node_ip, service_ip),
        ),
        # The apiserver's identity towards kubelets; bound to system:kubelet-api-admin.
        LeafSpec("apiserver-kubelet-client", "kube-apiserver", client=True),
        LeafSpec("admin", "kubernetes-admin", ("system:masters",), client=True),
        LeafSpec("controller-manager", "system:kube-controller-manager", client=True),
        LeafSpec("scheduler", "system:kube-scheduler", client=True),
        *node_leaf_specs(node_name, node_ip),
        *(leaf for name, ip in sandbox_nodes for leaf in node_leaf_specs(name, ip, f"-{name}")),
    ]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey), path
    return key


def _ensure_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key_path = pki / "ca.crt", pki / "ca.key"
    if crt.exists() and key_path.exists():
        return x509.load_pem_x509_certificate(crt.read_bytes()), _load_key(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "multinet-localcluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _sans(spec: LeafSpec) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in spec.ip_addresses]
    return names


def _is_current(path: Path, spec: LeafSpec) -> bool:
    """An existing leaf is reused only if its subject and SANs are still what we would issue."""
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns or cns[0].value != spec.common_name:
        return False
    try:
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have_set = {str(n.value) for n in have}
    except x509.ExtensionNotFound:
        have_set = set()
    return have_set == {str(n.value) for n in _sans(spec)}


def _issue(
    pki: Path, spec: LeafSpec, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if spec.dns_names or spec.ip_addresses:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(spec)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(pki / f"{spec.stem}.key", key)
    (pki / f"{spec.stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ensure_service_account_key(pki: Path) -> None:
    if (pki / "sa.key").exists() and (pki / "sa.pub").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki / "sa.key", key)
    (pki / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def ensure_pki(
    pki: Path,
    *,
    node_name: str,
    node_ip: str,
    service_ip: str,
    sandbox_nodes: tuple[tuple[str, str], ...] = (),
) -> None:
    """Create whatever is missing or stale under `pki`; idempotent and cheap when complete."""
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    ca, ca_key = _ensure_ca(pki)
    for spec in leaf_specs(node_name, node_ip, service_ip, sandbox_nodes):
        key_missing = not (pki / f"{spec.stem}.key").exists()
        if key_missing or not _is_current(pki / f"{spec.stem}.crt", spec):
            _issue(pki, spec, ca, ca_key)
    _ensure_service_account_key(pki)
