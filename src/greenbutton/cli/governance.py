"""``greenbutton`` governance commands: propose, approve, reject, override, requests, user,
token, grant, policy, audit. Parse, call the API (or the store, for ``audit verify``), print."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..governance.tokens import read_token_file
from ..store.governance_records import STATUSES
from .commands import Commands

if TYPE_CHECKING:  # httpx is imported by the commands that call the API, not by every command
    from ..governance.client import GovernanceClient


def local_token(settings: Settings) -> str | None:
    """``GREENBUTTON_TOKEN``, else the token file the first ``greenbutton up`` wrote."""
    return settings.token or read_token_file(settings.home)


def client(settings: Settings) -> GovernanceClient:
    """A client of the control plane with this machine's token."""
    from ..governance.client import GovernanceClient

    assert settings.server.url is not None
    return GovernanceClient(settings.server.url, token=local_token(settings))


def add_commands(sub: Commands) -> None:
    """Register the governance commands on the top-level subparsers."""
    propose = sub.add_parser("propose", help="request a promotion; gates run at once")
    propose.add_argument("model")
    propose.add_argument("version", help="number, 'latest', 'staging' or 'production'")
    propose.add_argument("--stage", default="Production", type=str.capitalize,
                         choices=["Production", "Staging"])
    propose.add_argument("--reason")
    propose.set_defaults(command=_propose)
    for name, text in (("approve", "approve a request (not your own, with four-eyes)"),
                       ("reject", "reject a request"),
                       ("override", "approve despite failed gates (needs manage + --reason)")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("request_id", type=int)
        cmd.add_argument("--reason", required=name == "override")
        cmd.set_defaults(command=_decide, decision=name)
    requests = sub.add_parser("requests", help="transition requests and their gate results")
    requests.add_argument("--model")
    requests.add_argument("--status", choices=STATUSES)
    requests.add_argument("--json", action="store_true")
    requests.set_defaults(command=_requests)

    user = sub.add_parser("user", help="create or list users and service accounts (admin)")
    user.add_argument("action", choices=["create", "list"])
    user.add_argument("name", nargs="?")
    user.add_argument("--role", default="viewer",
                      choices=["viewer", "data-scientist", "maintainer", "admin"])
    user.add_argument("--service", action="store_true", help="a service account")
    user.set_defaults(command=_user)

    token = sub.add_parser("token", help="create (shown once), list or revoke API tokens")
    token.add_argument("action", choices=["create", "list", "revoke"])
    token.add_argument("subject", nargs="?", help="principal (create/list) or token id")
    token.add_argument("--label", default="")
    token.set_defaults(command=_token)

    grant = sub.add_parser("grant", help="grant or revoke a per-model permission")
    grant.add_argument("principal")
    grant.add_argument("model")
    grant.add_argument("permission",
                       choices=["read", "propose", "approve", "deploy", "invoke", "manage"])
    grant.add_argument("--revoke", action="store_true")
    grant.set_defaults(command=_grant)

    policy = sub.add_parser("policy", help="four-eyes approval on/off for a model")
    policy.add_argument("model")
    policy.add_argument("four_eyes", choices=["on", "off"])
    policy.set_defaults(command=_policy)

    audit = sub.add_parser(
        "audit", help="'verify' the audit log (chain, seal, anchors) or print the 'log'",
        description="verify: checks every entry's hash and link, its seal (HMAC with the "
        "audit key, when this machine can read it) and that the log still reaches the head "
        "anchored in <key>.head and given with --head (an earlier 'audit head SEQ:HASH' line "
        "of the control plane's log, or a value kept elsewhere). Exit 0 intact, 1 broken.")
    audit.add_argument("action", choices=["verify", "log"])
    audit.add_argument("--after", type=int, default=0)
    audit.add_argument("--head", action="append", default=[], metavar="SEQ:HASH",
                       help="a head the log must still reach, unchanged (repeatable)")
    audit.add_argument("--remote", action="store_true",
                       help="ask the control plane instead of reading the store directly")
    audit.set_defaults(command=_audit)


def _print_request(request: dict[str, Any]) -> None:
    print(f"request #{request['id']}: {request['model']} v{request['version']} -> "
          f"{request['to_stage']} [{request['status']}] proposed by {request['proposer']}")
    for gate in request.get("gates", []):
        verdict = "pass" if gate["is_passed"] else "FAIL"
        reason = gate["detail"].get("reason", "")
        print(f"  {verdict}  {gate['gate']}  {reason}".rstrip())


def _propose(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        request = api.propose(args.model, args.version, args.stage, args.reason)
    _print_request(request)
    return 0 if request["status"] == "pending" else 1


def _decide(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        done = api.decide(args.request_id, args.decision, args.reason)
    _print_request(done["request"])
    for t in done["transitions"]:
        print(f"{t['model']} v{t['version']}: {t['from_stage']} -> {t['to_stage']}")
    return 0


def _requests(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        found = api.requests(args.model, args.status)
    if args.json:
        print(json.dumps(found, indent=2))
    for request in [] if args.json else found:
        _print_request(request)
    return 0


def _user(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        if args.action == "list":
            for p in api.principals():
                print(f"{p['name']}  {p['kind']}  {p['role']}")
            return 0
        if not args.name:
            raise SystemExit("user create needs a name")
        made = api.create_principal(args.name, args.role, "service" if args.service else "user")
        print(f"created {made['kind']} {made['name']!r} ({made['role']})")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        if args.action == "create":
            issued = api.create_token(args.subject or api.whoami()["name"], args.label)
            print(f"token {issued['token_id']} for {issued['principal']} "
                  f"(expires {issued['expires_at']}); shown once:\n{issued['token']}")
        elif args.action == "revoke":
            api.revoke_token(args.subject or "")
            print(f"revoked {args.subject}")
        else:
            for t in api.tokens(args.subject):
                print(f"{t['token_id']}  {t['principal']}  {t['label']}  "
                      f"expires={t['expires_at']}  revoked={t['revoked_at']}")
    return 0


def _grant(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        api.grant(args.principal, args.model, args.permission, is_granted=not args.revoke)
        is_checked = args.permission != "invoke" or api.health()["endpoint_auth"]
    verb = "revoked from" if args.revoke else "granted to"
    print(f"{args.permission} on {args.model!r} {verb} {args.principal!r}")
    if not is_checked:
        print("warning: endpoint auth is off on this control plane (it listens on loopback "
              "only): anyone who can reach the endpoints invokes them, with or without this "
              "grant; set GREENBUTTON_AUTH__IS_ENDPOINT_AUTH_ENABLED=true", file=sys.stderr)
    return 0


def _policy(settings: Settings, args: argparse.Namespace) -> int:
    with client(settings) as api:
        api.set_four_eyes(args.model, args.four_eyes == "on")
    print(f"four-eyes {args.four_eyes} for {args.model!r}")
    return 0


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.remote or args.action == "log":
        with client(settings) as api:
            if args.action == "log":
                for e in api.audit(after=args.after):
                    print(f"{e['seq']}  {e['at']}  {e['actor']}  {e['action']}  {e['target']}  "
                          f"{e['after']}")
                return 0
            report = api.audit_verify(args.head)
    else:
        report = _verify_locally(settings, args.head)
    sealed = "sealed" if report["is_sealed"] else "NOT checked against the audit key"
    anchors = f"; anchors: {', '.join(report['anchors'])}" if report["anchors"] else ""
    if report["broken_seq"] is None:
        print(f"audit log intact: {report['checked']} entries, {sealed}{anchors}")
        return 0
    print(f"audit log BROKEN at entry {report['broken_seq']}: {report['problem']}")
    return 1


def _verify_locally(settings: Settings, heads: list[str]) -> dict[str, Any]:
    from ..governance.audit import verify_chain
    from ..store.audit_seal import Anchor, AuditSeal
    from ..store.governance_sql import open_governance_store

    anchors = [Anchor.parse(head, "--head") for head in heads]
    seal = None
    key_file = settings.auth.audit_key_file
    if key_file is not None and os.access(key_file, os.R_OK):
        seal = AuditSeal.open(key_file)
        anchors += seal.anchors()
    store = open_governance_store(settings.store.uri, migrate=False)
    try:
        return dataclasses.asdict(verify_chain(store, seal=seal, anchors=anchors))
    finally:
        store.close()
