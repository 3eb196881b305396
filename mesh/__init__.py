"""Pure core of wgmesh: stack config -> validated spec -> plan. Imports nothing from Pulumi."""
