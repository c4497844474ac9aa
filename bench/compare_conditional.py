"""Compare the conditional plugin's discriminator conditionings (projection, concat, acgan) by digit accuracy.

Heavy tier (torch + onnxruntime). Run::

    python bench/compare_conditional.py [--budget 180] [--modes projection,concat,acgan]

Each mode trains with the real `Trainer` on the 10k-image MNIST training subset for the
same wall-clock budget of training (evaluation pauses the clock), one mode after another
in this process. Every ``--eval-every`` seconds, and at the end, the generator (its EMA
weights when ``--ema`` is on) draws ``--per-digit`` images of each digit from fixed
noise, and a digit classifier reads them: a digit's accuracy is the share of images
generated for digit d that the classifier calls d. The table gives the mean over the ten
digits, the worst digit, and each digit.

The classifier is gankit's shipped one (`gankit.eval.load_classifier`) when it is
installed; otherwise (``--classifier quick``, or the shipped file is missing) a private
one is trained here first with `gankit.training.classifier.model` for a few epochs on the same
10k training images, exported to ONNX and read through the same
`gankit.eval.DigitClassifier` interface. The table says which was used.

Measured results, with the machine and date they come from: bench/results/compare_conditional.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import shared_mnist  # noqa: E402  (bench/ is on sys.path as the script's folder)
from gankit.config import TrainConfig, parse_int_list, parse_options  # noqa: E402
from gankit.data import load_dataset  # noqa: E402
from gankit.images import to_uint8  # noqa: E402
from gankit.registry import load_plugin  # noqa: E402
from gankit.training.engine.trainer import Callbacks, Trainer  # noqa: E402


class _BudgetSpent(Exception):
    """Raised from the log callback to stop a run once its training time is used up."""


class _TorchClassifier:
    """gankit's classifier net run by torch, with the `DigitClassifier.predict` interface."""

    def __init__(self, model):
        self.model = model.eval()

    def predict(self, images_u8: np.ndarray) -> np.ndarray:
        from gankit.training.classifier.model import predict

        return predict(self.model, images_u8)


def quick_classifier(images: np.ndarray, labels: np.ndarray, epochs: int, cache: Path) -> _TorchClassifier:
    """A private digit classifier: gankit's classifier net trained here for a few epochs.

    Cached as a .npz of its state dict (plain arrays, loaded without pickle), so parallel
    runs of this script share one classifier.
    """
    from gankit.training.classifier.model import DigitCNN, train_classifier

    path = cache / f"quick_digit_classifier_e{epochs}_torch{torch.__version__.split('+')[0]}.npz"
    if path.exists():
        model = DigitCNN()
        with np.load(path, allow_pickle=False) as arrays:
            model.load_state_dict({k: torch.from_numpy(arrays[k]) for k in arrays.files})
        return _TorchClassifier(model)
    t0 = time.perf_counter()
    model = train_classifier(images, labels, epochs=epochs, seed=0, log=None)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{k: v.numpy() for k, v in model.state_dict().items()})
    tmp.replace(path)
    print(f"trained a quick classifier ({epochs} epochs) in {time.perf_counter() - t0:.0f}s -> {path}",
          file=sys.stderr)
    return _TorchClassifier(model)


def get_classifier(args, ds):
    if args.classifier in ("auto", "shipped"):
        try:
            from gankit.eval import load_classifier

            return load_classifier(), "gankit's shipped classifier"
        except Exception as exc:  # noqa: BLE001 - any failure means "not installed (yet)"
            if args.classifier == "shipped":
                raise
            print(f"shipped classifier unavailable ({type(exc).__name__}: {exc}); using a quick one", file=sys.stderr)
    elif args.classifier != "quick":
        from gankit.eval import DigitClassifier

        return DigitClassifier(args.classifier, expected_sha256=None), f"ONNX file {args.classifier}"
    args.cache.mkdir(parents=True, exist_ok=True)
    return quick_classifier(ds.images, ds.labels, args.classifier_epochs, args.cache), \
        f"private quick classifier ({args.classifier_epochs} epochs on the 10k training subset)"


@torch.no_grad()
def digit_accuracy(trainer: Trainer, classifier, per_digit: int) -> np.ndarray:
    """Accuracy per digit 0-9 of ``per_digit`` images each, from fixed noise."""
    g = trainer.generator_for_eval()
    g.eval()
    gen = torch.Generator().manual_seed(12345)
    labels = torch.arange(10).repeat_interleave(per_digit)
    z = trainer.noise_like(len(labels), gen, torch.device("cpu")).to(trainer.device)
    images = torch.cat([g(z[i:i + 2000], labels[i:i + 2000].to(trainer.device)).float().cpu()
                        for i in range(0, len(labels), 2000)]).numpy()
    trainer.G.train()
    u8 = to_uint8(images, trainer.spec.value_range)
    predicted = classifier.predict(u8)
    return np.array([(predicted[labels.numpy() == d] == d).mean() for d in range(10)])


