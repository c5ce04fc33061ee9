"""``comclip sandbox``: train the sandbox CLIP, check it, export its minimal pairs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from comclip.cli.options import SANDBOX_TASKS_HELP, count
from comclip.errors import InputError


def train(args: argparse.Namespace) -> int:
    from comclip.sandbox.training import TrainingConfig, train_sandbox_model

    out = Path(args.out)
    if (out / "model.safetensors").exists() and not args.overwrite:
        raise InputError(f"{out} already holds a model: pass --overwrite or choose another --out")
    if not 0.0 <= args.pixel_share <= 1.0:
        raise InputError(f"--pixel-share is a share of each batch, from 0 to 1; got {args.pixel_share}")
    training = TrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        warmup_steps=min(TrainingConfig.warmup_steps, max(1, args.steps // 10)),
        shuffle_words=args.shuffle_words,
        pixel_share=args.pixel_share,
        init=args.init,
    )
    train_sandbox_model(out, training, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.evaluate:
        from comclip.jsonfile import write_whole
        from comclip.sandbox.quality import model_quality

        quality = model_quality(str(out), seed=args.seed + 1000)
        write_whole(out / "quality.json", json.dumps(quality, indent=2))
        print(json.dumps(quality, indent=2))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def quality(args: argparse.Namespace) -> int:
    from comclip.sandbox.quality import model_quality

    print(json.dumps(model_quality(args.model, seed=args.seed, n=args.n), indent=2))
    return 0


def pairs(args: argparse.Namespace) -> int:
    from comclip.sandbox.dataset import parse_tasks
    from comclip.sandbox.pairs import export_pairs

    written = export_pairs(parse_tasks(args.task), args.seed, args.n, args.out)
    print(f"wrote {written} pairs to {args.out}", file=sys.stderr)
    return 0


#: The command's name and its line in ``comclip --help``.
NAME, HELP = "sandbox", "the compositional sandbox: train its CLIP, check it, export its minimal pairs"


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP)
    commands = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    commands.required = True

    t = commands.add_parser("train", help="train the sandbox CLIP from scratch on CPU (about 40 minutes on 2 cores)")
    t.add_argument("--out", required=True, help="model directory to write")
    t.add_argument("--steps", type=int, default=2400, help="optimiser steps (default: 2400)")
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=count(0), default=0)
    t.add_argument(
        "--shuffle-words",
        action="store_true",
        help="train on captions with their words shuffled: a bag-of-words CLIP (comclip/sandbox-bow)",
    )
    t.add_argument(
        "--pixel-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of each batch showing depth ('in front of', 'behind') or a pointer ('points at'), "
        "crowded in half of them (default 0: the grammar the shipped models learned)",
    )
    t.add_argument(
        "--init",
        default=None,
        metavar="MODEL",
        help="continue training from this sandbox model (a directory or comclip/sandbox, comclip/sandbox-bow): "
        "its words keep their embeddings, new words of the grammar start fresh (default: from scratch)",
    )
    t.add_argument("--evaluate", action="store_true", help="measure held-out recall and substitution accuracy after training")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=train)

    q = commands.add_parser("quality", help="held-out R@1 among 100 and single-word substitution accuracy of a model")
    q.add_argument("--model", "-m", default="comclip/sandbox")
    q.add_argument(
        "--seed", type=count(0), default=1000, help="seed of the held-out scenes (default: 1000, never used in training)"
    )
    q.add_argument("--n", type=int, default=1000, help="held-out scenes (default: 1000, in galleries of 100)")
    q.set_defaults(func=quality)

    e = commands.add_parser("pairs", help="write minimal pairs as PNG images plus pairs.jsonl (captions, true boxes)")
    e.add_argument("--task", default=None, help=SANDBOX_TASKS_HELP)
    e.add_argument("--seed", type=count(0), default=0)
    e.add_argument("--n", type=int, default=10)
    e.add_argument("--out", default="sandbox-pairs")
    e.set_defaults(func=pairs)
