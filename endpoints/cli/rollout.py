"""``endpoints rollout ENDPOINT DEPLOYMENT``: mirror, traffic steps, guard metrics, automatic rollback.

endpoints rollout ENDPOINT_DIR DEPLOYMENT [--steps 10,25,50,100] [--bake 60s] [--mirror 10]
    [--max-error-rate 0.01|+0.01] [--max-p99-ms 500|+50] [--min-requests 10] [--json]
endpoints rollout ENDPOINT DEPLOYMENT --stack dev ...   (a Pulumi stack: Prometheus + Automation API)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from endpoints.errors import SpecError
from endpoints.rollout.plan import Guards, RolloutError, build_plan, parse_duration, parse_limit, parse_steps
from endpoints.rollout.window import Snapshot

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fmt(snap: Snapshot) -> str:
    rate, p99 = snap.error_rate, snap.quantile_ms()
    return (
        f"{int(snap.requests)} req, errors {'-' if rate is None else f'{rate:.1%}'},"
        f" p99 {'-' if p99 is None else f'{p99:.0f} ms'}"
    )


def _describe(event: dict[str, Any]) -> str:
    kind = event["event"]
    if kind == "start":
        return (
            f"rollout of {event['challenger']} (champion {', '.join(event['champions'])}): traffic {event['traffic']}"
        )
    if kind == "mirror":
        return f"mirror phase: copies {event['mirror']}, traffic {event['traffic']}"
    if kind == "step":
        return f"step {event['percent']}%: traffic {event['traffic']}"
    if kind == "passed":
        c = event["challenger"]
        return (
            f"  {event['phase']} passed: challenger {c['requests']} req,"
            f" error rate {c['error_rate']}, p99 {c['p99_ms']} ms"
        )
    if kind == "breach":
        return f"[red]  breach in {event['phase']}: {escape(event['reason'])}[/red]"
    if kind == "refused":
        return f"[red]  {event['phase']} refused: {escape(event['reason'])}[/red]"
    if kind == "rollback":
        return f"[red]rolled back to traffic {event['traffic']}[/red]"
    if kind == "done":
        return f"[green]done: {event['written']}[/green]"
    return json.dumps(event)


def register(app: typer.Typer) -> None:
    """Add ``rollout`` to the ``endpoints`` command."""

    @app.command("rollout")
    def rollout(
        endpoint: Annotated[
            str, typer.Argument(help="Local endpoint folder (as `local up` takes it), or a name with --stack.")
        ],
        deployment: Annotated[str, typer.Argument(help="The challenger deployment to roll out.")],
        steps: Annotated[
            str, typer.Option("--steps", help="Challenger's share per step, ending at 100.")
        ] = "10,25,50,100",
        bake: Annotated[str, typer.Option("--bake", help="How long each step is held and watched (30s, 2m).")] = "60s",
        mirror: Annotated[
            int, typer.Option("--mirror", help="Mirror this percent of live traffic to the challenger first (0: skip).")
        ] = 0,
        max_error_rate: Annotated[
            str,
            typer.Option(
                "--max-error-rate",
                help="Largest failed share, 5xx and 424 (0.01 or 1%); +0.01: the champion's plus 0.01.",
            ),
        ] = "0.01",
        max_p99_ms: Annotated[
            str | None,
            typer.Option("--max-p99-ms", help="Largest p99 latency in ms; +50: the champion's p99 plus 50 ms."),
        ] = None,
        min_requests: Annotated[
            int,
            typer.Option("--min-requests", min=1, help="Requests the challenger must answer per step to be judged."),
        ] = 10,
        endpoint_file: Annotated[str, typer.Option("--endpoint-file", help="Endpoint file inside the folder.")] = (
            "endpoint.yml"
        ),
        stack: Annotated[str | None, typer.Option("--stack", help="Roll out on this Pulumi stack instead.")] = None,
        prometheus: Annotated[
            str, typer.Option("--prometheus", help="Prometheus base URL read with --stack.")
        ] = "http://127.0.0.1:9090",
        state_dir: Annotated[
            Path | None,
            typer.Option("--state-dir", help="Local state folder (default $ENDPOINTS_STATE_DIR or ./.endpoints)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the timeline as JSON on stdout.")] = False,
    ) -> None:
        """Shift traffic to DEPLOYMENT step by step, watching guard metrics; roll back at the first breach."""
        try:
            guards = Guards(
                max_error_rate=parse_limit(max_error_rate, "--max-error-rate", fraction=True),
                max_p99_ms=None if max_p99_ms is None else parse_limit(max_p99_ms, "--max-p99-ms"),
                min_requests=min_requests,
            )
            step_list = parse_steps(steps)
            bake_s = parse_duration(bake)
        except RolloutError as e:
            raise typer.BadParameter(str(e)) from e

        from endpoints.rollout.engine import Rollout

        target: Any
        try:
            if stack is not None:
                from endpoints.rollout.stack import StackTarget

                target = StackTarget.open(Path.cwd(), stack, endpoint, prometheus, bake_s)
                where = f"stack {stack}: endpoint {endpoint}"
            else:
                from endpoints.local.state import state_root
                from endpoints.project import load_endpoint_project
                from endpoints.rollout.local import LocalTarget

                project = load_endpoint_project(endpoint, endpoint_file)
                target = LocalTarget.open(Path(endpoint), project.endpoint.name, state_root(state_dir))
                where = f"endpoint {project.endpoint.name}"
            plan = build_plan(
                deployment,
                target.deployments,
                target.traffic,
                target.mirror,
                steps=step_list,
                bake_s=bake_s,
                mirror_percent=mirror,
                guards=guards,
                where=where,
            )
        except (RolloutError, SpecError) as e:
            _err.print(f"error: {e}", markup=False)
            raise typer.Exit(code=2) from e

        status = _err.status("starting", spinner="dots")

        def on_poll(phase: str, challenger: Snapshot, champion: Snapshot, left: float) -> None:
            status.update(f"{phase}: challenger {_fmt(challenger)} | champion {_fmt(champion)} | {left:.0f}s left")

        with status:
            runner = Rollout(plan, target, on_event=lambda e: _err.print(_describe(e)), on_poll=on_poll)
            try:
                outcome = runner.run()
            except RolloutError as e:  # only the rollback can raise it: the step's own refusal is a reason
                _err.print(f"error: the rollback failed, the endpoint may be left mid-way: {e}", markup=False)
                raise typer.Exit(code=1) from e
            finally:
                target.close()
        if as_json:
            typer.echo(json.dumps(outcome.to_dict(), indent=2))
        if not outcome.ok:
            _err.print(f"rolled back: {outcome.reason}", markup=False)
            raise typer.Exit(code=1)
