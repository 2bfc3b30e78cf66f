"""The method's settings, two sections of a run's ``TrainConfig``: the objective and the tiny decoder.

Each section is passed whole to what it configures (``UniMAE(llm, ..., objective, decoder)``,
``TinyDecoder.from_llm(hf, decoder, ...)``), so a new knob is a field here and the line that reads it.
Fields are checked on construction (types, ranges, choices); an unknown key is refused.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import model_validator
from pydantic.dataclasses import dataclass

from unimae.errors import ConfigError
from unimae.records import Field, Real, StrictBool, StrictInt, StrictStr, record_config, user_errors

Ratio = Annotated[Real, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[Real, Field(ge=0.0)]
Positive = Annotated[Real, Field(gt=0.0)]


def check_prompt(name: str, value: str | None) -> None:
    """ConfigError unless ``value`` is None or a template holding ``{text}`` exactly once."""
    if value is not None and value.count("{text}") != 1:
        raise ConfigError(f"{name} must hold '{{text}}' exactly once, got {value!r}")


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class ObjectiveConfig:
    """What is trained (METHOD.md): the losses, their masks and weights, and the tokens they use. Unknown
    keys are refused (a config is written by hand: a misspelt knob must not pass unnoticed)."""

    name: Literal["unimae", "mntp"] = "unimae"
    """'unimae': alpha * L_MAR + mrc_weight * L_MRC. 'mntp': the LLM2Vec baseline (bidirectional attention, masked next-token prediction)."""
    mntp_mask_ratio: Annotated[Real, Field(gt=0.0, le=1.0)] = 0.2
    """Fraction of text tokens masked by the MNTP baseline (LLM2Vec: 20%)."""
    mar_mask_ratio: Ratio = 0.5
    """Fraction of the real text tokens replaced by the mask token in the LLM's input (0.4-0.6 best in the paper)."""
    mrc_mask_ratio: Ratio = 0.5
    """Fraction of the other tokens each tiny-decoder row may NOT see (RetroMAE's best: 0.5)."""
    alpha: NonNegative = 1.0
    """Weight of L_MAR. 0 trains MRC only."""
    mrc_weight: NonNegative = 1.0
    """Weight of L_MRC. 0 trains MAR only (the tiny decoder is then not run)."""
    mask_token: StrictStr | None = None
    """Token that replaces masked inputs. None: the tokenizer's mask token, else a rarely used special token (unimae.tokens.MASK_TOKEN_CANDIDATES)."""
    eos_token: StrictStr | None = None
    """Token appended to every text; its last-layer state is the embedding. None: the tokenizer's EOS."""
    mar_predict_eos: StrictBool = True
    """Keep the appended EOS as a MAR target (the last text token predicts it). False drops that target, and greedy generations keep their length (the default recipe sets false)."""
    prompt: StrictStr | None = None
    """A template around each training text, e.g. 'This sentence : "{text}" means in one word:"'; the EOS follows it. Prompt tokens are context, never MAR or MRC targets; the export records the prompt. None: the plain text."""
    encode_prompt: StrictStr | None = None
    """The template the export records for encoding (unimae.json ``prompt``), e.g. PromptEOL's, when it differs from the training prompt: trained weights can be read through a prompt they were not trained with. None: the training prompt; '{text}': the text alone."""
    head_precision: Literal["fp32", "bf16"] = "fp32"
    """Precision of the vocabulary-head matmuls of both losses: fp32, or bf16 (about 2x faster on CPUs with bf16 units; the log-softmax stays fp32)."""
    loss_chunk_size: Annotated[StrictInt, Field(ge=-1)] = -1
    """Compute vocabulary logits this many target tokens at a time, recomputed in backward. -1 (auto): chunk only when a batch's fp32 logits would pass 256 MiB (targets x vocabulary x 4 bytes); 0: all at once; N: N tokens."""

    @model_validator(mode="after")
    def _consistent(self) -> ObjectiveConfig:
        check_prompt("prompt", self.prompt)
        check_prompt("encode_prompt", self.encode_prompt)
        if self.alpha + self.mrc_weight == 0:
            raise ConfigError("alpha and mrc_weight must not both be 0 (nothing would be trained)")
        if self.name == "mntp" and (self.prompt is not None or self.encode_prompt is not None):
            raise ConfigError(
                "prompt and encode_prompt are for objective unimae: MNTP embeds by mean pooling, without a "
                "prompt (with the default recipe, add encode_prompt=null)"
            )
        return self

    @property
    def head_bf16(self) -> bool:
        return self.head_precision == "bf16"

    @property
    def read_prompt(self) -> str | None:
        """The template the export records for encoding (None: the text alone): ``encode_prompt`` where
        set ('{text}' meaning none), else the training ``prompt``."""
        prompt = self.encode_prompt if self.encode_prompt is not None else self.prompt
        return None if prompt == "{text}" else prompt


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class DecoderConfig:
    """The training-only tiny decoder of masked reconstruction (decoder.py); objective unimae only.

    Conditioning options (all off by default, which is the decoder of METHOD.md): a Llama-family final
    norm makes ``h_eos`` ~14x longer than ``e(x) + p``, so the query rows are nearly identical and MRC
    degenerates toward a bag-of-words loss; these bring what the decoder sees of ``h_eos`` to scale.
    Unknown keys are refused.
    """

    heads: Annotated[StrictInt, Field(ge=1)] | None = None
    """Attention heads of the tiny decoder. None: the LLM's number of attention heads."""
    mlp_ratio: Positive = 4.0
    """Width of the tiny decoder's MLP as a multiple of the hidden size."""
    share_embeddings: StrictBool = True
    """The tiny decoder reads the LLM's input embeddings and predicts through its output head (as RetroMAE). False: it gets its own copies."""
    pos_init_std: Positive | None = None
    """Initial std of the tiny decoder's position embeddings p_i. None: the std of the LLM's input embedding table."""
    input_norm: StrictBool = False
    """The tiny decoder sees h_eos RMS-normalised times a learned scalar (initialised at the embedding table's RMS), in its query rows and key slot 0. The exported embedding stays the raw h_eos."""
    input_proj: StrictBool = False
    """The tiny decoder sees h_eos through a learned d x d map initialised at a scaled identity (scale 1 after input_norm, else embedding RMS / final-norm weight RMS)."""
    output_norm_init: Literal["ones", "llm"] = "ones"
    """Initial weight of the tiny decoder's output norm: 'ones', or 'llm' (the LLM's final-norm weight, so decoded rows have the scale its head expects)."""
    rope: StrictBool = False
    """Rotary positions on the tiny decoder's queries and keys: a position signal the size of h_eos cannot drown (the absolute positions stay)."""
    pos_lr_mult: Positive = 1.0
    """Multiplies the learning rate of the tiny decoder's position table (under Adam, by storing p = mult * theta; same initial p)."""


