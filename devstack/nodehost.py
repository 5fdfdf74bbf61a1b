"""What the real node asks of the host kernel, tried for real, and how it is undone.

Each check runs the operation the node needs (a cgroup directory, a network namespace, a bridge)
rather than reading version numbers: a refusal is reported with the kernel's own words, e.g.
``mkdir /sys/fs/cgroup/memory/shipline-ab12: Permission denied``. What the host lacks but the node
can live without is adapted to and reported (``Host.adaptations``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.nodeconfig import CNI_DIR, CNI_PLUGINS

CGROUP_FS = Path("/sys/fs/cgroup")
CGROUP_V1_NEEDED = ("cpu", "cpuacct", "cpuset", "memory", "pids")
CGROUP_V1_OPTIONAL = ("systemd", "blkio", "devices", "freezer", "hugetlb")
BINARIES = {"containerd": "containerd", "ctr": "containerd", "runc": "runc", "ip": "iproute2",
            "unshare": "util-linux", "nsenter": "util-linux", "iptables": "iptables", "catatonit": "catatonit"}
INSTALL_HINT = "apt-get install containerd runc containernetworking-plugins catatonit iproute2 iptables"
CAP_SYS_RESOURCE = 24
SUBNET_POOL = ipaddress.ip_network("10.233.0.0/16")
NETNS_DIR = Path("/run/netns")


class Refused(Exception):
    """The host will not do something the node needs; the message says what, in the kernel's words."""


@dataclass(frozen=True)
class Host:
    """The outcome of the checks: what to adapt to."""

    cgroup_v2: bool
    snapshotter: str
    restrict_oom_score_adj: bool
    adaptations: tuple[str, ...] = field(default=())


def check(cgroup_root: str) -> Host:
    """Raise ``Refused`` with the first thing the node needs and cannot have; else what to adapt."""
    if os.geteuid() != 0:
        raise Refused("the real node needs root (containerd, runc, network namespaces, cgroups)")
    missing = [f"{b} ({p})" for b, p in BINARIES.items() if shutil.which(b) is None]
    missing += [f"{CNI_DIR / p} (containernetworking-plugins)" for p in CNI_PLUGINS if not (CNI_DIR / p).exists()]
    if missing:
        raise Refused(f"missing: {', '.join(missing)}: {INSTALL_HINT}")
    v2 = (CGROUP_FS / "cgroup.controllers").exists()
    make_cgroup_root(cgroup_root, v2=v2)
    _run(["unshare", "--net", "true"], "creating a network namespace (unshare --net)")
    adaptations = []
    overlay = "overlay" in Path("/proc/filesystems").read_text()
    if not overlay:
        adaptations.append("no overlay filesystem in the kernel: containerd uses the native snapshotter (copies)")
    restrict = not _has_capability(CAP_SYS_RESOURCE)
    if restrict:
        adaptations.append("no CAP_SYS_RESOURCE: containers keep oom_score_adj >= containerd's own "
                           "(containerd restrict_oom_score_adj)")
    return Host(cgroup_v2=v2, snapshotter="overlayfs" if overlay else "native",
                restrict_oom_score_adj=restrict, adaptations=tuple(adaptations))


def make_cgroup_root(cgroup_root: str, *, v2: bool) -> None:
    """The kubelet wants ``cgroupRoot`` to exist in every hierarchy it uses."""
    name = cgroup_root.strip("/")
    if v2:
        _mkdir(CGROUP_FS / name)
        return
    for controller in CGROUP_V1_NEEDED:
        if not (CGROUP_FS / controller).is_dir():
            raise Refused(f"cgroup v1 controller {controller!r} is not mounted under {CGROUP_FS}")
    for controller in CGROUP_V1_NEEDED + CGROUP_V1_OPTIONAL:
        if (CGROUP_FS / controller).is_dir():
            _mkdir(CGROUP_FS / controller / name)
    cpuset = CGROUP_FS / "cpuset" / name
    for knob in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset is empty: give it the parent's
        if not (cpuset / knob).read_text().strip():
            (cpuset / knob).write_text((cpuset.parent / knob).read_text())


def remove_cgroup_root(cgroup_root: str) -> None:
    """Remove the (empty) cgroups below and including the root, deepest first; busy ones stay."""
    name = cgroup_root.strip("/")
    tops = [CGROUP_FS / name] if (CGROUP_FS / "cgroup.controllers").exists() else \
        [CGROUP_FS / c / name for c in (*CGROUP_V1_NEEDED, *CGROUP_V1_OPTIONAL, "unified")]
    for top in tops:
        if top.is_dir():
            for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()


