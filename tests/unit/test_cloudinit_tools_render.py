"""`python -m tools.render`: files, modes, determinism given keys, mesh.json, and its exit codes."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import stat
from pathlib import Path

import pytest
import yaml

from mesh import manifest
from mesh.errors import ConfigError
from mesh.keys import public_key
from mesh.plan import build_plan
from mesh.spec import parse
from mesh.stackfile import load_spec
from tools.render import (
    KeyMaterial,
    main,
    placeholder_endpoints,
    placeholder_endpoints6,
    render_stack,
    render_to,
)

DOC_NETS = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("203.0.113.0/24"))


def fixed_keys(stack: str) -> KeyMaterial:
    spec = load_spec(stack)
    names = [n.name for n in spec.nodes] + [c.name for c in spec.clients]
    raw = {n: hashlib.sha256(f"key {n}".encode()).digest() for n in names}
    return KeyMaterial.from_raw(raw, hashlib.sha256(b"mesh secret").digest())


def render(stack: str, out: Path, keys: KeyMaterial | None = None) -> None:
    spec = load_spec(stack)
    endpoints, endpoints6 = placeholder_endpoints(spec), placeholder_endpoints6(spec)
    render_stack(stack, build_plan(spec), out, keys or fixed_keys(stack), endpoints, endpoints6)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_the_contract_layout(tmp_path: Path) -> None:
    render("dev", tmp_path)
    assert set(tree(tmp_path)) == {
        "aws-fra/user-data",
        "aws-fra/bundle",
        "gcp-fra/user-data",
        "gcp-fra/bundle",
        "hetzner-nbg/user-data",
        "hetzner-nbg/bundle",
        "clients/laptop.conf",
        "mesh.json",
    }
    assert (tmp_path / "aws-fra" / "user-data").read_text().startswith("#cloud-config\n")
    assert (tmp_path / "aws-fra" / "bundle").read_text().startswith("wgmesh-bundle 1\n")
    assert (tmp_path / "clients" / "laptop.conf").read_text().startswith("[Interface]\n")


def test_secret_files_are_0600_in_0700_directories_even_over_looser_ones(tmp_path: Path) -> None:
    out = tmp_path / "r"
    (out / "aws-fra").mkdir(parents=True)
    out.chmod(0o755)
    (out / "aws-fra").chmod(0o755)
    (out / "aws-fra" / "user-data").write_text("old")
    (out / "aws-fra" / "user-data").chmod(0o644)
    render("dev", out)
    assert mode(out) == 0o700
    for d in ("aws-fra", "gcp-fra", "hetzner-nbg", "clients"):
        assert mode(out / d) == 0o700, d
    for f in (
        "aws-fra/user-data",
        "aws-fra/bundle",
        "gcp-fra/user-data",
        "hetzner-nbg/user-data",
        "clients/laptop.conf",
    ):
        assert mode(out / f) == 0o600, f


def test_same_keys_same_bytes_fresh_keys_differ(tmp_path: Path) -> None:
    render("dev", tmp_path / "a")
    render("dev", tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    spec = load_spec("dev")
    render("dev", tmp_path / "c", KeyMaterial.fresh(spec))
    render("dev", tmp_path / "d", KeyMaterial.fresh(spec))
    assert tree(tmp_path / "c")["aws-fra/user-data"] != tree(tmp_path / "d")["aws-fra/user-data"]


def test_mesh_json_describes_the_mesh_and_holds_no_secret(tmp_path: Path) -> None:
    keys = fixed_keys("dev")
    render("dev", tmp_path, keys)
    text = (tmp_path / "mesh.json").read_text()
    doc = json.loads(text)
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert set(nodes) == {"aws-fra", "gcp-fra", "hetzner-nbg"}
    aws = nodes["aws-fra"]
    assert set(aws) == {
        "name",
        "cloud",
        "public_ip",
        "public_ip6",
        "address",
        "address6",
        "public_key",
        "subnets",
        "underlay_mtu",
        "mtu",
        "listen_port",
        "peers",
        "hub",
        "gateway",
        "masquerade",
        "behind_nat",
        "keepalive",
        "lan_interface",
    }
    assert (aws["behind_nat"], aws["keepalive"], aws["lan_interface"]) == (False, 25, None)
    assert aws["peers"] == ["gcp-fra", "hetzner-nbg", "laptop"]
    assert (aws["cloud"], aws["address"], aws["subnets"], aws["listen_port"]) == (
        "aws",
        "10.77.0.1",
        ["10.0.4.0/24"],
        51820,
    )
    assert nodes["gcp-fra"]["underlay_mtu"] == 1460
    assert {n["mtu"] for n in doc["nodes"]} == {1380}  # smallest underlay (GCP 1460) minus 80
    assert aws["public_key"] == public_key(keys.private_keys["aws-fra"])
    assert doc["clients"][0]["name"] == "laptop"
    assert doc["clients"][0]["address"] == "10.77.0.100"

    secrets = list(keys.private_keys.values())
    for f in (tmp_path / "clients").glob("*.conf"):
        secrets += [line.split("= ", 1)[1] for line in f.read_text().splitlines() if "PresharedKey" in line]
    assert len(secrets) > len(keys.private_keys)
    assert not [s for s in secrets if s in text]


def test_placeholder_ips_are_documentation_addresses_and_lab_nodes_keep_their_own() -> None:
    dev = placeholder_endpoints(load_spec("dev"))
    assert list(dev.values()) == ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
    assert all(any(ipaddress.ip_address(ip) in n for n in DOC_NETS) for ip in dev.values())
    lab = placeholder_endpoints(load_spec("lab"))
    assert lab == {"lab-a": "198.51.100.1", "lab-b": "198.51.100.2", "lab-c": "198.51.100.3"}


def test_placeholder_ips_skip_the_mesh_networks() -> None:
    """A 192.0.2.0/24 overlay is allowed; placeholders inside it would be refused at render."""
    config = {
        "mesh": {"cidr": "192.0.2.0/24"},
        "nodes": [
            {"name": "a", "cloud": "aws", "region": "eu-central-1"},
            {"name": "b", "cloud": "hcloud", "region": "nbg1"},
        ],
    }
    spec = parse(config)
    assert list(placeholder_endpoints(spec).values()) == ["203.0.113.10", "203.0.113.11"]


def test_placeholder_ipv6_for_cloud_nodes_only_when_the_mesh_gives_them_one() -> None:
    assert placeholder_endpoints6(load_spec("dev")) == {}  # no cidr6, endpoints ipv4
    ipv6 = placeholder_endpoints6(load_spec("ipv6"))
    assert list(ipv6.values()) == ["2001:db8::a", "2001:db8::b", "2001:db8::c"]
    assert placeholder_endpoints6(load_spec("lab")) == {}  # lab nodes without publicIp6
    lab6 = placeholder_endpoints6(load_spec("lab-ipv6"))  # lab nodes keep their own
    assert lab6 == {"lab-a": "2001:db8:51::1", "lab-b": "2001:db8:51::2", "lab-c": "2001:db8:51::3"}


def test_mesh_json_says_which_family_nodes_dial_and_each_nodes_ipv6(tmp_path: Path) -> None:
    render("ipv6", tmp_path)
    doc = manifest.load(tmp_path / "mesh.json")
    assert doc.endpoints == "ipv6"
    assert [str(n.public_ip6) for n in doc.nodes] == ["2001:db8::a", "2001:db8::b", "2001:db8::c"]
    conf = (tmp_path / "aws-fra" / "user-data").read_text()
    assert "Endpoint = [2001:db8::b]:51820" in conf and "Endpoint = [2001:db8::c]:51820" in conf
    render("dev", tmp_path / "dev")
    dev = manifest.load(tmp_path / "dev" / "mesh.json")
    assert dev.endpoints == "ipv4" and {n.public_ip6 for n in dev.nodes} == {None}


def write_stack(path: Path, nodes: list[dict[str, object]], cidr: str = "10.77.0.0/24") -> Path:
    doc = {"config": {"wgmesh:mesh": {"cidr": cidr}, "wgmesh:nodes": nodes}}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_main_renders_a_stack_and_reports_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "lab", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "lab-a: lab user-data" in out
    assert (tmp_path / "r" / "lab-c" / "user-data").is_file()
    assert "PrivateKey" not in out


def test_render_to_is_make_render_as_a_function(tmp_path: Path) -> None:
    """What the lab calls: the same files as the CLI, the summary as data, errors as exceptions."""
    rendered = render_to("lab-roaming", tmp_path / "r")
    assert [r.name for r in rendered.nodes] == ["lab-a", "lab-b"]
    assert (
        rendered.lines()[-1] == f"wrote 2 nodes, {rendered.clients} clients and mesh.json to {tmp_path / 'r'}"
    )
    assert rendered.clients > 0 and (tmp_path / "r" / "clients").is_dir()
    assert manifest.load(tmp_path / "r" / "mesh.json").stack == "lab-roaming"
    stack = write_stack(tmp_path / "Pulumi.bad.yaml", [{"name": "x", "cloud": "azure"}])
    with pytest.raises(ConfigError, match=r"wgmesh:nodes\[0\]\.cloud"):
        render_to(stack, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_config_error_exits_2_with_the_message_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = write_stack(tmp_path / "Pulumi.bad.yaml", [{"name": "x", "cloud": "azure"}])
    assert main(["--stack", str(stack), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "wgmesh:nodes[0].cloud" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_missing_stack_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "no-such-stack", "--out", str(tmp_path / "r")]) == 2
    assert "no such stack file" in capsys.readouterr().err


def test_user_data_over_the_aws_limit_exits_1_naming_node_not_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 200-node full mesh: about 49 KB of user data per node, about 17 KB gzipped: over 16 KB.
    nodes: list[dict[str, object]] = [
        {
            "name": f"n{i}",
            "cloud": "aws",
            "region": "eu-central-1",
            "address": f"10.77.0.{i + 1}",
        }
        for i in range(200)
    ]
    stack = write_stack(tmp_path / "Pulumi.big.yaml", nodes, cidr="10.77.0.0/16")
    assert main(["--stack", str(stack), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("render: n0: user data is ")
    assert "16384-byte limit of aws" in err
    assert "=" not in err  # no base64 key material
