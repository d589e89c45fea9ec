"""dcft: reference harness and fast implementation of DCFT (Zhang et al., COLING 2025).

The public API (`apply_dcft`, `count_parameters`, `merge_dcft`, `unmerge_dcft`, `save_adapter`,
`load_adapter`) lives in `dcft.methods.dcft.api`; it is imported on first use, so
`import dcft.config` stays light.
"""

__version__ = "0.1.0"

__all__ = ["apply_dcft", "count_parameters", "merge_dcft", "unmerge_dcft", "save_adapter", "load_adapter",
           "__version__"]


def __getattr__(name: str):
    if name in __all__ and name != "__version__":
        from dcft.methods.dcft import api

        return getattr(api, name)
    raise AttributeError(f"module 'dcft' has no attribute {name!r}")
