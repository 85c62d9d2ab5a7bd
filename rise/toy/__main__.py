"""`python -m rise.toy <command>`: the toy world's stage entries (until `rise` carries them).

  pretrain clip|sam2|policy   train one model from scratch where presets.<preset>.models names it,
                              with its held-out report beside it (<model>.report.json)
  prepare-data NAME...        write the manifests of datasets with `loader: toy`
  measure --root DIR --seeds 0,1,2 --variants A,B [--learning-rate X --steps N --temperature T
          --set KEY=VALUE ...]    GRPO variants through train, predict and evaluate, each seed in
                              DIR/seed-N (rise/toy/measure.py); prints one record per run, then
                              the mean and standard deviation over seeds per variant
  claim TABLE [--margin 2]    do the R_sem rows of a toy table beat Format-only and the base by more
                              than `margin` seed standard deviations? (rise/toy/claim.py; exit 1 if not)
Errors a user can fix print as one line naming the file or setting, with exit code 2.
"""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rise.toy", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default="toy")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="one pretraining stage and its held-out report")
    p.add_argument("stage", choices=["clip", "sam2", "policy"])
    p = sub.add_parser("prepare-data", help="manifests of toy datasets")
    p.add_argument("datasets", nargs="+")
    p = sub.add_parser("measure", help="GRPO variants through the real stages, one seed, in their own run folder")
    p.add_argument("--root", required=True)
    p.add_argument("--seeds", default="0", help="GRPO seeds, comma-separated; each runs in ROOT/seed-N")
    p.add_argument("--variants", required=True)
    p.add_argument("--eval-set", default="reasonseg_test")
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--steps", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any train setting for these runs, the value read as YAML (e.g. --set beta=0)")
    p = sub.add_parser("rank-rewards", help="whether R_sem ranks a policy's right answers first in its groups")
    p.add_argument("policy", help="a policy folder: the pretrained base or a GRPO checkpoint")
    p.add_argument("--prompts", type=int, default=48, help="prompts per family")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("compare-updates", help="GRPO's update against a supervised one on a batch's right answers")
    p.add_argument("policy", help="a policy folder: the pretrained base or a GRPO checkpoint")
    p.add_argument("--prompts", type=int, default=4, help="prompts per family (classname, shape)")
    p.add_argument("--steps", default="1,3,10", help="after which update steps to report, comma-separated")
    p.add_argument("--updates", default="grpo,supervised_on_hits",
                   help="comma-separated, of grpo, grpo_kl, grpo_positive, supervised_on_hits")
    p.add_argument("--kl-beta", type=float, default=0.04, help="the KL coefficient of grpo_kl")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("claim", help="check a toy table against the paper's claim")
    p.add_argument("table")
    p.add_argument("--metric", default="gIoU", choices=["gIoU", "cIoU"])
    p.add_argument("--margin", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from rise.config import load_settings
    from rise.errors import RiseError
    from rise.data import prepare_dataset
    from rise.toy.pipeline import pretrain

    try:
        settings = load_settings(args.params, preset=args.preset)
        if args.command == "pretrain":
            print(pretrain(settings, args.stage))
        elif args.command == "claim":
            from rise.toy.claim import check_claim, report

            records = check_claim(args.table, settings.variants, args.metric, args.margin)
            print(report(records, args.metric, args.margin))
            return 0 if all(r["met"] for r in records) else 1
        elif args.command == "rank-rewards":
            import json

            from rise.toy.measure import reward_ranking

            print(json.dumps(reward_ranking(settings, args.policy, n_prompts=args.prompts, seed=args.seed), indent=1))
        elif args.command == "compare-updates":
            import json

            from rise.toy.measure import update_comparison

            try:
                steps = tuple(int(x) for x in args.steps.split(","))
            except ValueError:
                raise RiseError(f"--steps {args.steps}: expected whole numbers separated by commas") from None
            print(json.dumps(update_comparison(settings, args.policy, n_prompts=args.prompts, steps=steps,
                                               seed=args.seed, updates=tuple(args.updates.split(",")),
                                               kl_beta=args.kl_beta), indent=1))
        elif args.command == "measure":
            import json
            from pathlib import Path

            from rise.config import typed_value
            from rise.toy.measure import measure, summarise

            chosen = {"learning_rate": args.learning_rate, "max_steps": args.steps, "temperature": args.temperature}
            for item in args.set:
                key, sep, value = item.partition("=")
                if not sep:
                    raise RiseError(f"--set {item}: expected KEY=VALUE (a train setting)")
                chosen[key] = typed_value(value)
            records = []
            try:
                seeds = [int(s) for s in args.seeds.split(",")]
            except ValueError:
                raise RiseError(f"--seeds {args.seeds}: expected whole numbers separated by commas") from None
            for seed in seeds:
                for record in measure(args.params, Path(args.root) / f"seed-{seed}", seed, args.variants.split(","),
                                      preset=args.preset, eval_set=args.eval_set,
                                      overrides={k: v for k, v in chosen.items() if v is not None}):
                    print(json.dumps(record), flush=True)
                    records.append(record)
            for row in summarise(records):
                print(json.dumps({"summary": row}))
        else:
            for name in args.datasets:
                if name not in settings.datasets:
                    raise RiseError(f"dataset '{name}' is not defined under presets.{settings.preset}.datasets")
                print(prepare_dataset(settings, name))
    except RiseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
