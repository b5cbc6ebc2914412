"""The problems found in a rule pack, each with file:line (shared by the parser and the type checker)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PackIssue:
    file: str
    line: int
    rule_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule_id or '-'}: {self.message}"


@dataclass
class PackError(Exception):
    issues: list[PackIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)
