"""The VM driver of the lab: the rendered user-data booting unchanged in QEMU guests (minutes).

driver (up, down, boot), network (namespaces, bridges, taps), image (the cached Debian image),
report and guest_report (what the guests say, and the reporter baked into the image), live and
replace (live updates over SSH, a VM replaced as Pulumi does), masquerade, faults (reboot, kill).
"""
