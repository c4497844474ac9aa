"""Training on several processes with torch.distributed: DDP over the global batch, or digits per rank.

Heavy tier (torch). Two rooms: `roles` plans a run's ranks and launches them (`gankit
train --nproc N`, or torchrun's variables); `parallel` is what one rank does (`Parallel`:
DDP wrapping, sharded batches, lock-step stop flags, merged checkpoints). May import the
engine and persist rooms, never the CLI. The names below are what the CLI uses.
"""

from __future__ import annotations

from gankit.training.distributed.parallel import (Parallel, ShardedBatches, is_peer_failure, join, lost_peer,
                                                  start)
from gankit.training.distributed.roles import (MODES, Role, check_resume, env_world, holds_run_lock, launch,
                                               plan_role, rank_argv, role_for, shard_classes)

__all__ = ["Role", "Parallel", "ShardedBatches", "plan_role", "check_resume", "launch", "start", "join",
           "role_for", "rank_argv", "lost_peer", "is_peer_failure", "shard_classes", "env_world", "holds_run_lock",
           "MODES"]
