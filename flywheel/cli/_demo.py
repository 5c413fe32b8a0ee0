"""`flywheel simulate` (load generator against a running gateway) and `flywheel demo`."""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flywheel.demo.config import DemoConfig
from flywheel.settings import FlywheelSettings
from flywheel.sim import GatewayClient, Population, SimStats, Simulator, WallClock, shared_catalogue
from flywheel.wiring import make_bus
from schemas import FlywheelError
from streams import ChatEventProducer


class Recipe(enum.StrEnum):
    """`flywheel demo --recipe` (DemoConfig.recipe)."""

    auto = "auto"
    sft = "sft"
    dpo = "dpo"
    grpo = "grpo"


class DemoEngine(enum.StrEnum):
    """`flywheel demo --engine` (DemoConfig.engine)."""

    embedded = "embedded"
    vllm = "vllm"


def _summary(stats: SimStats) -> list[str]:
    lines = [
        f"{'model version':<28} {'replies':>8} {'continue':>9} {'IF':>6} {'viol.':>6} {'depth':>6} {'regen':>6} "
        f"{'words':>6} {'ms':>6}"
    ]
    for version, v in sorted(stats.by_version.items()):
        lines.append(
            f"{version:<28} {v.replies:>8} {v.continue_rate:>9.3f} {v.instruction_following_rate:>6.3f} "
            f"{v.violation_rate:>6.3f} {v.mean_depth:>6.2f} {v.regenerations:>6} {v.mean_reply_words:>6.1f} "
            f"{v.mean_latency_ms:>6.0f}"
        )
    lines.append(
        f"requests {stats.requests}, errors {stats.errors}, sessions {stats.sessions_started}, "
        f"client events sent {stats.events_emitted}, visits per day {dict(sorted(stats.visits_by_day.items()))}"
    )
    return lines


def simulate(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="Base URL of a Flywheel gateway (its OpenAI API is under /v1).")],
    users: Annotated[
        int | None, typer.Option("--users", help="Simulated users (default: settings demo.simulator.users).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="Simulated days to run.")] = 1,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the population and every decision.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Most requests in flight.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Public model name to ask for.")] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(
            "--time-scale",
            min=0.001,
            help="Simulated seconds per real second (think times, daily peak); the gateway stamps real time.",
        ),
    ] = None,
    api_key: Annotated[str, typer.Option("--api-key", help="Bearer token for the gateway, if it wants one.")] = "sim",
    events: Annotated[
        bool,
        typer.Option(
            "--events/--no-events",
            help="Send the client-side chat events (feedback, session ends) to chat.events on the configured bus.",
        ),
    ] = True,
) -> None:
    """Drive a running deployment with simulated users (a load generator and event producer).

    Users open conversations with the catalogue's characters and topics, talk through the
    gateway's OpenAI-compatible API, and continue, regenerate, rate, report or leave
    depending on what the model says; feedback and session ends go to chat.events.
    """
    settings: FlywheelSettings = ctx.obj
    base = settings.demo.simulator
    overrides = {
        k: v
        for k, v in {
            "users": users,
            "seed": seed,
            "concurrency": concurrency,
            "model": model,
            "time_scale": time_scale,
        }.items()
        if v is not None
    }
    config = base.model_copy(update=overrides)
    population = Population.generate(config.users, config.seed, shared_catalogue())
    client = GatewayClient(
        url, model=config.model, api_key=api_key, timeout_s=config.request_timeout_s, max_tokens=config.max_tokens
    )
    producer = make_bus(settings).producer() if events else None
    chat_events = ChatEventProducer(producer, settings.topics.chat_events, settings.limits) if producer else None
    sim = Simulator(config, population, client, chat_events, WallClock(config.time_scale))

    async def run() -> SimStats:
        try:
            for _ in range(days):
                stats = await sim.run(days=1)
                v = sum(s.replies for s in stats.by_version.values())
                typer.echo(
                    f"day {sim.day + 1}/{days}: visits {stats.visits_by_day.get(sim.day, 0)}, replies so far {v}, "
                    f"errors {stats.errors}",
                    err=True,
                )
            return sim.stats
        finally:
            await client.aclose()

    stats = asyncio.run(run())
    if chat_events is not None:
        chat_events.flush()
    for line in _summary(stats):
        typer.echo(line)
    if stats.requests and stats.errors == stats.requests:
        typer.echo(f"error: every request to {url} failed", err=True)
        raise typer.Exit(1)


