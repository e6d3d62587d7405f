"""Reaching the Hugging Face Hub before a long load: one fast probe, then one clear error or a quiet go.

transformers and datasets retry an unreachable hub with back-off and end in a long traceback (111 lines and
about a minute for `gcpo-lite train --model qwen2.5-1.5b` offline). `ensure_fetchable` asks the hub once,
without retries, before anything loads:
- reachable and the repo is there: go on;
- gated, missing or private, a wrong revision: a HubError naming the repo and what to do;
- unreachable (offline, DNS, proxy): if the repo is in the local cache, switch this process to offline mode
  (so the loads read the cache without retrying) and say so; else a HubError with the fixes.
With HF_HUB_OFFLINE=1 no request is made: the cache decides.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 10.0
_checked: dict[
    tuple, Optional[str]
] = {}  # (repo_type, repo_id, revision) -> the note given, once per process


class HubError(ConfigError):
    """A model or dataset that cannot be fetched from the hub; the message says which and what to do."""


def offline_mode() -> bool:
    import huggingface_hub

    return bool(huggingface_hub.is_offline_mode())


def go_offline() -> None:
    """Read only the local cache from now on in this process (transformers, datasets, huggingface_hub)."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        sys.modules["datasets"].config.HF_HUB_OFFLINE = True


def is_cached(repo_id: str, repo_type: str) -> bool:
    """Whether a copy of the repo is in the local hub cache (for a model: its config.json)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    if repo_type == "model":
        return any(folder.glob("snapshots/*/config.json"))
    if any(folder.glob("snapshots/*/*")):
        return True
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", Path(constants.HF_HOME) / "datasets"))
    return (datasets_cache / repo_id.replace("/", "___")).is_dir()  # datasets' own prepared copy


def _fixes(repo_id: str, repo_type: str) -> str:
    if repo_type == "model":
        return (
            f"pass a local directory (--model DIR, with config.json, weights and tokenizer), or download it on a "
            f"machine that is online (`hf download {repo_id}`) and copy its ~/.cache/huggingface/hub here"
        )
    return (
        f"pass a local file (--dataset FILE.jsonl/.json/.csv/.parquet), or download it on a machine that is "
        f"online (`hf download --repo-type dataset {repo_id}`) and copy its ~/.cache/huggingface here"
    )


def _probe(repo_id: str, repo_type: str, revision: Optional[str], what: str) -> Optional[BaseException]:
    """None when the hub has the repo; the connection error when the hub cannot be reached; raises HubError
    when the hub answers that the repo cannot be had."""
    from huggingface_hub import HfApi

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=PROBE_TIMEOUT_S)
        return None
    except Exception as e:  # connection refused, DNS, timeout, proxy, 5xx: the hub cannot be reached
        refusal = _refusal(e, repo_id, repo_type, revision, what)
        if refusal is not None:
            raise refusal from None
        return e


def _refusal(
    e: Exception, repo_id: str, repo_type: str, revision: Optional[str], what: str
) -> Optional[HubError]:
    """The HubError for a hub that answered that the repo cannot be had (gated, missing, private, a wrong
    revision or name, access refused); None for an error that means the hub was not reached."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    if isinstance(e, GatedRepoError):  # before RepositoryNotFoundError, its base class
        return HubError(
            f"{what} {repo_id!r} is gated on the hub: accept its terms at {page}, then set HF_TOKEN (or run "
            f"`hf auth login`) on this machine; or {_fixes(repo_id, repo_type)}"
        )
    if isinstance(e, HFValidationError):
        return HubError(f"{what} {repo_id!r} is neither an existing local path nor a valid hub id: {e}")
    if isinstance(e, RevisionNotFoundError):  # before HfHubHTTPError, its base class
        return HubError(f"{what} {repo_id!r} has no revision {revision!r} on the hub; check {page}")
    if isinstance(e, RepositoryNotFoundError):
        return HubError(
            f"{what} {repo_id!r} was not found on the hub: check the name at {page}; if it is private, set "
            f"HF_TOKEN (or run `hf auth login`); or {_fixes(repo_id, repo_type)}"
        )
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return HubError(
                f"{what} {repo_id!r}: the hub refused access (HTTP {status}); set HF_TOKEN to a token that "
                f"can read {page}, or {_fixes(repo_id, repo_type)}"
            )
    return None  # 5xx and the like: treat as unreachable


def ensure_fetchable(
    repo_id: str, *, repo_type: str = "model", revision: Optional[str] = None
) -> Optional[str]:
    """Raise HubError unless the repo can be loaded (from the hub or the cache); returns a note to print when
    the hub is unreachable and the cached copy will be used, else None. Probes once per repo per process."""
    key = (repo_type, repo_id, revision)
    if key in _checked:
        return _checked[key]
    what = "model" if repo_type == "model" else "dataset"
    cached = is_cached(repo_id, repo_type)
    if offline_mode():
        if not cached:
            raise HubError(
                f"{what} {repo_id!r} is not in the local cache and HF_HUB_OFFLINE is set, so it cannot be "
                f"downloaded: unset HF_HUB_OFFLINE on a machine that is online, or {_fixes(repo_id, repo_type)}"
            )
        _checked[key] = None
        return None
    error = _probe(repo_id, repo_type, revision, what)
    note = None
    if error is not None:
        why = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160] if str(error).strip() else ''}"
        if not cached:
            raise HubError(
                f"could not fetch {what} {repo_id!r}: the Hugging Face Hub cannot be reached from this machine "
                f"(offline? {why}) and there is no copy in the local cache. Connect to the internet, or "
                f"{_fixes(repo_id, repo_type)}"
            )
        go_offline()
        note = (
            f"the hub cannot be reached ({why}); using the cached copy of {what} {repo_id!r} (offline mode)"
        )
        log.warning(note)
    _checked[key] = note
    return note
