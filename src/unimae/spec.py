"""How a model embeds: the one typed record written by every export and read by ``Encoder``.

Saved as ``unimae.json`` beside the weights. A plain causal-LM folder without it embeds with the
defaults below (EOS pooling, causal attention, the tokenizer's EOS). A pydantic record (unimae.records):
every field is checked when it is built or read; keys it does not know (written by a newer version) are
dropped, so old readers keep working.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import field_validator
from pydantic.dataclasses import dataclass

from unimae.errors import UserError
from unimae.io import atomic_write_json
from unimae.records import Field, StrictBool, StrictInt, StrictStr, record_config, user_errors

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


@user_errors(SpecError)
@dataclass(frozen=True, config=record_config(extra="ignore"))
class EmbeddingSpec:
    """How a model embeds (``unimae.json``).

    Unknown keys are ignored: the file travels with exported models, and a model a newer version exported
    must still embed with an older one, through the fields that one knows.
    """

    pooling: Literal[POOLINGS] = "eos"
    """Which hidden states become the embedding: eos (the appended EOS), mean, last, echo, prompteol, tokenprepend."""
    attention: Literal[ATTENTIONS] = "causal"
    """causal (the model as trained for generation) or bidirectional (MNTP)."""
    eos_token: StrictStr | None = None
    """Token appended to every text (None: the tokenizer's EOS)."""
    eos_token_id: StrictInt | None = None
    """Its id, recorded so a loader can check the tokenizer agrees."""
    add_bos: StrictBool = False
    """Whether the tokenizer's BOS precedes the text."""
    normalize: StrictBool = True
    """L2-normalize embeddings by default."""
    max_length: Annotated[StrictInt, Field(ge=2)] | None = None
    """Longest input (tokens incl. EOS) the model was trained on; None: the model's context."""
    trained_from: StrictStr | None = None
    """The base model of a trained run."""
    objective: StrictStr | None = None
    """unimae, mntp, or None for an untrained model."""
    steps: StrictInt | None = None
    """Optimizer steps of the exported checkpoint."""
    prompt: StrictStr | None = None
    """Template around the text (holding '{text}' once; eos and last pooling), as trained; None: the text alone."""

    @field_validator("prompt")
    @classmethod
    def _one_text_slot(cls, prompt: str | None) -> str | None:
        if prompt is not None:
            split_prompt(prompt)  # PromptError (a ValueError) names the template
        return prompt

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
        try:
            return cls(**data)  # unknown keys are dropped: files of newer versions still load
        except SpecError as e:
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
