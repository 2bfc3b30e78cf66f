"""Request bodies of the OpenAI-compatible API (the fields unimae reads; unknown fields are ignored).

Types are checked here (a wrong type is a 422); values (empty input, too many inputs, lengths) are
checked by the handlers, which answer 400 with the field that is wrong. Every string is a ``Text``: JSON
can carry a lone surrogate (``"\\ud800"``) that no tokenizer can encode, and that is a 400 too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
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


class EmbeddingRequest(BaseModel):
    input: Text | list[Text] | list[int] | list[list[int]]
    model: Text | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: Text | None = None


class _Sampling(BaseModel):
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
    stream_options: dict | None = None
    user: Text | None = None


class CompletionRequest(_Sampling):
    prompt: Text | list[Text] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None


class ContentPart(BaseModel):
    type: Text
    text: Text | None = None


class ChatMessage(BaseModel):
    role: Text
    content: Text | list[ContentPart] | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None


class RagRequest(BaseModel):
    query: Text
    model: Text | None = None
    top_k: int = 4
    max_tokens: int | None = None


class RagSearchRequest(BaseModel):
    query: Text
    model: Text | None = None
    top_k: int = 4
