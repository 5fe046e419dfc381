"""Before a build: fetch the models its pipeline names when the hub can be reached, so the
README's first command shows every modality it can; offline, say in one line how to get the rest.

Builds still load models only from the local cache (models.py): this runs on the driver before the
build starts and fills the cache with `pull.pull`, the same path as `openuni-models pull`.
`openuni-build --offline` skips it, and so do HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE; HF_ENDPOINT
says which hub (a mirror) is asked.

Which models: every registered name the pipeline's annotator options mention (`model`, `detector`,
`segmenter`, `tracker`, ...). For pipelines/openuni.yaml that is its "lite" choices plus the
detector and pose models it names (the `full` ones swapped in for production are not pulled).
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

from openuni_builder.config import BuildConfig
from openuni_builder.models import load_registry
from openuni_builder.pull import PullError, pull, status

log = logging.getLogger(__name__)

#: Seconds the reachability check waits: a machine without a route to the hub should not wait
#: for TCP's own timeout (~2 min) before building. The hub answers within ~0.3 s where it is reachable.
REACH_TIMEOUT_S = 3.0


def hub_unreachable(timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why the hub cannot be used now (offline mode set, or no answer within `timeout`), or None.
    Any HTTP answer counts as reachable: the question is the route, not a particular page."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
    request = urllib.request.Request(constants.ENDPOINT + "/", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{constants.ENDPOINT} did not answer within {timeout:g} s ({reason})"


def fetch_pipeline_models(cfg: BuildConfig, timeout: float = REACH_TIMEOUT_S) -> dict[str, str]:
    """Pull the pipeline's models that are not cached, if the hub answers. Returns what happened
    per missing model ("pulled", or why not); a failed pull is logged and the build goes on (its
    modality is skipped as it would be offline)."""
    registry = load_registry()
    wanted = [name for name in cfg.models() if status(registry[name]) != "cached"]
    if not wanted:
        return {}
    why = hub_unreachable(timeout)
    if why is not None:
        log.info("not pulling %s: %s", ", ".join(wanted), why)
        return {name: f"not pulled: {why}" for name in wanted}
    log.info("pulling the models this pipeline names and the cache lacks: %s", ", ".join(wanted))
    outcome = {}
    for name in wanted:
        try:
            outcome[name] = f"pulled into {pull(registry[name])}"
        except PullError as exc:
            log.warning("could not pull %s: %s", name, exc)
            outcome[name] = f"not pulled: {exc}"
    return outcome


def rest_hint(skipped: dict[str, str], cfg: BuildConfig, offline: bool) -> str | None:
    """The one line after a build that skipped modalities for missing models: how to get them."""
    if not skipped:
        return None
    registry = load_registry()
    missing = [name for name in cfg.models() if status(registry[name]) != "cached"]
    how = (f"`openuni-models pull {' '.join(missing)}`" if missing else "`openuni-models pull --profile lite`")
    where = "rerun without --offline on a machine that reaches the hub, or run " if offline else \
        "on a machine that reaches the hub (HF_ENDPOINT for a mirror), run "
    return f"openuni-build: {len(skipped)} modalities skipped ({', '.join(skipped)}): {where}{how}, then rerun into a new --shards"
