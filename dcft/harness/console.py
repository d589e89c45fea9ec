"""What a run shows on the terminal and what it keeps in `run.log` (quiet and readable).

- `train.progress=false` turns off every progress bar: the training loop's own, the tokenisation
  bars of `datasets.map`, the weight-loading bars of transformers and the Hub's download bars; the
  loop then prints a heartbeat line every few seconds instead (`Heartbeat`: step, loss, evaluation,
  rate, ETA).
- Library messages (the transformers "LOAD REPORT" of newly initialised heads, datasets, accelerate,
  peft, Python warnings raised inside libraries) go to `<run folder>/run.log` only, not the terminal.
- `run.log` also receives everything the run prints (stdout and stderr, progress bars as their last
  state), so it holds the run's whole console output next to `result.json`.

Why in-house: Hydra's job log file receives only `logging` records of the root logger; transformers
and datasets print through their own handlers and tqdm; no library copies a process's console
into a per-run file. The progress switches themselves are the libraries' own
(`datasets.disable_progress_bars`, `transformers.utils.logging.disable_progress_bar`,
`huggingface_hub.utils.disable_progress_bars`).

    rc = RunConsole(run_dir, progress=False).start()
    ...                                    # the run
    rc.close()                             # everything restored; run.log complete
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from pathlib import Path
from typing import IO, Any

RUN_LOG = "run.log"
# Loggers of the libraries a run uses; their records go to run.log only.
LIBRARY_LOGGERS = ("transformers", "datasets", "accelerate", "peft", "huggingface_hub", "torch", "safetensors")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # the dcft package


def help_text(doc: str | None) -> str:
    """The first paragraph of a module docstring as one line, for `argparse` descriptions (the
    first line alone is cut mid-sentence when the sentence wraps)."""
    para = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(para.split())


def progress_bars_enabled() -> dict[str, bool]:
    """Whether each library's progress bars are on."""
    import datasets
    import huggingface_hub.utils as hub
    import transformers

    return {"datasets": not datasets.are_progress_bars_disabled(),
            "transformers": transformers.utils.logging.is_progress_bar_enabled(),
            "huggingface_hub": not hub.are_progress_bars_disabled()}


def set_progress_bars(enabled: bool | dict[str, bool]) -> None:
    """Turn the progress bars of datasets, transformers and the Hub client on or off (one bool for
    all, or per library as returned by `progress_bars_enabled`)."""
    import datasets
    import huggingface_hub.utils as hub
    import transformers

    want = enabled if isinstance(enabled, dict) else dict.fromkeys(("datasets", "transformers", "huggingface_hub"),
                                                                     enabled)
    (datasets.enable_progress_bars if want["datasets"] else datasets.disable_progress_bars)()
    tl = transformers.utils.logging
    (tl.enable_progress_bar if want["transformers"] else tl.disable_progress_bar)()
    (hub.enable_progress_bars if want["huggingface_hub"] else hub.disable_progress_bars)()


class Tee:
    """A text stream that writes to the terminal stream and, line by line, to a log file. A line
    redrawn with carriage returns (a progress bar) is logged as its last state."""

    def __init__(self, stream: IO[str], log: IO[str]):
        self.stream, self.log, self._line = stream, log, ""

    def write(self, text: str) -> int:
        n = self.stream.write(text)
        self._line += text
        if "\n" in self._line:
            *lines, self._line = self._line.split("\n")
            for line in lines:
                self._log_line(line)
        return len(text) if n is None else n

    def _log_line(self, line: str) -> None:
        line = line.rsplit("\r", 1)[-1] if line.rstrip("\r") else ""
        if line.strip():
            self.log.write(line.rstrip("\r") + "\n")
            self.log.flush()

    def flush(self) -> None:
        self.stream.flush()

    def finish(self) -> None:
        """Log a last unterminated line (e.g. a closed progress bar)."""
        if self._line:
            self._log_line(self._line.rstrip("\r").rsplit("\r", 1)[-1])
            self._line = ""

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding ... of the terminal stream
        return getattr(self.stream, name)


