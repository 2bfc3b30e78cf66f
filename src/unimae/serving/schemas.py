"""Request bodies of the OpenAI-compatible API (the fields unimae reads; unknown fields are ignored).

Types are checked here, strictly (a wrong type is a 422 naming the field): ``true`` is not the number 1,
``"no"`` is not a boolean, ``"5"`` is not an integer (a whole number is a float, as JSON has one number
type). Values (empty input, too many inputs, lengths, a seed out of range) are checked by the handlers,
which answer 400 with the field that is wrong. Every string is a ``Text``: JSON can carry a lone
surrogate (``"\\ud800"``) that no tokenizer can encode, and that is a 400 too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from unimae.serving.errors import INVALID_TEXT


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PydanticCustomError(
            INVALID_TEXT,
            "text is not valid Unicode (a lone surrogate {char} at character {at}); send UTF-8 text",
            {"char": f"U+{ord(e.object[e.start]):04X}", "at": e.start},
        ) from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]


class _Strict(BaseModel):
    """Strict types (no bool for a number, no string for a bool); unknown fields are ignored."""

    model_config = ConfigDict(strict=True)


class EmbeddingRequest(_Strict):
    input: Text | list[Text] | list[int] | list[list[int]]
    model: Text | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: Text | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None


class _Sampling(_Strict):
    model: Text | None = None
    max_tokens: int | None = None
    temperature: float | None = Field(
        None, description="0 or absent: greedy decoding (like Encoder.generate)"
    )
    top_p: float | None = None
    stop: Text | list[Text] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Text | None = None


class CompletionRequest(_Sampling):
    prompt: Text | list[Text] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None


class ContentPart(_Strict):
    type: Text
    text: Text | None = None


class ChatMessage(_Strict):
    role: Text
    content: Text | list[ContentPart] | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None


class RagRequest(_Strict):
    query: Text
    model: Text | None = None
    top_k: int = 4
    max_tokens: int | None = None


class RagSearchRequest(_Strict):
    query: Text
    model: Text | None = None
    top_k: int = 4
