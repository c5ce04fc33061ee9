"""Datasets published on the Hugging Face Hub: ``--data hf:ORG/NAME`` fetches the files a
loader needs into the Hugging Face cache, once (offline afterwards, ``HF_HUB_OFFLINE=1``)."""

from __future__ import annotations

from pathlib import Path

from comclip.errors import InputError

HF_PREFIX = "hf:"


def hub_repo(path, default: str) -> str | None:
    """The repository ``path`` names (``hf:`` alone: ``default``), or None for a local path."""
    text = str(path)
    if not text.startswith(HF_PREFIX):
        return None
    return text[len(HF_PREFIX) :] or default


def local_or_hub(path, default: str, patterns: list[str] | None = None, gated: bool = False) -> tuple[Path, str | None]:
    """The folder (or file) to read: ``path``, or the snapshot of the repository an ``hf:``
    name gives; and that repository's name (None for a local path)."""
    repo = hub_repo(path, default)
    return (snapshot(repo, patterns, gated) if repo else Path(path)), repo


def hub_token() -> str | None:
    """The user's Hugging Face token as huggingface_hub finds it (``HF_TOKEN``, or the file
    ``hf auth login`` wrote), for gated datasets."""
    from huggingface_hub import get_token

    return get_token()


def snapshot(repo: str, patterns: list[str] | None = None, gated: bool = False) -> Path:
    """The local folder of dataset ``repo`` (only files matching ``patterns``), downloaded once."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, repo_type="dataset", allow_patterns=patterns, token=hub_token()))
    except Exception as exc:  # network, auth, gating and missing-cache errors all end here
        raise hub_error(repo, exc, gated) from None


def hub_error(repo: str, exc: Exception, gated: bool = False) -> InputError:
    """One line saying why a dataset could not be fetched and what to do instead."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    what = "the gated dataset" if gated else "the dataset"
    advice = (
        "Accept its terms on huggingface.co and set HF_TOKEN, or pass"
        if gated
        else "Where it is gated, accept its terms on huggingface.co and set HF_TOKEN; or pass"
    )
    return InputError(
        f"cannot download {what} {repo} from the Hugging Face Hub ({type(exc).__name__}: {first}). "
        f"{advice} a local copy with --data FOLDER."
    )
