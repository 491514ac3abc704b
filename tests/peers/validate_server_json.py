"""Checks a server.json against the MCP registry's released schema it names in `$schema`.

Usage: python validate_server_json.py <server.json>. The schemas come from skillsaw (PyPI), which
ships every released version; jsonschema checks the document, formats included. Prints one JSON
object {"schema": ..., "errors": [...]} and exits 1 when there are errors.
"""

import json
import sys
from importlib import resources

import jsonschema


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    url = document.get("$schema", "")
    version = url.rsplit("/schemas/", 1)[-1].split("/", 1)[0].replace("-", "_")
    folder = resources.files("skillsaw.schemas.mcp_registry") / f"v{version}"
    schema = json.loads((folder / "server.schema.json").read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]
    print(json.dumps({"schema": schema.get("$id"), "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
