"""What a job over the images of a folder did (label, export, overlay): one summary shape, so the
CLI prints them all one way (cli/job_output.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

KEPT_FAILURES = 1000  # (source, error) pairs kept in memory; the counts cover every image


@dataclass
class JobSummary:
    total: int = 0  # images the job was given
    done: int = 0  # images it wrote
    skipped: int = 0  # images it left as they were (already done)
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # the first KEPT_FAILURES

    def fail(self, source: str, error: str) -> None:
        self.failed += 1
        if len(self.failures) < KEPT_FAILURES:
            self.failures.append((source, error))

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0
