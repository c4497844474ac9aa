"""The training engine: the loop, one step, its context, precision, batches, losses and optimizers.

Heavy tier (torch). Rooms: `trainer` (the loop, reporting through `Callbacks`), `step`
(the standard update and its hooks), `context` (the `StepContext` a step gets), `spec`
(the resolved run: config + plugin + NetSpec), `precision` (`--precision auto`),
`compile` (`--compile`: the nets compiled, a failed compile falling back to eager),
`sampler` (batches on the device), `losses`, `optim` (optimizers and the EMA), `evaluation` (scoring
checkpoints during training). May import the nets and persist rooms, the config, the
plugin contract and the light evaluation package; never the CLI, export, distributed
or conformance rooms.
"""
