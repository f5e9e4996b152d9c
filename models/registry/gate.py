"""The promotion gate's rules, on numbers only (models.registry.versions reads them from MLflow and
moves the aliases).

* `decide`: one challenger against the best baseline and the champion on the validation
  gate metric (the value ranking's NDCG@k, or a MIND metric of clicks on a real log), by a
  margin, and the harm guard against the champion;
* `SampleRule`: a gate that knows its sample. A decision needs a minimum of validation
  requests where the metric is defined and of positives in them, and each gain (over the best
  baseline, over the champion) must clear the margin at the lower end of its paired bootstrap
  interval over requests, not only on average: below the minimum, or when the interval
  straddles the margin, nothing is promoted and the reason says so with the numbers;
* `HarmGuard`: the negative-feedback tasks (hide, report) must not be worse than the
  champion's (or a peer's) on validation, in AUC (lower is worse) or NCE (higher is worse),
  beyond a margin;
* `choose`: one night's challengers (one per kind), from the best NDCG down. One that `decide`
  promotes is still refused when a lower-ranked candidate of the same night that `decide`
  also promotes is safer: the harm guard finds the first worse than it, and it no worse than
  the first (a tie on NDCG must not hand the night to the kind blind to hides; two that each
  harm the other on some task are left to the ranking); the first left wins, the others say
  why not. The last candidate that passes has no peer below it, so when any passes, exactly
  one is promoted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from models.evaluation.evaluate import POSITIVES, best_baseline
from models.evaluation.metrics import paired_bootstrap_gain

AUC, NCE = "auc", "nce"  # the guarded metrics of each task


def quality_key(task: str, metric: str) -> str:
    """The key of a task's metric in a quality mapping: hide/auc."""
    return f"{task}/{metric}"


@dataclasses.dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class HarmGuard:
    """Refuse a challenger whose guarded tasks are worse than the champion's beyond `margin`."""

    tasks: tuple[str, ...]  # e.g. hide, report
    margin: float  # in AUC and in NCE

    def harms(
        self,
        challenger: Mapping[str, float],
        champion: Mapping[str, float],
        theirs: str = "the champion's",
    ) -> list[str]:
        """Each guarded task and metric on which the challenger is worse beyond the margin than
        `champion` (whose numbers the words call `theirs`), in words with the numbers. A metric
        missing or undefined on either side (a task the log does not record, a day without a
        positive) is not compared."""
        out = []
        for task in self.tasks:
            for metric, sign in ((AUC, 1.0), (NCE, -1.0)):  # AUC: higher is better; NCE: lower
                key = quality_key(task, metric)
                new, old = challenger.get(key, math.nan), champion.get(key, math.nan)
                if math.isnan(new) or math.isnan(old):
                    continue
                worse = sign * (old - new)
                if worse > self.margin:
                    out.append(
                        f"{task} {metric.upper()} {new:.4f} against {theirs} {old:.4f} "
                        f"(worse by {worse:.4f} > harm margin {self.margin})"
                    )
        return out


NO_GUARD = HarmGuard((), math.inf)


@dataclasses.dataclass(frozen=True)
class SampleRule:
    """How much validation evidence a promotion needs (training.gate_min_*, bootstrap*)."""

    min_requests: int  # requests where the gate metric is defined
    min_positives: int  # positives (clicks, or rows of positive value) in those requests
    n_boot: int = 1000  # resamples of the paired bootstrap over requests
    level: float = 0.95  # of the gain's interval
    seed: int = 0

    def too_small(self, sample: pd.DataFrame, scorer: str) -> str | None:
        """Why `sample` (the gate sample: per request the scorers' metric and POSITIVES) is
        too small to decide on for `scorer`, in words with the numbers; None when it is not."""
        defined = sample[scorer].notna()
        n, positives = int(defined.sum()), int(sample.loc[defined, POSITIVES].sum())
        if n >= self.min_requests and positives >= self.min_positives:
            return None
        return (
            f"the validation sample is too small to decide: {n} requests where the metric is "
            f"defined (minimum {self.min_requests}), {positives} positives in them "
            f"(minimum {self.min_positives})"
        )

    def gain(self, sample: pd.DataFrame, scorer: str, other: pd.Series, margin: float) -> str:
        """'' when the challenger's (`sample[scorer]`) paired gain over `other` (per request)
        clears `margin` at the lower end of its interval; otherwise the gain and interval in
        words (it straddles the margin, or lies below it)."""
        gain, lo, hi, n = paired_bootstrap_gain(
            sample[scorer], other, self.n_boot, self.level, self.seed
        )
        if lo >= margin:
            return ""
        where = "straddles" if hi >= margin else "lies below"
        return (
            f"gain {gain:+.4f}, {self.level:.0%} interval [{lo:+.4f}, {hi:+.4f}] over {n} "
            f"requests {where} the margin {margin}"
        )


