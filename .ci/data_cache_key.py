"""Print the key of the CI data cache: a digest of the data loaders' registry of file hashes.

The registry is every public, upper-case, module-level constant of `kdelib/datasets.py` whose
literal value holds a checksum (a "sha256" or "md5" entry at any depth). It is read with `ast`,
without importing kdelib, so the key can be computed before anything is installed. The key changes
exactly when a registered file (name, size, checksum, address) changes: a cache filled for other
files is never restored.
"""

import ast
import hashlib
import json
import sys
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[1] / "kdelib" / "datasets.py"
CHECKSUM_KEYS = {"sha256", "md5"}


def _holds_checksum(value):
    if isinstance(value, dict):
        return bool(CHECKSUM_KEYS & set(value)) or any(_holds_checksum(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_checksum(v) for v in value)
    return False


def registry(source):
    """The checksummed constants of a module's source, as {name: literal value}."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and target.id.isupper() and not target.id.startswith("_")):
            continue
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            continue
        if _holds_checksum(literal):
            found[target.id] = literal
    return found


def cache_key(source):
    found = registry(source)
    if not found:
        raise SystemExit(f"no checksummed registry found in {DATASETS}: the data cache key would be meaningless")
    text = json.dumps(found, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DATASETS
    print(cache_key(path.read_text()))
