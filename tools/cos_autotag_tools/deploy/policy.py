"""`cos-autotag policy`: the least-privilege CAM policy for one deployment, as JSON on stdout.

    cos-autotag policy --mode tags --bucket examplebucket-1250000000 --region ap-guangzhou \
        --appid 1250000000 [--prefix uploads/] [--redis] > policy.json
    cos-autotag policy --trust > trust.json     # the role's trust relationship with SCF
    cos-autotag policy --trust --trust-account 100000000001 > trust.json   # ...and your account

stdout carries only the JSON, so it can be redirected into a file or `tccli`; what each
action is for goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from ..command import EXIT_OK, EXIT_USAGE, FlagError, command
from . import cam


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cos-autotag policy",
        description="Print the execution role's least-privilege CAM policy (or its trust policy) as JSON.",
    )
    parser.add_argument("--mode", choices=cam.MODES, help="the function's AUTOTAG_MODE")
    parser.add_argument("--bucket", help="the trigger's bucket, <name>-<appid>")
    parser.add_argument("--region", help="the bucket's region, e.g. ap-guangzhou")
    parser.add_argument("--appid", help="your APPID (the number the bucket name ends with)")
    parser.add_argument("--prefix", default="", help="the trigger's key prefix: scope the grants to it")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="the function uses AUTOTAG_IDEMPOTENCY_REDIS_URL (Redis is reached over the VPC: no CAM action)",
    )
    parser.add_argument(
        "--trust", action="store_true", help="print the trust policy (principal scf.qcloud.com) instead"
    )
    parser.add_argument(
        "--trust-account",
        metavar="UIN",
        help="with --trust: also let this account (your own account ID) assume the role, to check the "
        "role's keys with `tccli sts AssumeRole` (docs/deploy.md); remove it after the check",
    )
    return parser


def _policy(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.trust_account and not args.trust:
        raise FlagError("--trust-account goes with --trust")
    if args.trust:
        try:
            print(json.dumps(cam.trust_policy(args.trust_account), indent=2))
        except ValueError as error:
            raise FlagError(str(error)) from error
        return EXIT_OK
    missing = [f"--{name}" for name in ("mode", "bucket", "region", "appid") if not getattr(args, name)]
    if missing:
        raise FlagError(f"missing {', '.join(missing)} (or pass --trust for the trust policy)")
    problems = cam.deployment_problems(args.bucket, args.region, args.appid, args.prefix)
    if problems:
        for problem in problems:
            print(f"cos-autotag policy: {problem}", file=sys.stderr)
        return EXIT_USAGE
    actions = cam.MODE_ACTIONS[args.mode]
    policy = cam.role_policy(actions, args.bucket, args.region, args.appid, args.prefix)
    print(json.dumps(policy, indent=2))
    print(f"# {args.mode} mode needs:", file=sys.stderr)
    for action in sorted(actions):
        print(f"#   {action}: {cam.ACTION_PURPOSE[action]}", file=sys.stderr)
    if args.redis:
        print(
            "# --redis: Redis is reached over the network, not through CAM: put the function in the "
            "Redis instance's VPC (SCF console: Function configuration > Network); the role needs nothing more.",
            file=sys.stderr,
        )
    print("# Trust policy of the role: cos-autotag policy --trust", file=sys.stderr)
    return EXIT_OK


run_policy = command(_parser, _policy)
