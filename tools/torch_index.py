"""Print the pip arguments that fetch torch's CPU build: `--extra-index-url URL` if URL answers, else nothing.

    pip install torch==2.13.0 $(python tools/torch_index.py https://download.pytorch.org/whl/cpu)

On Linux, torch from the public package index is the CUDA build (gigabytes of nvidia-* wheels); PyTorch's
CPU wheel index has `torch-2.13.0+cpu`, which pip then prefers (a local version sorts above the plain one).
macOS and Windows wheels on the public index are CPU builds already. Where the CPU index cannot be reached
within a few seconds (a lab, a CI machine that reaches only the package registries), nothing is printed and
torch comes from the usual index, so the install never hangs on it. Standard library only: it runs before any
package is installed.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

__all__ = ["reachable", "main"]

TIMEOUT_S = 5


def reachable(url: str, timeout: float = TIMEOUT_S) -> bool:
    """True if url answers an HTTP request within timeout seconds."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    """Print `--extra-index-url URL` for a reachable URL, nothing for an empty or unreachable one."""
    url = argv[0].strip() if argv else ""
    if not url:
        return 0
    if reachable(url.rstrip("/") + "/torch/"):
        print(f"--extra-index-url {url}")
    else:
        print(f"note: {url} could not be reached (waited at most {TIMEOUT_S} s); torch comes from the default index "
              "(on Linux that may be the large CUDA build; set TORCH_INDEX to a CPU index you can reach)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
