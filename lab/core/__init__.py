"""What both lab drivers share: errors, commands, the state file, namespaces, mounts, the manifest.

Kept import-free: `lab.netns.nodeshim` imports `lab.core.errors` inside lab nodes.
"""
