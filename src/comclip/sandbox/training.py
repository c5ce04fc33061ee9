"""Training the sandbox model: a standard ``transformers`` CLIP, trained from scratch on sandbox scenes.

Kept apart from inference (as open_clip keeps ``open_clip_train``): only ``comclip sandbox
train`` imports this module; the shipped weights load by name like any model. The directory
:func:`train_sandbox_model` writes (config, safetensors weights, a CLIP BPE
tokenizer, a CLIP image processor) loads like any hub model, so the sandbox exercises the
same backbone code as real CLIP. The tokenizer keeps only the CLIP merges that the caption
grammar's words use, in CLIP's order, so it tokenises those words exactly as CLIP does with
a 600-token vocabulary (words outside the grammar fall back to characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from comclip.errors import InputError
from comclip.sandbox.pixel_pairs import pixel_training_example
from comclip.sandbox.scenes import IMAGE_SIZE, training_example, vocabulary
from comclip.text.bpe import clip_merges, word_merges, write_bpe_files

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 32
#: The model's captions never say "a photo of": prompts and entity phrases take its own form.
PIPELINE_DEFAULTS = {"grounder": {"prompt": "a {}"}, "entity_prompt": "a {}"}


@dataclass(frozen=True)
class SandboxModelConfig:
    """Architecture of the sandbox CLIP (a ViT image tower and a causal text transformer)."""

    image_size: int = IMAGE_SIZE
    patch_size: int = 8
    width: int = 128
    vision_layers: int = 4
    text_layers: int = 3
    heads: int = 4
    mlp_ratio: int = 2
    projection_dim: int = 128


@dataclass(frozen=True)
class TrainingConfig:
    """How the sandbox model is trained (symmetric InfoNCE on freshly generated pairs)."""

    steps: int = 2400
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    seed: int = 0
    #: Shuffle each caption's words before encoding: the text tower then cannot use word order,
    #: a bag-of-words CLIP by construction (the failure mode ComCLIP targets, made exact).
    shuffle_words: bool = False
    #: Share of each batch showing a relation only pixels show (depth, a pointer; crowded in
    #: half of them: :func:`~comclip.sandbox.pixel_pairs.pixel_training_example`); 0 is the
    #: grammar the shipped models were trained on.
    pixel_share: float = 0.0
    #: A sandbox model (a directory or a registered name such as ``comclip/sandbox``) whose
    #: weights training continues from; its words keep their embeddings, words the grammar
    #: gained start fresh. None: from scratch.
    init: str | None = None


def write_sandbox_tokenizer(directory: Path):
    """A CLIP tokenizer restricted to the merges the sandbox grammar's words need."""
    from transformers import CLIPTokenizer

    merges = clip_merges()
    ranks = {(m.split()[0], m.split()[1]): i for i, m in enumerate(merges)}
    needed = {pair for word in vocabulary() for pair in word_merges(word, ranks)}
    kept = [m for m in merges if tuple(m.split()) in needed]
    vocab_file, merges_file = write_bpe_files(directory, kept)
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=CONTEXT_LENGTH)
    return tokenizer


def new_sandbox_model(directory: Path, arch: SandboxModelConfig, seed: int):
    """A randomly initialised sandbox CLIP and its processor (tokenizer written to ``directory``)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = write_sandbox_tokenizer(directory)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": arch.image_size},
        crop_size={"height": arch.image_size, "width": arch.image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=arch.width,
            intermediate_size=arch.width * arch.mlp_ratio,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.heads,
            max_position_embeddings=CONTEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=arch.width,
            intermediate_size=arch.width * arch.mlp_ratio,
            num_hidden_layers=arch.vision_layers,
            num_attention_heads=arch.heads,
            image_size=arch.image_size,
            patch_size=arch.patch_size,
        ),
        projection_dim=arch.projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def model_directory(name: str) -> Path:
    """A registered sandbox model's files (``comclip/sandbox``) or a directory, as a path."""
    from comclip.backbones.factory import packaged_path, registered_models

    entry = registered_models().get(name)
    directory = Path(packaged_path(entry.source) if entry else name)
    if not (directory / "model.safetensors").is_file() or not (directory / "vocab.json").is_file():
        raise InputError(f"{name}: not a sandbox model to continue from (no model.safetensors and vocab.json there)")
    return directory


def check_architecture(directory: Path, arch: SandboxModelConfig) -> None:
    """Refuse, before anything is written, a model to continue from whose layers differ from ``arch``."""
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    found = {
        "width": vision.get("hidden_size"),
        "vision_layers": vision.get("num_hidden_layers"),
        "patch_size": vision.get("patch_size"),
        "image_size": vision.get("image_size"),
        "text_layers": text.get("num_hidden_layers"),
        "projection_dim": config.get("projection_dim"),
    }
    differ = [f"{k} {v} (not {getattr(arch, k)})" for k, v in found.items() if v != getattr(arch, k)]
    if differ:
        raise InputError(f"{directory}: another architecture than this training's: {', '.join(differ)}")


def continue_from(model, tokenizer, directory: Path) -> None:
    """Load ``directory``'s weights into ``model`` (the same architecture, perhaps a larger
    vocabulary): every token both vocabularies hold keeps its trained embedding row."""
    import torch
    from transformers import CLIPModel

    trained = CLIPModel.from_pretrained(directory)
    old_ids = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    state = {k: v for k, v in trained.state_dict().items() if "token_embedding" not in k}
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise InputError(f"{directory}: another architecture than this training's ({', '.join(wrong[:3])} ...)")
    model.load_state_dict(state, strict=False)
    old_rows = trained.text_model.embeddings.token_embedding.weight
    new_rows = model.text_model.embeddings.token_embedding.weight
    with torch.no_grad():
        for token, new_id in tokenizer.get_vocab().items():
            if token in old_ids:
                new_rows[new_id] = old_rows[old_ids[token]]


