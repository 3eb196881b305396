"""The local lab: boot `make render` output without a cloud account.

Two drivers read the same rendered user-data: `lab.netns` (network namespaces and
wireguard-go, seconds) and `lab.vm` (QEMU VMs running cloud-init for real, minutes).
`python -m lab up|down|check --driver netns|vm` is the entry point (`make lab`).

Kept import-free: `lab.nodeshim` runs inside lab nodes and must start fast.
"""
