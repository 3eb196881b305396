"""The cached Debian 12 VM image the lab boots: built once with mmdebstrap, reused until its recipe changes.

The image is generic: a stock Debian with cloud-init and the WireGuard tools preinstalled (the
VMs have no mirror) plus the lab's reporter unit. Nothing rendered for a mesh goes into it; each
VM gets its user-data from a NoCloud seed. The cache directory name carries a hash of the whole
recipe (packages, mmdebstrap options, files written, disk size), so a recipe change builds a new
image, and the build happens in a temporary directory renamed into place, so an interrupted build
never leaves a half image behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.core.errors import LabError
from lab.core.mounts import unmount_under
from lab.core.proc import run
from lab.vm.files import FileOf

CACHE_ENV = "WGMESH_LAB_IMAGE_CACHE"
DEFAULT_CACHE = Path("/var/cache/wgmesh-lab")
SUITE = "bookworm"
DISK_SIZE = "2G"
BUILD_TIMEOUT = 1200.0  # seconds; a stuck mirror fails the build instead of hanging CI

PACKAGES: tuple[str, ...] = (
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "cloud-init",
    "python3",
    "wireguard-tools",
    "iptables",
    "nftables",
    "iproute2",
    "openssh-server",
    # The login user's `sudo -n` (what live updates run as on AWS and GCP images); cloud-init's
    # default user gets NOPASSWD sudo from the distro's cloud.cfg.
    "sudo",
    "iputils-ping",
    "procps",
    "netbase",
    "locales",
)

# Run inside the new root by mmdebstrap (which mounts /proc, /sys, /dev for them); "$1" is the root.
CUSTOMIZE_HOOKS: tuple[str, ...] = (
    # cloud-init reports status: error when the default locale is missing.
    'echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen" && chroot "$1" locale-gen'
    ' && chroot "$1" update-locale LANG=en_US.UTF-8',
    'chroot "$1" systemctl enable systemd-networkd.service',
    # Background jobs that only cost CPU under TCG and have nothing to do in a lab VM.
    'chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer'
    " e2scrub_reap.service fstrim.timer",
)

DPKG_OPTIONS: tuple[str, ...] = (
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)

REPORTER_UNIT = """\
[Unit]
Description=wgmesh lab: report cloud-init and mesh health on the second serial port
# Only in the lab, which names the node on the kernel command line.
ConditionKernelCommandLine=wglab.node
After=cloud-final.service
Wants=cloud-final.service

[Service]
Type=exec
ExecStart=/usr/local/sbin/wglab-report

[Install]
WantedBy=cloud-init.target
"""

CLOUD_CFG = """\
# wgmesh lab image: seeds come from a NoCloud ISO; networkd renders the lab's network-config.
datasource_list: [ NoCloud, None ]
system_info:
  network:
    renderers: [ networkd ]
