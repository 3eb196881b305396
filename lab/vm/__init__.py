"""The VM driver of the lab: the rendered user-data booting unchanged in QEMU guests (minutes).

driver (up, down, boot), network (bridges, taps, subnet hosts, the metadata host), image (the
cached Debian image), report and guest_report (what the guests say, and the reporter baked into
the image), live and replace (live updates over SSH, a VM replaced as Pulumi does), masquerade,
faults (reboot, kill), files (a VM's files by name). The plumbing (state file, namespaces,
processes, mounts, errors) is lab/core's.
"""
