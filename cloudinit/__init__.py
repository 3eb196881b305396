"""Pure renderers: wg0.conf, sysctl, nftables and #cloud-config from a plan plus resolved keys.

Nothing here imports Pulumi; `cloudinit.render` is the entry point the components and
`tools.render` call (inside `Output.all(...).apply` for the former).
"""
