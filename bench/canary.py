"""Canary statistics benchmark: simulated experiments with clustered users, decided by the
real analysis (``serving.canary.analyse`` / ``decide``) under the demo's canary settings
(α = 0.1, steps 20 % → 50 % → promote, 20 s burn-in, 150 replies per step, horizon
factor 0.6: about 860 candidate replies).

Traffic: 5 s signals windows; about 6.7 sessions start per second (the demo's 48
concurrent simulated users); each session is one user, assigned to the candidate with
the step's share. A user's continue probability varies from user to user (logit-normal),
so replies of one session are correlated. Scenarios:

- ``short``: the demo's sessions: the user continues until the first reply they do not
  continue, at most 6 turns;
- ``long``: the same with a 20-turn cap;
- ``correlated``: session length independent of the outcomes (1-10 turns), each reply
  continued with the user's probability, strongly varying between users.

Users who came before (70 %) have a pre-period of 1 + Poisson(5) baseline replies: its
shrunk continue rate is the CUPED covariate, as the signals processor computes it.

The step logic is the controller's (``CanaryController._apply``, ``Experiment.compare``):
windows overlapping a burn-in are left out for both arms, the sample-ratio check counts
the users assigned in the step's settled windows, an advance moves the share and restarts
the burn-in, promote / rollback / halt end the experiment, and the horizon ends it as
inconclusive. It is re-implemented here with running totals (one analysis per window,
as the controller's looks only change when a window arrives) because the controller
re-merges every window at each look.

Measured:
- ``aa_false_positive_rate`` per scenario: A/A runs ending in a promote, or in a rollback
  for a significant loss or a guardrail breach, with the share of each metric;
- ``srm_false_alarm_rate`` per scenario: A/A runs halted by the sample-ratio check;
- ``power`` at +5 pp on each reply's continue probability (``short`` scenario) and
  ``mean_replies_to_decision`` (candidate replies), sequential against a fixed-horizon
  z-test of the same level at the same horizon;
- ``srm_detection_rate``: runs halted when 10 % of the candidate's session starts are lost.

Runs on older builds too (counters they do not have are dropped), for before/after numbers.
The last line printed is one JSON object. Usage: python bench/canary.py [--runs N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas import LATENCY_BUCKETS_MS, WindowCounters  # noqa: E402
from serving.canary import ArmTotals, CanaryConfig, analyse, decide  # noqa: E402

WINDOW_S = 5.0
SESSIONS_PER_S = 6.7
WARM_UP_S = 60.0
GAP_S = 3.5  # reply to reply within a session (latency + think time)
P0 = 0.5
NB = len(LATENCY_BUCKETS_MS)
HAS = set(WindowCounters.counter_names())


def demo_config(**overrides: Any) -> CanaryConfig:
    fields: dict[str, Any] = {
        "steps_bp": (2000, 5000, 10_000),
        "alpha": 0.1,
        "min_samples_per_step": 150,
        "mde": {"continue_rate": 0.06, "depth": 0.3, "breadth": 0.03},
        "burn_in_s": 20.0,
        "horizon_factor": 0.6,
        "poll_interval_s": 0.5,
    }
    fields.update(overrides)
    return CanaryConfig(**{k: v for k, v in fields.items() if k in CanaryConfig.model_fields})


@dataclass(frozen=True)
class Scenario:
    name: str
    cap: int
    stop_on_miss: bool
    sigma: float
    """Spread of the users' continue logits."""


SCENARIOS = {
    "short": Scenario("short", 6, True, 1.0),
    "long": Scenario("long", 20, True, 1.0),
    "correlated": Scenario("correlated", 10, False, 1.5),
}


