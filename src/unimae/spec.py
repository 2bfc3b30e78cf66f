"""How a model embeds: the one typed record written by every export and read by ``Encoder``.

Saved as ``unimae.json`` beside the weights. A plain causal-LM folder without it embeds with the
defaults below (EOS pooling, causal attention, the tokenizer's EOS).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unimae.errors import UserError
from unimae.io import atomic_write_json

SPEC_FILE = "unimae.json"
POOLINGS = ("eos", "mean", "last", "echo", "prompteol", "tokenprepend")
ATTENTIONS = ("causal", "bidirectional")


class SpecError(UserError):
    """A ``unimae.json`` that cannot be read or holds invalid values; the message names the file."""


class PromptError(UserError, ValueError):
    """A prompt template that does not hold ``{text}`` exactly once (a one-line error at the CLI)."""


def split_prompt(prompt: str) -> tuple[str, str]:
    """``(prefix, suffix)`` of a prompt template that holds ``{text}`` exactly once; PromptError if not."""
    if not isinstance(prompt, str) or prompt.count("{text}") != 1:
        raise PromptError(f"a prompt must hold '{{text}}' exactly once, got {prompt!r}")
    prefix, _, suffix = prompt.partition("{text}")
    return prefix, suffix


@dataclass(frozen=True)
class EmbeddingSpec:
    pooling: str = "eos"
    """Which hidden states become the embedding: eos (the appended EOS), mean, last, echo, prompteol, tokenprepend."""
    attention: str = "causal"
    """causal (the model as trained for generation) or bidirectional (MNTP)."""
    eos_token: str | None = None
    """Token appended to every text (None: the tokenizer's EOS)."""
    eos_token_id: int | None = None
    """Its id, recorded so a loader can check the tokenizer agrees."""
    add_bos: bool = False
    """Whether the tokenizer's BOS precedes the text."""
    normalize: bool = True
    """L2-normalize embeddings by default."""
    max_length: int | None = None
    """Longest input (tokens incl. EOS) the model was trained on; None: the model's context."""
    trained_from: str | None = None
    """The base model of a trained run."""
    objective: str | None = None
    """unimae, mntp, or None for an untrained model."""
    steps: int | None = None
    """Optimizer steps of the exported checkpoint."""
    prompt: str | None = None
    """Template around the text (holding '{text}' once; eos and last pooling), as trained; None: the text alone."""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise SpecError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.attention not in ATTENTIONS:
            raise SpecError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 2):
            raise SpecError(f"max_length must be an integer >= 2, got {self.max_length!r}")
        if self.prompt is not None:
            try:
                split_prompt(self.prompt)
            except ValueError as e:
                raise SpecError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> EmbeddingSpec:
        return dataclasses.replace(self, **changes)

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/unimae.json`` atomically."""
        return atomic_write_json(Path(folder) / SPEC_FILE, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "unimae.json") -> EmbeddingSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})  # unknown keys: newer writers
        except (SpecError, TypeError) as e:
            raise SpecError(f"{source}: {e}") from None

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddingSpec | None:
        """The spec saved in ``folder``, or None when there is none; SpecError naming the file if corrupt."""
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError(f"{path} is not valid JSON ({e}); re-export the model") from None
        return cls.from_dict(data, str(path))