def pick_index(seed: int) -> int:
    """``n`` for the node's networks, starting from ``seed``: pods in ``10.233.n.0/24``, the link
    between host and node namespace in ``10.234.n.0/30``, neither overlapping a host address or route."""
    used = _used_networks()
    for i in range(254):
        n = 1 + (seed + i) % 254
        wanted = (ipaddress.ip_network(f"10.233.{n}.0/24"), ipaddress.ip_network(f"10.234.{n}.0/30"))
        if not any(w.overlaps(u) for w in wanted for u in used):
            return n
    raise Refused(f"no free /24 left in {SUBNET_POOL} for the node's pods")


def ensure_netns(netns: str, *, host_ip: str, node_ip: str, pod_subnet: str, bridge: str, gateway: str) -> None:
    """The node's network namespace: a veth link to the host (``host_ip`` ↔ ``node_ip``, /30), the
    pods' bridge holding ``gateway``, forwarding on, bridged traffic through iptables (kube-proxy
    needs it for pod → Service → pod on the same bridge). The host routes ``pod_subnet`` over the
    link (the kubelet probes pods from the host)."""
    if not (NETNS_DIR / netns).exists():
        _run(["ip", "netns", "add", netns], f"creating network namespace {netns} (ip netns add)")
    host_end, node_end = f"{netns}h", f"{netns}n"
    if not Path(f"/sys/class/net/{host_end}").exists():
        _run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end, "netns", netns],
             f"creating the veth pair {host_end}/{node_end}")
    _ensure_address(None, host_end, f"{host_ip}/30")
    _run(["ip", "link", "set", host_end, "up"], f"bringing {host_end} up")
    inside = ["ip", "-n", netns]
    _ensure_address(netns, node_end, f"{node_ip}/30")
    for argv in ([*inside, "link", "set", "lo", "up"], [*inside, "link", "set", node_end, "up"]):
        _run(argv, " ".join(argv))
    if subprocess.run([*inside, "link", "show", bridge], capture_output=True).returncode != 0:
        _run([*inside, "link", "add", "name", bridge, "type", "bridge"], f"creating bridge {bridge} (ip link add)")
    _ensure_address(netns, bridge, f"{gateway}/24")
    _run([*inside, "link", "set", bridge, "up"], f"bringing {bridge} up")
    _run([*inside, "route", "replace", "default", "via", host_ip], "the node's default route")
    _run(["ip", "route", "replace", pod_subnet, "via", node_ip], f"the host's route to {pod_subnet}")
    for knob in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
        _run(["ip", "netns", "exec", netns, "sysctl", "-qw", knob], f"sysctl {knob} in {netns}")


def delete_netns(netns: str) -> None:
    """Everything of the namespace goes with it (the bridge, the pods' links). The veth pair is
    deleted by hand: the kernel frees a deleted namespace's devices later, and a namespace made
    again at once must not find the old host end still there. The host's route to the pods goes
    with its device."""
    if (NETNS_DIR / netns).exists():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
    subprocess.run(["ip", "link", "delete", f"{netns}h"], capture_output=True)


def in_netns(netns: str, argv: list[str]) -> list[str]:
    """``argv`` in the node's network namespace only (its mounts stay the host's: the kubelet's
    volume mounts must reach containerd's containers)."""
    return ["nsenter", f"--net={NETNS_DIR / netns}", "--", *argv]


def _ensure_address(netns: str | None, device: str, cidr: str) -> None:
    ip = ["ip", *(["-n", netns] if netns else [])]
    shown = subprocess.run([*ip, "-j", "addr", "show", "dev", device], capture_output=True, text=True).stdout
    if cidr.split("/")[0] not in shown:
        _run([*ip, "addr", "add", cidr, "dev", device], f"adding {cidr} to {device}")


def unmount_below(directory: Path) -> int:
    """Lazily unmount everything mounted under ``directory`` (container rootfs, pod volumes)."""
    prefix = str(directory.resolve()) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    mine = sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)
    for point in mine:
        subprocess.run(["umount", "-l", point], capture_output=True)
    return len(mine)


def kill_shims(socket: Path) -> list[int]:
    """SIGKILL the containerd shims serving ``socket`` (only ours: the address is in their argv)."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    if killed:
        time.sleep(0.2)
    return killed


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise Refused(f"mkdir {path}: {exc.strerror}") from None


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise Refused(f"{what}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True).stdout or "[]"
    nets = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
            for link in json.loads(out) for a in link.get("addr_info", [])]
    routes = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout or "[]"
    for route in json.loads(routes):
        with contextlib.suppress(ValueError):
            if route.get("dst") not in (None, "default"):
                nets.append(ipaddress.ip_network(route["dst"], strict=False))
    return nets


