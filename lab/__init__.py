"""The local lab: boot `make render` output without a cloud account.

Two drivers read the same rendered user-data: `lab.netns` (network namespaces and
wireguard-go, seconds) and `lab.vm` (QEMU VMs running cloud-init for real, minutes); both keep
their records through `lab.core` (state file, namespaces, processes, mounts, one LabError),
and `lab.checks` holds the health checks run on a netns lab.
`python -m lab up|down|check --driver netns|vm` is the entry point (`make lab`).

Kept import-free: `lab.netns.nodeshim` runs inside lab nodes and must start fast.
"""
