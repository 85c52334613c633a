"""Wire shapes of the tasks group."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DetectedLanguage", "LanguageRequest", "LanguageResponse", "TaskInfo",
           "TaskOptionInfo", "TaskRequest", "TasksResponse"]


class TaskRequest(BaseModel):
    """The body of ``POST /api/tasks/{task}``; unset sampling fields use the task's defaults."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, min_length=1, description="The text to work on.")
    html: str | None = Field(
        None, min_length=1, max_length=20_000_000,
        description="A whole web page instead of text: its main text is extracted (the "
                    "browser extension's 'whole page' tasks).")
    url: str | None = Field(None, max_length=8192,
                            description="The page's URL (helps extraction; the default source).")
    model: str | None = Field(None, description="Model id or alias (default: the loaded one).")
    lang: str | None = Field(None, description="Answer language (default: the text's).")
    to: str | None = Field(None, description="Target language (translate).")
    quick: bool = False
    options: dict[str, str | int] | None = Field(
        None, description="The task's options, e.g. {\"type\": \"headline\", \"length\": "
                          "\"short\"} (GET /api/tasks lists each task's options and values).")
    context: str | None = Field(None, max_length=20_000,
                                description="Background for the model (Chrome's sharedContext "
                                            "and context).")
    save: bool = Field(False, description="Save the result to the history.")
    source: str | None = Field(None, description="Where the text came from (a URL, a file).")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _one_input(self) -> TaskRequest:
        if (self.text is None) == (self.html is None):
            raise ValueError("send exactly one of 'text' (the text to work on) or 'html' "
                             "(a web page whose main text is used)")
        return self

    def sampling(self) -> dict[str, Any]:
        """Only the sampling settings the caller set (the task supplies the rest)."""
        values = {"temperature": self.temperature, "top_p": self.top_p,
                  "max_tokens": self.max_tokens, "seed": self.seed}
        return {k: v for k, v in values.items() if v is not None}


class TaskOptionInfo(BaseModel):
    """One option of a task: what a UI builds its control from."""

    name: str
    kind: Literal["choice", "count", "language"]
    description: str
    default: str | int
    choices: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None


class TaskInfo(BaseModel):
    """One task as ``GET /api/tasks`` lists it."""

    name: str
    description: str
    origin: str
    needs_target: bool
    options: list[TaskOptionInfo] = Field(default_factory=list)


class TasksResponse(BaseModel):
    """Every task: built-in ones and the user's."""

    tasks: list[TaskInfo]
    problems: list[str] = Field(default_factory=list)


class LanguageRequest(BaseModel):
    """The body of ``POST /api/language``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., max_length=1_000_000, description="The text whose language to detect.")


class DetectedLanguage(BaseModel):
    """One likely language (an ISO 639-1 code) and its probability."""

    language: str
    confidence: float


class LanguageResponse(BaseModel):
    """The most likely language first (``und`` when there is nothing to go on), then the rest
    (Chrome's LanguageDetector.detect() shape, with LocalLoom's field names)."""

    language: str
    confidence: float
    candidates: list[DetectedLanguage]