@dataclasses.dataclass(frozen=True)
class Sample:
    """The validation requests behind one decision: the gate metric per request of the
    challenger and the baselines (columns: `scorer`, each baseline's name) with POSITIVES, and
    the champion's on the same requests (None: no champion re-scored)."""

    frame: pd.DataFrame  # index request_id
    scorer: str = "model"  # the challenger's column
    champion: pd.Series | None = None


def decide(
    challenger: float,
    champion: float | None,
    baselines: Mapping[str, float],
    margin: float,
    no_champion: str = "no champion yet",
    *,
    metric: str = "the gate metric",
    days: str = "the validation days",
    guard: HarmGuard = NO_GUARD,
    quality: Mapping[str, float] | None = None,
    champion_quality: Mapping[str, float] | None = None,
    rule: SampleRule | None = None,
    sample: Sample | None = None,
) -> Decision:
    """The whole promotion gate for one challenger, on metrics of the same days for every model.

    Promote when the challenger beats the best baseline and the champion (if any) by the
    margin, and the harm guard finds its `quality` (hide/auc, hide/nce, ...) no worse than
    `champion_quality` beyond its margin. `champion` None: there is none to compare with, and
    `no_champion` says why (none yet, or one that cannot score these features); then there
    is no guard either. An undefined challenger metric (NaN: no request on `days` had a
    positive realised value) never promotes. The reason names the numbers, the best baseline
    and the metric (`metric`, e.g. "validation NDCG@10").

    `rule`: the sample the decision needs (SampleRule); then `sample` holds the per-request
    metric of the challenger, the baselines and the champion, and each win must hold at the
    lower end of its paired bootstrap interval too. A rule without a sample never promotes.
    """
    name, baseline = best_baseline(baselines)
    small = None
    if rule is not None and not math.isnan(challenger):
        small = "no per-request validation sample" if sample is None else None
        small = small or rule.too_small(sample.frame, sample.scorer)
    if math.isnan(challenger):
        reason = f"{metric} is undefined on {days}: no request there has a positive realised value"
        verdict = Decision(False, reason)
    elif small is not None:
        verdict = Decision(False, small)
    elif not challenger >= baseline + margin:
        verdict = Decision(
            False,
            f"challenger {challenger:.4f} does not beat the best baseline {baseline:.4f} "
            f"by the margin {margin}",
        )
    elif rule is not None and (
        unsure := rule.gain(sample.frame, sample.scorer, sample.frame[name], margin)
    ):
        verdict = Decision(
            False,
            f"challenger {challenger:.4f} beats the best baseline {baseline:.4f} on average, "
            f"but not surely: {unsure}",
        )
    elif champion is None:
        verdict = Decision(
            True,
            f"{no_champion}; challenger {challenger:.4f} beats the best baseline "
            f"{baseline:.4f} by at least {margin}",
        )
    elif not challenger >= champion + margin:
        verdict = Decision(
            False,
            f"challenger {challenger:.4f} does not beat champion {champion:.4f} "
            f"by the margin {margin}",
        )
    elif rule is not None and sample.champion is None:
        verdict = Decision(False, "no per-request sample of the champion to compare with")
    elif rule is not None and (
        unsure := rule.gain(sample.frame, sample.scorer, sample.champion, margin)
    ):
        verdict = Decision(
            False,
            f"challenger {challenger:.4f} beats champion {champion:.4f} on average, "
            f"but not surely: {unsure}",
        )
    else:
        beats = f"challenger {challenger:.4f} beats champion {champion:.4f} by at least {margin}"
        harms = guard.harms(quality or {}, champion_quality or {})
        if harms:
            verdict = Decision(False, f"{beats}, but the harm guard refuses it: {'; '.join(harms)}")
        else:
            verdict = Decision(True, beats)
    return Decision(verdict.promote, f"{verdict.reason} (baseline: {name}; {metric})")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A challenger's numbers on the validation days, as its run logged them."""

    version: str
    kind: str
    score: float  # the gate metric (NaN when undefined)
    baselines: Mapping[str, float]  # each baseline's gate metric
    quality: Mapping[str, float]  # hide/auc, hide/nce, ... (quality_key)
    # per validation request: the gate metric of "model" and each baseline, POSITIVES
    sample: pd.DataFrame | None = None