def demo(
    ctx: typer.Context,
    generations: Annotated[
        int | None, typer.Option("--generations", "-n", min=1, help="Candidate generations to decide.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Folder for report.json and report.png (default report/).")
    ] = None,
    kafka: Annotated[
        bool, typer.Option("--kafka", help="Run on the local Kafka broker and Redis instead of the embedded bus.")
    ] = False,
    users: Annotated[int | None, typer.Option("--users", min=1, help="Simulated users.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the simulated population.")] = None,
    plant_bad: Annotated[
        int | None,
        typer.Option(
            "--plant-bad",
            min=1,
            help="Train this generation on deliberately corrupted preferences; the gate or the canary must stop it.",
        ),
    ] = None,
    plant_hack: Annotated[
        int | None,
        typer.Option(
            "--plant-hack",
            min=1,
            help="Train this generation by over-optimising a reward model that rewards emoji and stock "
            "questions; the style-drift guard or the canary must stop it.",
        ),
    ] = None,
    engine: Annotated[
        DemoEngine | None,
        typer.Option(
            "--engine",
            help="embedded: transformers in this process (default); vllm: the local vLLM server "
            '(deploy/local/vllm.sh start "$(flywheel trainers bootstrap --path-only)"), with LoRA generations.',
        ),
    ] = None,
    vllm_url: Annotated[
        str | None, typer.Option("--vllm-url", help="Base URL of that vLLM server (default http://127.0.0.1:18000).")
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare",
            help="Comma-separated recipes, e.g. sft,auto: run the demo once per recipe (same world, seed and "
            "budget), one after the other, and write compare.json and compare.png with every learning curve.",
        ),
    ] = None,
    recipe: Annotated[
        Recipe | None,
        typer.Option(
            "--recipe",
            help="Policy recipe of every generation: sft (rejection sampling), dpo (online DPO), grpo, "
            "or auto (the default recipe, today sft).",
        ),
    ] = None,
) -> None:
    """Run the whole loop in one process: simulated users talk to the gateway, signals and
    curation turn traffic into samples, the trainer worker trains and gates each
    generation, the canary promotes or rolls it back. Prints a table per generation and
    writes report.json and report.png."""
    from flywheel.demo.orchestrator import run_demo

    settings: FlywheelSettings = ctx.obj
    config = settings.demo
    updates: dict[str, object] = {
        k: v
        for k, v in {
            "generations": generations,
            "report_dir": report,
            "plant_bad_generation": plant_bad,
            "plant_hack_generation": plant_hack,
            "recipe": recipe.value if recipe is not None else None,
            "engine": engine.value if engine is not None else None,
            "vllm_url": vllm_url,
        }.items()
        if v is not None
    }
    sim_updates = {k: v for k, v in {"users": users, "seed": seed}.items() if v is not None}
    if sim_updates:
        updates["simulator"] = config.simulator.model_copy(update=sim_updates)
    config = config.model_copy(update=updates)
    try:
        if compare:
            _compare(compare, config, kafka)
        else:
            run_demo(settings, config, kafka=kafka)
    except FlywheelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # The report is written and every component stopped; native worker threads left by
    # torch can abort interpreter teardown ("terminate called without an active
    # exception"), which would turn a finished demo into exit status 134.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _compare(recipes: str, config: DemoConfig, kafka: bool) -> None:
    from flywheel.demo.compare import render_compare, run_compare

    names = tuple(r.strip() for r in recipes.split(",") if r.strip())
    unknown = [r for r in names if r not in {x.value for x in Recipe}]
    if len(names) < 2 or unknown:
        raise typer.BadParameter(
            f"--compare wants two or more of {', '.join(x.value for x in Recipe)}; got {recipes!r}"
        )
    report = run_compare(names, config, kafka=kafka)
    print(render_compare(report))
    print(f"comparison: {config.report_dir / 'compare.json'} {config.report_dir / 'compare.png'}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("demo")(demo)
