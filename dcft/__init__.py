"""dcft: reference harness and fast implementation of DCFT (Zhang et al., COLING 2025).

The public API (`apply_dcft`, `count_parameters`, `merge_dcft`, `unmerge_dcft`, `save_adapter`,
`load_adapter`) lives in `dcft.methods.dcft.api`, the peft tuner (`DcftConfig`, `orthogonal_loss`,
`to_lora`) in `dcft.methods.dcft.tuner`, `export_lora` (a DCFT adapter written as a standard peft
LoRA adapter) in `dcft.harness.export`; all are imported on first use, so `import dcft.harness.config` stays light.

The package's folders say the layer of each module: `methods/` (the adapters and the peft tuner),
`tasks/`, `data/`, `metrics/` (what a task reads and how it is scored), `harness/` (a configuration
becomes a run and its result file), `report/` (readers of result files), `measure/` (parameter counts
and speed), `gpu_check/` (checks of a GPU machine); top-level modules are small helpers any layer uses.

`import dcft` makes DCFT a peft method (`register()`): at once if peft is already imported,
otherwise right after peft's own import finishes (a one-shot import hook), so that
`PeftModel.from_pretrained(model, dcft_adapter_dir)` works in any order of imports without
`import dcft` paying peft's ~4 s import time.
"""

import importlib.abc
import sys
import warnings

__version__ = "0.1.0"

_API = ("apply_dcft", "count_parameters", "merge_dcft", "unmerge_dcft", "save_adapter", "load_adapter")
_TUNER = ("DcftConfig", "DcftModel", "orthogonal_loss", "to_lora")
_EXPORT = ("export_lora",)
__all__ = [*_API, *_TUNER, *_EXPORT, "register", "__version__"]


def register() -> None:
    """Register DCFT with peft (idempotent; imports peft): peft_type "DCFT" -> `DcftConfig`, `DcftModel`."""
    tuner = sys.modules.get("dcft.methods.dcft.tuner")
    if tuner is not None and not hasattr(tuner, "register"):
        return  # the tuner package is being imported (it imported peft): it registers at its end
    from dcft.methods.dcft.tuner import register as register_tuner

    register_tuner()


class _RegisterAfterPeftImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when `peft` is about to be imported, it wraps the real loader's
    `exec_module` so that `register()` runs once peft's package has executed, then removes itself."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "peft":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _remove_hook()
            try:
                register()
            except Exception as e:  # never break `import peft`; say why DCFT is missing from it
                warnings.warn(f"dcft could not register DCFT with peft: {e!r}", stacklevel=2)

        loader.exec_module = exec_then_register
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterPeftImport)]


if "peft" in sys.modules:
    register()
elif not any(isinstance(f, _RegisterAfterPeftImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterPeftImport())


# `import dcft; dcft.export.evaluate_run_adapter(...)` or `dcft.results.load_all()` works without importing the
# module first (they live in the harness and the report layers); so does `dcft.harness`, `dcft.report`, `dcft.measure`
_SUBMODULES = {"export": "dcft.harness.export", "results": "dcft.report.results",
               "harness": "dcft.harness", "report": "dcft.report", "measure": "dcft.measure"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(_SUBMODULES[name])
    if name in _API:
        from dcft.methods.dcft import api

        return getattr(api, name)
    if name in _TUNER:
        from dcft.methods.dcft import tuner

        return getattr(tuner, name)
    if name in _EXPORT:
        from dcft.harness import export

        return getattr(export, name)
    raise AttributeError(f"module 'dcft' has no attribute {name!r}")