def pixel_tensor(images) -> "torch.Tensor":  # noqa: UP037 (torch is imported lazily)
    """Images (already ``image_size`` square) as the CLIP image processor would normalise them."""
    import torch

    scaled = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 255.0
    array = (scaled - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


class _TokenCache:
    """Token ids per caption; the grammar repeats captions often enough to make this worth it."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def __call__(self, captions):
        import torch

        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            encoded = self.tokenizer(missing, truncation=True, max_length=CONTEXT_LENGTH)
            self.cache.update(zip(missing, encoded["input_ids"]))
        rows = [self.cache[c] for c in captions]
        longest = max(len(r) for r in rows)  # pad to the batch's longest caption, not the context
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([r + [pad] * (longest - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows])
        return ids, mask


def shuffled_words(caption: str, rng: np.random.Generator) -> str:
    """The caption's words (commas dropped) in random order."""
    words = caption.replace(",", " ").split()
    return " ".join(words[i] for i in rng.permutation(len(words)))


def _optimiser(model, training: TrainingConfig):
    """AdamW as CLIP trains, without weight decay on gains, biases and embeddings."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": training.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=training.learning_rate,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def learning_rate(step: int, training: TrainingConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < training.warmup_steps:
        return training.learning_rate * (step + 1) / training.warmup_steps
    progress = (step - training.warmup_steps) / max(1, training.steps - training.warmup_steps)
    return training.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def _contrastive_step(model, optimiser, pixels, input_ids, attention_mask) -> float:
    """One symmetric InfoNCE step on a batch of matching (image, caption) pairs; the loss."""
    import torch
    import torch.nn.functional as F

    labels = torch.arange(pixels.shape[0])
    image_emb = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    text_emb = F.normalize(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output, dim=-1)
    logits = model.logit_scale.exp() * image_emb @ text_emb.T
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimiser.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return float(loss.detach())


def _example(rng: np.random.Generator, training: TrainingConfig):
    """A training pair; with ``pixel_share`` > 0 that share shows a depth or pointer relation."""
    if training.pixel_share and rng.uniform() < training.pixel_share:
        return pixel_training_example(rng)
    return training_example(rng)


def train_sandbox_model(
    out: str | Path,
    training: TrainingConfig = TrainingConfig(),
    arch: SandboxModelConfig = SandboxModelConfig(),
    log: Callable[[str], None] = print,
    log_every: int = 100,
) -> Path:
    """Train the sandbox CLIP (from scratch, or on from ``training.init``) and save it (plus
    ``training.json``) to ``out``."""
    from comclip._hf_utils import quiet_transformers

    parent = model_directory(training.init) if training.init else None  # checked before anything is written
    if parent:
        check_architecture(parent, arch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model, processor = new_sandbox_model(out, arch, training.seed)
        if parent:
            continue_from(model, processor.tokenizer, parent)
    tokens = _TokenCache(processor.tokenizer)
    rng = np.random.default_rng(training.seed)
    shuffle_rng = np.random.default_rng(training.seed + 1)  # separate stream: same scenes either way
    optimiser = _optimiser(model, training)
    model.train()
    started, history = time.time(), []
    for step in range(training.steps):
        pairs = [_example(rng, training) for _ in range(training.batch_size)]
        captions = [caption for _, caption in pairs]
        if training.shuffle_words:
            captions = [shuffled_words(c, shuffle_rng) for c in captions]
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, training)
        loss = _contrastive_step(model, optimiser, pixel_tensor([scene.render() for scene, _ in pairs]), *tokens(captions))
        if step % log_every == 0 or step == training.steps - 1:
            elapsed = time.time() - started
            history.append({"step": step, "loss": round(loss, 4), "seconds": round(elapsed, 1)})
            log(f"step {step}/{training.steps}  loss {loss:.4f}  lr {learning_rate(step, training):.2e}  {elapsed:.0f}s")
    model.eval()
    _save(out, model, processor, training, arch, history, time.time() - started, parent)
    return out


def _save(
    out: Path,
    model,
    processor,
    training: TrainingConfig,
    arch: SandboxModelConfig,
    history: list,
    seconds: float,
    parent: Path | None = None,
) -> None:
    """The model directory: weights, processor, ``training.json`` and the pipeline defaults."""
    import torch

    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    record = {
        "training": asdict(training),
        "architecture": asdict(arch),
        "samples_seen": training.steps * training.batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(seconds, 1),
        "history": history,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    defaults = json.dumps(PIPELINE_DEFAULTS, indent=2)
    if parent:  # the whole lineage (what the weights had learned before), and the parent's defaults
        earlier = parent / "training.json"  # absent where the parent was not trained here
        lineage = json.loads(earlier.read_text(encoding="utf-8")) if earlier.is_file() else {"training": "unknown"}
        record["continued_from"] = {k: v for k, v in lineage.items() if k != "history"}
        if (parent / "comclip.json").is_file():
            defaults = (parent / "comclip.json").read_text(encoding="utf-8")
    (out / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    (out / "comclip.json").write_text(defaults, encoding="utf-8")
