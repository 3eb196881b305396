"""The netns driver: every lab node in network namespaces on wireguard-go (seconds).

Kept import-free: `python -m lab.netns.nodeshim` runs inside lab nodes and must start fast.
"""