PRETENDED_COT_PROMPT = 'After thinking step by step , this sentence : "{text}" means in one word:"'
"""Pretended chain of thought (Zhang et al. 2024), read at the last token: the best training-free pooling
of the base models on offline-dev and offline-test (docs/method.md)."""


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class ContrastiveConfig:
    """A contrastive term on the embedding state (beyond the paper; docs/method.md): InfoNCE between the
    EOS state of the MAR-masked training input and a second view of the same text, in-batch negatives
    gathered over processes. Off unless ``weight`` > 0. Unknown keys are refused."""

    weight: NonNegative = 0.0
    """Weight of the contrastive term in the trained loss; 0 turns it off (no extra forward pass)."""
    view: Literal["read", "masked"] = "read"
    """The second view: 'read', the clean text in the template the export records (the state that is read at inference, so what is trained is what is embedded; one more LLM forward per step); 'masked', the training input under a second, independent MAR mask (GEM-style token dropping)."""
    temperature: Positive = 0.05
    """Softmax temperature of the cosine similarities (SimCSE: 0.05)."""
    learn_temperature: StrictBool = False
    """Learn the temperature (as a log, from ``temperature``, at decoder_lr); the export drops it."""


@user_errors(ConfigError)
@dataclass(config=record_config(extra="forbid"))
class DistillConfig:
    """Distillation from a prompt (beyond the paper; docs/method.md): the read state is pulled toward the
    frozen base model's embedding of the same text through ``prompt``, computed once per corpus and cached
    (``unimae.training.teacher``). Off unless ``weight`` > 0. Unknown keys are refused."""

    weight: NonNegative = 0.0
    """Weight of the distillation term; 0 turns it off."""
    prompt: StrictStr = PRETENDED_COT_PROMPT
    """The teacher's template (holding '{text}' once), read at its last token by the base model."""
    loss: Literal["cosine", "mse"] = "cosine"
    """'cosine' (1 - cos) or 'mse' (squared error of the L2-normalised vectors)."""
    head: StrictBool = False
    """A d x d linear map (identity at start) between the student state and the loss, trained with the tiny decoder and dropped by the export: the student need not match the teacher exactly."""

    @model_validator(mode="after")
    def _prompt(self) -> DistillConfig:
        check_prompt("distill.prompt", self.prompt)
        return self
