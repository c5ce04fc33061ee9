"""The web app's bundled examples: sandbox scenes (always there, drawn by the sandbox) and,
where the shared evaluation data is beside the project, a few SugarCrepe swap items on COCO
photos. Each example is an image file and its captions, the true one first."""

from __future__ import annotations

from pathlib import Path

#: Sandbox minimal pairs shown as examples: (task, seed, index) -> the pair's first scene and both captions.
SANDBOX_EXAMPLES = (("order-swap", 1, 0), ("binding", 1, 0), ("object-swap", 1, 1), ("substitution", 1, 0))
#: SugarCrepe tasks whose first item becomes an example, when the shared data is there.
SUGARCREPE_TASKS = ("swap_obj", "swap_att", "replace_rel")
SUGARCREPE_FILE = Path("sugarcrepe") / "sugarcrepe-coco-mini-dev.json"


def sandbox_examples(folder: Path) -> list[list[str]]:
    """Draw the sandbox pairs' first scenes into ``folder``; rows of [image path, captions]."""
    from comclip.sandbox.pairs import make_pair

    rows = []
    for task, seed, index in SANDBOX_EXAMPLES:
        pair = make_pair(task, seed, index)
        path = folder / f"sandbox-{task}-{seed}-{index}.png"
        pair.scenes[0].render().save(path)
        rows.append([str(path), "\n".join(pair.captions)])
    return rows


def shared_examples(shared_data: Path, folder: Path) -> list[list[str]]:
    """The first item of a few SugarCrepe tasks: a COCO photo (copied into ``folder``, so the
    page serves no folder of the user's), its caption and the hard negative; none when the
    shared data is absent."""
    import shutil

    from comclip.eval.benchmarks.datasets.sugarcrepe import load

    path = Path(shared_data) / SUGARCREPE_FILE
    if not path.is_file():
        return []
    examples, rows = load(path).examples, []
    for task in SUGARCREPE_TASKS:
        example = next((e for e in examples if e.subset == task), None)
        if example is not None and Path(example.images[0]).is_file():
            copy = folder / f"sugarcrepe-{task}-{Path(example.images[0]).name}"
            shutil.copyfile(example.images[0], copy)
            rows.append([str(copy), "\n".join(example.texts)])
    return rows


def bundled_examples(folder: str | Path, shared_data: str | Path | None = None) -> list[list[str]]:
    """Every example the page offers: sandbox scenes drawn into ``folder``, then the shared ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return sandbox_examples(folder) + (shared_examples(Path(shared_data), folder) if shared_data else [])
