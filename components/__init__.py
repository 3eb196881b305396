"""The Pulumi side of wgmesh: the only package that creates cloud resources.

Pure helpers (`firewall`, `netplan`, `images`) decide what to create; the component modules
(`keys`, `aws`, `gcp`, `hcloud`, `lab`, `mesh`) create it.
"""