SCALARS = (
    "users_assigned",
    "users_engaged",
    "users_active",
    "responses",
    "continued",
    "violations",
    "instruction_following",
    "covariate_sum",
    "sessions",
    "user_turns",
    "user_turns_sq",
    "session_replies",
    "session_replies_sq",
    "session_continued",
    "session_continued_sq",
    "session_continued_x_replies",
    "session_violations",
    "session_violations_sq",
    "session_violations_x_replies",
    "session_instruction_following",
    "session_instruction_following_sq",
    "session_instruction_following_x_replies",
    "session_covariate",
    "session_covariate_sq",
    "session_covariate_x_replies",
    "session_covariate_x_continued",
)
LISTS = ("latency_buckets", "session_latency_tail", "session_latency_tail_sq", "session_latency_tail_x_replies")
F = {name: i for i, name in enumerate(SCALARS)}
FLOATS = {
    "covariate_sum",
    "session_covariate",
    "session_covariate_sq",
    "session_covariate_x_replies",
    "session_covariate_x_continued",
}
OFFSET = int(WARM_UP_S // WINDOW_S) + 2  # window index -OFFSET is row 0


class Windows:
    """Counter contributions per (window, arm) of one experiment, as arrays."""

    def __init__(self, max_windows: int) -> None:
        rows = max_windows + OFFSET + 40
        self.scalars = np.zeros((rows, 2, len(SCALARS)))
        self.lists = np.zeros((rows, 2, len(LISTS), NB))

    def add(self, w: np.ndarray, arm: np.ndarray, name: str, values: np.ndarray | float) -> None:
        np.add.at(self.scalars, (w + OFFSET, arm, F[name]), values)

    def totals(self, w: int, arm: int) -> tuple[ArmTotals, bool]:
        """The counters of one window and arm, and whether the arm published one."""
        row = self.scalars[w + OFFSET, arm]
        lists = self.lists[w + OFFSET, arm]
        present = bool(row.any())
        values: dict[str, Any] = {
            name: (float(v) if name in FLOATS else int(v)) for name, v in zip(SCALARS, row.tolist(), strict=True)
        }
        for i, name in enumerate(LISTS):
            values[name] = [int(v) for v in lists[i].tolist()]
        return ArmTotals.from_fields({k: v for k, v in values.items() if k in HAS}), present


def generate(
    rng: np.random.Generator,
    sc: Scenario,
    windows: Windows,
    t0: float,
    t1: float,
    share: float,
    lift: float,
    lose_candidate_starts: float,
) -> None:
    """Sessions starting in [t0, t1) with their replies, outcomes and ends, into ``windows``."""
    k = rng.poisson(SESSIONS_PER_S * (t1 - t0))
    if k == 0:
        return
    cap = sc.cap
    starts = rng.uniform(t0, t1, k)
    arm = (rng.random(k) < share).astype(int)
    logit = math.log(P0 / (1 - P0)) + sc.sigma * rng.normal(0, 1, k)
    p_user = 1 / (1 + np.exp(-logit))
    p = np.minimum(1.0, p_user + lift * arm)
    has_history = rng.random(k) < 0.7
    n_pre = 1 + rng.poisson(5, k)
    c_pre = rng.binomial(n_pre, p_user)
    x = np.where(has_history, (c_pre + 1) / (n_pre + 2), 0.5)
    draws = rng.random((k, cap)) < p[:, None]
    # stop_on_miss: replies until the first one not continued, or the cap
    n = (np.where(~draws.all(1), draws.argmin(1), cap - 1) + 1) if sc.stop_on_miss else rng.integers(1, cap + 1, k)
    j = np.arange(cap)[None, :]
    live = j < n[:, None]
    cont = draws & (j < (n - 1)[:, None])  # the last reply of a session is never continued
    viol = (rng.random((k, cap)) < 0.02) & live
    instr = (rng.random((k, cap)) < 0.9) & live
    lat = np.minimum(np.searchsorted(LATENCY_BUCKETS_MS, rng.lognormal(math.log(400), 0.6, (k, cap))), NB - 1)
    reply_t = starts[:, None] + 1.0 + GAP_S * j
    decided = np.where(cont, reply_t + GAP_S - 1.0, reply_t + 1.0)
    end = starts + 1.0 + GAP_S * (n - 1) + 1.0
    kept = ~((arm == 1) & (rng.random(k) < lose_candidate_starts))
    windows.add((starts[kept] // WINDOW_S).astype(int), arm[kept], "users_assigned", 1.0)
    # replies, in the window they were decided
    si, sj = np.nonzero(live)
    wd = (decided[si, sj] // WINDOW_S).astype(int)
    ar = arm[si]
    windows.add(wd, ar, "responses", 1.0)
    windows.add(wd, ar, "continued", cont[si, sj].astype(float))
    windows.add(wd, ar, "violations", viol[si, sj].astype(float))
    windows.add(wd, ar, "instruction_following", instr[si, sj].astype(float))
    windows.add(wd, ar, "covariate_sum", x[si])
    np.add.at(windows.lists, (wd + OFFSET, ar, 0, lat[si, sj]), 1.0)
    # users engaged and active: once per session and window with a reply
    wr = (reply_t[si, sj] // WINDOW_S).astype(int)
    first = np.ones(len(si), bool)
    first[1:] = (si[1:] != si[:-1]) | (wr[1:] != wr[:-1])
    windows.add(wr[first], ar[first], "users_engaged", 1.0)
    windows.add(wr[first], ar[first], "users_active", 1.0)
    # sessions, in the window of their end, with their per-session sums
    we = (end // WINDOW_S).astype(int)
    c = cont.sum(1).astype(float)
    v = viol.sum(1).astype(float)
    f = instr.sum(1).astype(float)
    nf = n.astype(float)
    a = x * nf
    for name, values in (
        ("sessions", np.ones(k)),
        ("user_turns", nf),
        ("user_turns_sq", nf * nf),
        ("session_replies", nf),
        ("session_replies_sq", nf * nf),
        ("session_continued", c),
        ("session_continued_sq", c * c),
        ("session_continued_x_replies", c * nf),
        ("session_violations", v),
        ("session_violations_sq", v * v),
        ("session_violations_x_replies", v * nf),
        ("session_instruction_following", f),
        ("session_instruction_following_sq", f * f),
        ("session_instruction_following_x_replies", f * nf),
        ("session_covariate", a),
        ("session_covariate_sq", a * a),
        ("session_covariate_x_replies", a * nf),
        ("session_covariate_x_continued", a * c),
    ):
        windows.add(we, arm, name, values)
    per_bucket = np.zeros((k, NB))
    np.add.at(per_bucket, (si, lat[si, sj]), 1.0)
    # tail[b] = replies in buckets after b
    tail = per_bucket[:, ::-1].cumsum(1)[:, ::-1] - per_bucket
    for i, values in enumerate((tail, tail * tail, tail * nf[:, None])):
        np.add.at(windows.lists, (we + OFFSET, arm, i + 1), values)


@dataclass
class Outcome:
    action: str
    reason: str
    n_candidate: int
    fixed_promote: bool | None
    fixed_z: float | None
    realised_lift: float


def run_one(
    rng: np.random.Generator,
    sc: Scenario,
    config: CanaryConfig,
    lift: float = 0.0,
    lose_candidate_starts: float = 0.0,
    max_windows: int = 400,
) -> Outcome:
    """One experiment, looked at after every window, as the controller does."""
    windows = Windows(max_windows)
    generate(rng, sc, windows, -WARM_UP_S, 0.0, 0.0, lift, 0.0)
    steps = config.steps_bp
    step_index, share_bp = 0, steps[0]
    changes = [0.0]
    step_started = 0.0
    p_min: dict[str, float] = {}
    base, cand = ArmTotals(), ArmTotals()
    settled = np.zeros((2, len(SCALARS)))
    step_b, step_c, step_samples = 0, 0, 0
    decision: tuple[str, str, int] | None = None
    z_fixed = NormalDist().inv_cdf(1 - config.goal_alpha / 2)
    fixed: tuple[bool, float] | None = None
    burn = config.burn_in_s
    for w in range(max_windows):
        t0, t1 = w * WINDOW_S, (w + 1) * WINDOW_S
        generate(rng, sc, windows, t0, t1, share_bp / 10_000, lift, lose_candidate_starts)
        # window w - 1 has closed (grace 1 s): deliver it, then look
        wd = w - 1
        now = t1 + 1.0
        if wd < 0:
            continue
        ws, we = wd * WINDOW_S, (wd + 1) * WINDOW_S
        in_burn = any(ws < ch + burn and we > ch for ch in changes)
        cb, b_present = windows.totals(wd, 0)
        cc, c_present = windows.totals(wd, 1)
        if not in_burn:
            base.add(cb)
            cand.add(cc)
            settled += windows.scalars[wd + OFFSET]
            if ws >= step_started:
                if b_present and c_present:
                    step_b += cb.users_assigned
                    step_c += cc.users_assigned
                step_samples += cc.responses
        analysis = analyse(base, cand, config, p_min, (step_b, step_c), share_bp)
        if fixed is None and analysis.n_candidate >= analysis.horizon_n:
            lift_now, var = fixed_horizon_estimate(settled, bool(getattr(config, "cuped", False)))
            z = lift_now / math.sqrt(var) if var > 0 else 0.0
            fixed = (z > z_fixed, z)
        if decision is None:
            action, reason = decide(analysis, config, step_index, step_samples)
            if action == "advance":
                nxt = step_index + 1
                share = steps[nxt] if nxt < len(steps) else 10_000
                if share >= 10_000:
                    action = "promote"
                else:
                    step_index, share_bp = nxt, share
                    changes.append(now)
                    step_started = now
                    step_b = step_c = step_samples = 0
            if action in ("promote", "rollback", "halt"):
                decision = (action, reason, analysis.n_candidate)
        if decision is not None and fixed is not None:
            break
    realised = cand.continued / cand.responses - base.continued / base.responses if cand.responses else 0.0
    if decision is None:
        decision = ("none", "ran out of windows", cand.responses)
    return Outcome(
        decision[0],
        decision[1],
        decision[2],
        fixed[0] if fixed else None,
        fixed[1] if fixed else None,
        realised,
    )


def fixed_horizon_estimate(settled: np.ndarray, cuped: bool) -> tuple[float, float]:
    """(lift, variance) of the continue rate for the fixed-horizon test, from the bench's
    own sums of the settled windows (``settled[arm]``, SCALARS order: the same test on every
    build): sessions as units (delta method), CUPED-adjusted when ``cuped``."""
    arms = []
    for row in settled:
        g = dict(zip(SCALARS, row.tolist(), strict=True))
        n, n2 = g["session_replies"], g["session_replies_sq"]
        m, m2, mn = g["session_continued"], g["session_continued_sq"], g["session_continued_x_replies"]
        a, a2, an, am = (
            g["session_covariate"],
            g["session_covariate_sq"],
            g["session_covariate_x_replies"],
            g["session_covariate_x_continued"],
        )
        r, x = m / n, a / n
        yy, xx = m2 - 2 * r * mn + r * r * n2, a2 - 2 * x * an + x * x * n2
        xy = am - x * mn - r * an + r * x * n2
        arms.append((g["continued"], g["covariate_sum"], g["responses"], n, yy, xx, xy))
    theta = 0.0
    if cuped:
        den = arms[0][5] + arms[1][5]
        theta = (arms[0][6] + arms[1][6]) / den if den > 0 else 0.0
    lift = var = 0.0
    for sign, (hits, cov, replies, n, yy, xx, xy) in zip((-1, 1), arms, strict=True):
        lift += sign * (hits / replies - theta * cov / replies)
        var += (yy - 2 * theta * xy + theta * theta * xx) / n / replies
    return lift, var


def _tally(outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    by_metric: dict[str, int] = {}
    wrong = halted = 0
    for o in outcomes:
        if o.action == "halt":
            halted += 1
            continue
        names: list[str] = []
        if o.action == "promote" and "significant gain" in o.reason:
            names = o.reason.split(": ", 1)[1].split(";")[0].split(", ")
        elif o.action == "rollback" and ("significant loss" in o.reason or "guardrail breach" in o.reason):
            names = o.reason.split(": ", 1)[1].split(", ")
        if names:
            wrong += 1
            for name in names:
                by_metric[name] = by_metric.get(name, 0) + 1
    return {
        "runs": n,
        "aa_false_positive_rate": wrong / n,
        "by_metric": {k: v / n for k, v in sorted(by_metric.items())},
        "srm_false_alarm_rate": halted / n,
        "mean_replies_to_decision": float(np.mean([o.n_candidate for o in outcomes])),
    }


def _batch(job: tuple[int, str, int, float, float, dict[str, Any], int]) -> list[Outcome]:
    seed, scenario, runs, lift, lose, overrides, salt = job
    rng = np.random.default_rng([seed, salt])
    config = demo_config(**overrides)
    return [run_one(rng, SCENARIOS[scenario], config, lift, lose) for _ in range(runs)]


def _runs(
    pool: Any,
    seed: int,
    scenario: str,
    runs: int,
    overrides: dict[str, Any],
    salt: int,
    lift: float = 0.0,
    lose: float = 0.0,
) -> list[Outcome]:
    """``runs`` experiments in chunks of 100 over the pool's workers (seeded per chunk)."""
    jobs = [
        (seed, scenario, min(100, runs - i), lift, lose, overrides, salt * 1000 + i // 100) for i in range(0, runs, 100)
    ]
    return [o for batch in pool.map(_batch, jobs) for o in batch]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000, help="A/A runs per scenario")
    parser.add_argument("--power-runs", type=int, default=1000)
    parser.add_argument("--srm-runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--scenarios", default="short,long,correlated")
    parser.add_argument("--cuped", choices=("default", "on", "off"), default="default")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--lift", type=float, default=0.05, help="effect of the power runs, on each reply's probability"
    )
    parser.add_argument(
        "--horizon-factor",
        type=float,
        default=None,
        help="the canary's horizon as a multiple of the fixed-horizon sample of its MDE (demo: 0.6); "
        "to see the power a horizon sized for the lift would give",
    )
    args = parser.parse_args()
    overrides: dict[str, Any] = {} if args.cuped == "default" else {"cuped": args.cuped == "on"}
    if args.horizon_factor is not None:
        overrides["horizon_factor"] = args.horizon_factor
    config = demo_config(**overrides)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "alpha": config.alpha,
        "goal_alpha": config.goal_alpha,
        "guardrail_alpha": config.guardrail_alpha,
        "cuped": getattr(config, "cuped", None),
        "horizon_replies": horizon_replies(config),
        "scenarios": {},
    }
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for i, name in enumerate(n for n in args.scenarios.split(",") if n):
            out["scenarios"][name] = _tally(_runs(pool, args.seed, name, args.runs, overrides, i + 1))
            print(name, json.dumps(out["scenarios"][name]), f"{time.perf_counter() - started:.0f}s", flush=True)
        power_runs = _runs(pool, args.seed, "short", args.power_runs, overrides, 100, lift=args.lift)
        fixed = [o for o in power_runs if o.fixed_promote is not None]
        out["power"] = {
            "lift_pp": 100 * args.lift,
            "realised_lift_pp": 100 * float(np.mean([o.realised_lift for o in power_runs])),
            "runs": len(power_runs),
            "sequential": float(np.mean([o.action == "promote" for o in power_runs])),
            "sequential_rollback": float(np.mean([o.action == "rollback" for o in power_runs])),
            "fixed_horizon": float(np.mean([bool(o.fixed_promote) for o in fixed])) if fixed else None,
            "mean_z_at_horizon": float(np.mean([o.fixed_z for o in fixed if o.fixed_z is not None])) if fixed else None,
        }
        out["mean_replies_to_decision"] = {
            "sequential": float(np.mean([o.n_candidate for o in power_runs])),
            "fixed_horizon": out["horizon_replies"],
        }
        print("power", json.dumps(out["power"]), f"{time.perf_counter() - started:.0f}s", flush=True)
        if args.srm_runs:
            srm_runs = _runs(pool, args.seed, "short", args.srm_runs, overrides, 200, lose=0.1)
            out["srm_detection_rate"] = float(np.mean([o.action == "halt" for o in srm_runs]))
    out["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


def horizon_replies(config: CanaryConfig) -> int:
    """The analysis's horizon (candidate replies) at the scenarios' baseline continue rate."""
    from serving.canary import horizon_n

    return horizon_n(config, 0.45)


if __name__ == "__main__":
    main()