def choose(
    candidates: Sequence[Candidate],
    champion: float | None,
    champion_quality: Mapping[str, float] | None,
    margin: float,
    guard: HarmGuard,
    no_champion: str = "no champion yet",
    *,
    metric: str = "the gate metric",
    days: str = "the validation days",
    rule: SampleRule | None = None,
    champion_sample: pd.Series | None = None,
) -> dict[str, Decision]:
    """A Decision per candidate's version: from the best `score` down, each through `decide`
    against the champion. Of those that pass, the first with no safer lower-ranked one that
    passes too wins (`peer_harms`); those above it are refused
    in favour of the peer, any later one in favour of the winner. The winner's reason lists
    every candidate's score. `rule`, `champion_sample`: the sample each decision needs
    (`decide`), the champion's gate metric per request on the same validation days."""
    ranked = sorted(candidates, key=lambda c: -math.inf if math.isnan(c.score) else -c.score)
    gated = {
        c.version: decide(
            c.score,
            champion,
            c.baselines,
            margin,
            no_champion,
            metric=metric,
            days=days,
            guard=guard,
            quality=c.quality,
            champion_quality=champion_quality,
            rule=rule,
            sample=None if c.sample is None else Sample(c.sample, champion=champion_sample),
        )
        for c in ranked
    }
    passing = [c for c in ranked if gated[c.version].promote]
    below = {c.version: passing[i + 1 :] for i, c in enumerate(passing)}  # the lower peers
    decisions: dict[str, Decision] = {}
    winner: Candidate | None = None
    for c in ranked:
        d = gated[c.version]
        if d.promote and winner is not None:
            d = Decision(
                False,
                f"version {winner.version} ({winner.kind}) won with {winner.score:.4f} "
                f"against this one's {c.score:.4f} ({metric})",
            )
        elif d.promote and (refusal := peer_harms(c, below[c.version], guard)):
            d = Decision(False, f"{d.reason}, but {refusal}")
        elif d.promote:
            winner = c
            if len(candidates) > 1:
                scores = ", ".join(f"{o.kind} v{o.version} {o.score:.4f}" for o in ranked)
                d = Decision(True, f"{d.reason}; the best of this night's kinds ({scores})")
        decisions[c.version] = d
    return decisions


def peer_harms(candidate: Candidate, below: Sequence[Candidate], guard: HarmGuard) -> str | None:
    """Why the harm guard prefers the first of `below` (lower-ranked candidates of the same
    night that pass the gate too) to `candidate`, in words with the numbers; None when none
    of them is safer. A peer is safer when the candidate is worse than it beyond the margin
    and it is worse than the candidate on no guarded metric beyond the margin: two versions
    that each harm the other on some task (say one on hide, the other on report) trade one
    risk for another, and the ranking decides between them."""
    for peer in below:
        harms = guard.harms(candidate.quality, peer.quality, theirs="its")
        if harms and not guard.harms(peer.quality, candidate.quality):
            return (
                f"the harm guard prefers {peer.kind} v{peer.version} of this night: "
                f"{'; '.join(harms)}; it is worse on no guarded metric"
            )
    return None
