"""Upload a finished export to the Hugging Face Hub with huggingface_hub, the token from HF_TOKEN or
`hf auth login`. The token is never printed or logged; a failed push says why and leaves the export as is."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from gcpo_lite.config import ConfigError


class PushError(ConfigError):
    """A push that failed for a reason the user can fix; the message never contains the token."""


def _scrub(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text


def _network_errors() -> tuple:
    """Connection-level exception classes of whichever HTTP client this huggingface_hub uses."""
    import importlib

    errors: list = [OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _usable_token(folder: str | Path, repo_id: str, token: Optional[str]) -> str:
    from huggingface_hub import get_token  # looked up per call, so a patched get_token is honoured

    token = token or get_token()  # HF_TOKEN, else the `hf auth login` cache
    if not token:
        raise PushError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login`; the export in "
            f"{folder} is complete, push it later with --push-to-hub or `hf upload`"
        )
    if repo_id.count("/") != 1:
        raise PushError(f"--push-to-hub {repo_id!r}: use USER/NAME (or ORG/NAME)")
    return token


def _http_reason(e: Exception, repo_id: str, token: str) -> str:
    status = getattr(getattr(e, "response", None), "status_code", None)
    return {
        401: "the token was rejected (expired or mistyped); set a valid HF_TOKEN or `hf auth login`",
        403: f"this token may not write to {repo_id} (the name belongs to another user or org, or the "
        "token is read-only)",
        409: f"{repo_id} exists and cannot be used (taken); choose another name",
    }.get(status, f"the Hub answered {status}: {_scrub(str(e).splitlines()[0], token)}")


def push_to_hub(
    folder: str | Path, repo_id: str, *, private: bool = False, token: Optional[str] = None
) -> str:
    """Create (or reuse) the model repo and upload the folder; returns the repo URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    token = _usable_token(folder, repo_id, token)
    api = HfApi(token=token)
    where = f"the export in {folder} is complete; fix this and push again"
    try:
        url = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message="gcpo-lite export"
        )
    except HfHubHTTPError as e:
        raise PushError(f"push to {repo_id} failed: {_http_reason(e, repo_id, token)}; {where}") from None
    except OfflineModeIsEnabled:
        raise PushError(f"push to {repo_id} failed: HF_HUB_OFFLINE is set; {where}") from None
    except Exception as e:  # no network, DNS, TLS, timeouts
        if isinstance(e, _network_errors()):
            raise PushError(
                f"push to {repo_id} failed: could not reach the Hub ({type(e).__name__}: "
                f"{_scrub(str(e), token)}); {where}"
            ) from None
        raise
    return str(url)
