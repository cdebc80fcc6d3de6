"""`python -m bench` (`make bench`): list the benchmarks, or run one with `python -m bench NAME [ARGS]`.

Each benchmark prints figures (ratios to a reference measured in the same run);
none is part of `make test`.
"""

from __future__ import annotations

import importlib
import pkgutil
import runpy
import sys
from pathlib import Path


def benchmarks() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = benchmarks()
    if not argv or argv[0] not in names:
        print("benchmarks (python -m bench NAME --help):")
        for name in names:
            module = importlib.import_module(f"bench.bench_{name}")
            first = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
            print(f"  {name:12} {first}")
        return 0 if not argv else 2
    sys.argv = [f"python -m bench.bench_{argv[0]}", *argv[1:]]
    runpy.run_module(f"bench.bench_{argv[0]}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