class RunConsole:
    """The console of one run (see the module docstring). `run_dir=None` (processes other than
    the main one) only sets the progress bars. `start()` and `close()` restore every change."""

    def __init__(self, run_dir: str | Path | None, progress: bool = True):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.library_messages = 0  # records and warnings sent to run.log only
        self._started = False

    @property
    def path(self) -> Path | None:
        return self.run_dir / RUN_LOG if self.run_dir is not None else None

    def start(self) -> RunConsole:
        self._bars = progress_bars_enabled()
        set_progress_bars(self.progress)
        self._started = True
        if self.run_dir is None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = Tee(sys.stdout, self._file), Tee(sys.stderr, self._file)
        self._handler = _CountingHandler(self._file, self)
        self._handler.setFormatter(_PlainFormatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        self._loggers = {}
        for name in LIBRARY_LOGGERS:
            lg = logging.getLogger(name)
            self._loggers[name] = (lg.handlers[:], lg.propagate)
            lg.handlers, lg.propagate = [self._handler], False
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._showwarning_hook
        return self

    def _showwarning_hook(self, message, category, filename, lineno, file=None, line=None) -> None:
        """Warnings raised in our code (or tests, scripts) show as usual; library warnings go to run.log."""
        if file is None and not _ours(filename):
            self.library_messages += 1
            self._file.write(warnings.formatwarning(message, category, filename, lineno, line))
            self._file.flush()
        else:
            self._showwarning(message, category, filename, lineno, file, line)

    def close(self) -> None:
        """Undo `start` (idempotent)."""
        if not self._started:
            return
        self._started = False
        set_progress_bars(self._bars)
        if self.run_dir is None:
            return
        for tee in (sys.stdout, sys.stderr):
            if isinstance(tee, Tee):
                tee.finish()
        sys.stdout, sys.stderr = self._streams
        for name, (handlers, propagate) in self._loggers.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate
        if warnings.showwarning == self._showwarning_hook:
            warnings.showwarning = self._showwarning
        self._file.close()

    def __enter__(self) -> RunConsole:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and self.run_dir is not None and self._started:  # the reason, beside the output
            self._file.write(f"run failed: {exc_type.__name__}: {exc}\n")
        self.close()


HEARTBEAT_S = 5.0  # seconds between heartbeat lines when progress bars are off


class Heartbeat:
    """With progress bars off (`train.progress=false`), one line every `every` seconds while a run
    trains, so a quiet run still shows it is alive and how long it will take:

        [squad/lora] step 40/150  loss 1.2340  dev F1 45.10 (best 45.10 @ 40)  0.62 steps/s  ETA 2m58s

    The rate counts optimizer steps over the wall time since training started (evaluations
    included), and the ETA is the steps left at that rate. Scores are shown as `dcft.units` shows
    them (x100, the set named)."""

    def __init__(self, total: int, first_step: int = 0, every: float = HEARTBEAT_S, file: IO[str] | None = None,
                 clock=None, label: str = "dcft"):
        import time

        self.total, self.first, self.every, self.label = total, first_step, every, label  # label: "<task>/<method>"
        self.file = file
        self.clock = clock or time.perf_counter
        self.t0 = self.last = self.clock()
        self.eval_text = ""

    def evaluated(self, text: str) -> None:
        """The latest evaluation as it should be shown, e.g. "dev F1 45.10 (best 45.10 @ 40)"."""
        self.eval_text = text

    def line(self, step: int, loss: float | None) -> str:
        """The heartbeat line for optimizer step `step` with the last logged training `loss`."""
        elapsed = self.clock() - self.t0
        done = step - self.first
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        parts = [f"[{self.label}] step {step}/{self.total}", f"loss {loss:.4f}" if loss is not None else "loss -"]
        if self.eval_text:
            parts.append(self.eval_text)
        parts.append(f"{rate:.2f} steps/s" if rate else "- steps/s")
        parts.append(f"ETA {_duration((self.total - step) / rate)}" if rate else "ETA -")
        return "  ".join(parts)

    def beat(self, step: int, loss: float | None, force: bool = False) -> bool:
        """Print the line if `every` seconds passed since the last one (or `force`); whether it printed."""
        now = self.clock()
        if not force and now - self.last < self.every:
            return False
        self.last = now
        print(self.line(step, loss), file=self.file or sys.stdout, flush=True)
        return True


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _PlainFormatter(logging.Formatter):
    """Log records without terminal colour codes (transformers bolds its load report)."""

    def format(self, record: logging.LogRecord) -> str:
        return _ANSI.sub("", super().format(record))


class _CountingHandler(logging.StreamHandler):
    def __init__(self, stream: IO[str], owner: RunConsole):
        super().__init__(stream)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        self.owner.library_messages += 1
        super().emit(record)


def _ours(filename: str) -> bool:
    """Whether a warning comes from this package or from code outside site-packages (a script, a test)."""
    return filename.startswith(_PACKAGE_DIR) or "site-packages" not in filename and "dist-packages" not in filename
