"""wgmesh CrossGuard policy pack: pure rules (`rules`), the pack wiring (`pack`), the entry point.

Run it with `pulumi preview --policy-pack policy` (see docs/deploy.md, "Preview, deploy").
"""