def run_mode(mode: str, args, ds, classifier) -> dict:
    options = {**args.option, "d_cond": mode, "embed_dim": args.embed_dim}
    cfg = TrainConfig.make(plugin="conditional", arch=args.arch, batch_size=args.batch, steps=10**9,
                      lr_g=args.lr, lr_d=args.lr, beta1=args.beta1, beta2=args.beta2, ema=args.ema,
                      g_hidden=args.g_hidden, d_hidden=args.d_hidden, d_dropout=args.d_dropout,
                      loss=args.loss, seed=args.seed, device=args.device, log_every=args.log_every,
                      sample_every=10**9, checkpoint_every=10**9, options=options).validate()
    curve: list[dict] = []
    state = {"train_s": 0.0, "last": None, "next_eval": args.eval_every}

    class Budget(Callbacks):
        def on_log(self, row):
            now = time.perf_counter()
            state["train_s"] += now - state["last"]
            if state["train_s"] >= state["next_eval"] or state["train_s"] >= args.budget:
                acc = digit_accuracy(trainer, classifier, args.per_digit)
                curve.append({"train_s": round(state["train_s"], 1), "step": row["step"],
                              "mean": float(acc.mean()), "min": float(acc.min()), "per_digit": acc.tolist()})
                print(f"  {mode:10s} {state['train_s']:6.0f}s step {row['step']:6d}  "
                      f"mean {acc.mean():.4f}  min {acc.min():.4f}", file=sys.stderr, flush=True)
                state["next_eval"] += args.eval_every
                if args.json:  # so far, in case the run is cut short
                    args.json.write_text(json.dumps({"partial": mode, "curve": curve}))
            if state["train_s"] >= args.budget:
                raise _BudgetSpent
            state["last"] = time.perf_counter()  # evaluation time does not count

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, load_plugin("conditional"), ds.images, ds.labels, Path(tmp) / "run",
                          dataset_name=ds.name, callbacks=Budget())
        state["last"] = time.perf_counter()
        try:
            trainer.run()
        except _BudgetSpent:
            pass
    final = curve[-1]
    return {"mode": mode, "steps": final["step"], "train_s": final["train_s"],
            "steps_per_s": final["step"] / final["train_s"], "mean": final["mean"], "min": final["min"],
            "per_digit": final["per_digit"], "curve": curve}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="projection,concat,acgan")
    ap.add_argument("--budget", type=float, default=180.0, help="training seconds per mode")
    ap.add_argument("--eval-every", type=float, default=60.0, help="training seconds between evaluations")
    ap.add_argument("--per-digit", type=int, default=500, help="images per digit per evaluation")
    ap.add_argument("--arch", default="mlp")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--beta1", type=float, default=0.5)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--loss", default="bce")
    ap.add_argument("--g-hidden", default="256,512,1024")
    ap.add_argument("--d-hidden", default="1024,512,256")
    ap.add_argument("--d-dropout", type=float, default=0.3)
    ap.add_argument("--embed-dim", type=int, default=32)
    ap.add_argument("--option", action="append", default=[], help="extra plugin option key=value (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--log-every", type=int, default=25, help="steps between budget checks")
    ap.add_argument("--classifier", default="auto", help="auto, shipped, quick, or an ONNX file")
    ap.add_argument("--classifier-epochs", type=int, default=4)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gankit-compare")
    ap.add_argument("--data", default=shared_mnist(), help="MNIST IDX folder (default: %(default)s)")
    ap.add_argument("--json", type=Path, help="write all numbers (with accuracy curves) here")
    args = ap.parse_args()
    args.g_hidden = parse_int_list(args.g_hidden, "--g-hidden")
    args.d_hidden = parse_int_list(args.d_hidden, "--d-hidden")
    args.option = parse_options(args.option)
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset(args.data, "train", allow_download=False)
    classifier, which = get_classifier(args, ds)
    results = [run_mode(mode, args, ds, classifier) for mode in args.modes.split(",")]

    print(f"\nConditional GAN, discriminator conditioning compared: {args.budget:.0f}s of training each, "
          f"{args.arch} {','.join(map(str, args.g_hidden))} / {','.join(map(str, args.d_hidden))}, "
          f"batch {args.batch}, lr {args.lr:g}, betas ({args.beta1:g}, {args.beta2:g}), EMA {args.ema:g}, "
          f"embed_dim {args.embed_dim}, {args.device} x {torch.get_num_threads()} threads; classifier: {which}; "
          f"{args.per_digit} images per digit\n")
    print("| d_cond | steps | steps/s | mean digit acc | worst digit | " + " | ".join(str(d) for d in range(10)) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * 10)
    for r in results:
        print(f"| {r['mode']} | {r['steps']} | {r['steps_per_s']:.1f} | {r['mean']:.2%} | {r['min']:.2%} | "
              + " | ".join(f"{a:.1%}" for a in r["per_digit"]) + " |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "classifier": which,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
