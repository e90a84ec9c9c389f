"""From a pydantic model to a ``response_format``, and from a recorded answer back to the model.

The request side uses the ``openai`` package's own public helper,
``openai.lib.type_to_response_format_param``: the strict JSON schema the
client's ``.parse()`` sends (every field required, no extra properties),
so an answer is asked for exactly as the library's users are used to.

The answer side reads a *recorded* raw response (the JSON a step's log
holds), never a live object, so a resumed or offline run parses old answers
with today's model: a parsing change is testable against them.

Example::

    response_format = response_format_for(Quote)
    answer = answer_of(raw_response, Quote)     # a Quote, or an InvalidAnswer
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from openai.lib import type_to_response_format_param
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from ledgerflow.errors import LedgerflowError

__all__ = [
    "InvalidAnswer",
    "ModelOutputError",
    "answer_of",
    "feedback_messages",
    "response_format_for",
]

M = TypeVar("M", bound=BaseModel)


class ModelOutputError(LedgerflowError, ValueError):
    """A model gave no answer its output model accepts, even with the problem fed back.

    ``model`` is the model called, ``output`` the pydantic model's name,
    ``problem`` the last answer's problem and ``calls`` how many calls were made.
    Not permanent: the task's retry policy decides whether a new attempt tries again.

    Example::

        except ModelOutputError as exc:
            print(exc.problem)   # total: Input should be greater than 0
    """

    def __init__(self, *, model: str, output: str, problem: str, calls: int) -> None:
        self.model = model
        self.output = output
        self.problem = problem
        self.calls = calls
        super().__init__(
            f"Model '{model}' gave no valid {output} in {calls} call(s), the validation "
            f"error fed back after each; the last answer's problem: {problem}"
        )


@dataclass(frozen=True, slots=True)
class InvalidAnswer:
    """An answer its output model refused: what the model said, and what is wrong with it."""

    content: str
    problem: str


def response_format_for(output: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` asking for ``output``'s strict JSON schema.

    Example::

        >>> response_format_for(Quote)["json_schema"]["name"]
        'Quote'
    """
    if not (isinstance(output, type) and issubclass(output, BaseModel)):
        raise TypeError(f"output= must be a pydantic model class (got {output!r}).")
    # Given a class, the helper always builds a json_schema format (never Omit).
    return dict(cast(Mapping[str, Any], type_to_response_format_param(output)))


def _problems(error: ValidationError) -> str:
    # Built from the structured errors, without pydantic's documentation URLs
    # (they name pydantic's version): the feedback is part of the next step's
    # request, whose hash must not change when pydantic is upgraded.
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "the answer"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def answer_of(raw: Mapping[str, Any], output: type[M]) -> M | InvalidAnswer:
    """The ``output`` a recorded chat completion holds, or why it holds none.

    Example::

        >>> answer_of(raw, Quote)
        Quote(total=42.0, currency='EUR')
    """
    completion = ChatCompletion.model_validate(raw)
    if not completion.choices:
        return InvalidAnswer("", "the response has no choices")
    choice = completion.choices[0]
    message = choice.message
    if message.refusal:
        return InvalidAnswer("", f"the model refused: {message.refusal}")
    content = message.content or ""
    if not content.strip():
        return InvalidAnswer(content, "the answer is empty")
    try:
        return output.model_validate_json(content)
    except ValidationError as error:
        problem = _problems(error)
        if choice.finish_reason == "length":
            problem += " (the answer was cut off at the token limit)"
        return InvalidAnswer(content, problem)


def feedback_messages(invalid: InvalidAnswer, output: type[BaseModel]) -> list[dict[str, Any]]:
    """The messages that show the model its invalid answer and what is wrong with it."""
    feedback = {
        "role": "user",
        "content": (f"Your answer is not a valid {output.__name__}: {invalid.problem}. "
                    "Answer again with only a JSON object that matches the schema."),
    }
    if not invalid.content:
        return [feedback]
    return [{"role": "assistant", "content": invalid.content}, feedback]
