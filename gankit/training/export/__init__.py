"""From a checkpoint to a file others can run: the ONNX export and its parity gate (`to_onnx`), and the torch-fidelity adapter (`fidelity`).

Heavy tier (torch, onnx, onnxscript). May import the engine, nets and persist rooms, the
contract and the runtime (to check what it wrote the way users will load it).
"""