# Lab speed-up under TCG: only the ed25519 host key (RSA generation takes long when emulated).
ssh_genkeytypes: [ ed25519 ]
"""

REPORTER_SOURCE = Path(__file__).with_name("guest_report.py")


@dataclass(frozen=True)
class GuestFile:
    path: str  # inside the image
    mode: int
    content: str


def guest_files() -> tuple[GuestFile, ...]:
    """Files the build writes into the root after mmdebstrap (part of the recipe hash)."""
    return (
        GuestFile("etc/fstab", 0o644, "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n"),
        GuestFile("etc/hostname", 0o644, "localhost\n"),
        GuestFile("etc/cloud/cloud.cfg.d/90-wglab.cfg", 0o644, CLOUD_CFG),
        GuestFile("etc/systemd/system/wglab-report.service", 0o644, REPORTER_UNIT),
        GuestFile("usr/local/sbin/wglab-report", 0o755, REPORTER_SOURCE.read_text()),
    )


UNIT_LINK = "etc/systemd/system/cloud-init.target.wants/wglab-report.service"


@dataclass(frozen=True)
class Image:
    """A built image: the root disk and the kernel and initrd for direct kernel boot."""

    directory: Path

    disk = FileOf("base.qcow2")
    kernel = FileOf("vmlinuz")
    initrd = FileOf("initrd.img")

    def file(self, name: str) -> Path:
        return self.directory / name

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd))


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def mmdebstrap_argv(root: Path) -> list[str]:
    argv = [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        "--format=directory",
        "--include=" + ",".join(PACKAGES),
        '--aptopt=Acquire::Retries "3"',
    ]
    argv += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    argv += [f"--customize-hook={hook}" for hook in CUSTOMIZE_HOOKS]
    return [*argv, SUITE, str(root)]  # no mirror: this machine's apt sources


def recipe() -> dict[str, object]:
    return {
        "mmdebstrap": mmdebstrap_argv(Path("ROOT")),
        "files": [[f.path, f.mode, f.content] for f in guest_files()],
        "unit_link": UNIT_LINK,
        "disk_size": DISK_SIZE,
    }


def recipe_hash() -> str:
    blob = json.dumps(recipe(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_image() -> Image:
    """Where the image for the current recipe lives (built or not)."""
    return Image(cache_root() / f"image-{recipe_hash()}")


def log(message: str) -> None:
    print(f"lab image: {message}", file=sys.stderr, flush=True)


def bootstrap_argv(root: Path, timeout: float) -> list[str]:
    """mmdebstrap in a private mount namespace (the hooks' mounts vanish with it, even if killed),
    under coreutils `timeout`, which kills its whole process group (apt, dpkg) when time is up."""
    limit = ["timeout", "--kill-after=10", f"{timeout:.0f}"]
    return [*limit, "unshare", "--mount", "--propagation", "private", *mmdebstrap_argv(root)]


def remove_build_dir(path: Path) -> None:
    """Delete a build directory of ours, never following a mount out of it (left behind only by
    a killed build)."""
    if unmount_under(path.resolve()):
        raise LabError(f"{path} still has mounts; not deleting it")
    shutil.rmtree(path, ignore_errors=True)


def finish_root(root: Path) -> None:
    """Write the lab files into the new root and enable the reporter unit."""
    for f in guest_files():
        target = root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(f.mode)
    link = root / UNIT_LINK
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/systemd/system/wglab-report.service")


def copy_boot_files(root: Path, out: Image) -> None:
    """Copy the one installed kernel and its initrd out of the root for direct kernel boot."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise LabError(f"expected one kernel in the image, found {len(kernels)}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    shutil.copyfile(kernels[0], out.kernel)
    shutil.copyfile(root / "boot" / f"initrd.img-{version}", out.initrd)


def build(target: Image, timeout: float = BUILD_TIMEOUT) -> None:
    """Build into a temporary directory next to the target, then rename it into place."""
    tmp = target.directory.with_name(f".build-{target.directory.name}-{os.getpid()}")
    remove_build_dir(tmp)
    tmp.mkdir(parents=True)
    staged = Image(tmp)
    root = tmp / "rootfs"
    raw = tmp / "base.raw"
    try:
        start = time.monotonic()
        # This machine's environment (apt may need its proxy settings); exit 124: timed out.
        what = f"image build: mmdebstrap (at most {timeout:.0f} s)"
        run(bootstrap_argv(root, timeout), what=what, timeout=timeout + 30, env=os.environ)
        finish_root(root)
        copy_boot_files(root, staged)
        run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", str(root), str(raw), DISK_SIZE], timeout=600)
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(staged.disk)], timeout=600)
        raw.unlink()
        remove_build_dir(root)
        (tmp / "recipe.json").write_text(json.dumps(recipe(), indent=1, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        os.rename(tmp, target.directory)
        log(f"built {target.directory} in {time.monotonic() - start:.0f} s")
    except BaseException:
        remove_build_dir(tmp)
        raise


def ensure_image(timeout: float = BUILD_TIMEOUT) -> Image:
    """The image for the current recipe, building it first when the cache has none.

    `timeout` bounds the package download and install step (the slow, network-bound part).
    """
    image = cached_image()
    if image.complete():
        return image
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same cache waits for ours
        if image.complete():
            return image
        for stale in root.glob(".build-*"):  # holding the lock, any leftover is from a dead build
            remove_build_dir(stale)
        if image.directory.exists():
            remove_build_dir(image.directory)
        log(f"building {image.directory} (about 2 minutes)")
        build(image, timeout)
    return image


def main() -> int:
    image = ensure_image()
    print(image.directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
