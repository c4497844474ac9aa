"""What a run leaves on disk: checkpoints (`checkpoint`), config.json and metrics.jsonl (`runlog`), loss-curve charts (`plots`), and the run-folder lock (`lock`).

Heavy tier (torch, safetensors, matplotlib). May import the config, the atomic writers
and the plugin registry; never the engine, export or CLI rooms (the engine calls into
this room, not the other way round).
"""
