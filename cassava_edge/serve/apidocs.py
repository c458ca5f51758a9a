"""`GET /docs`: the API described in one plain HTML page written from the app's OpenAPI schema.

FastAPI's Swagger UI page loads its JavaScript and CSS from a CDN, so it is blank on a box with no internet (a
farm's Wi-Fi, a cooperative's LAN), which is where this service runs. This page needs nothing from outside: no
script, no style sheet, no font, and it links the full schema at `openapi.json` (relative, so it works when the
app is mounted under a prefix), which any OpenAPI tool can read offline.
"""

from __future__ import annotations

from html import escape
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1rem auto; padding: 0 1rem; line-height: 1.4; }
h2 { border-top: 1px solid #ccc; padding-top: 0.8rem; font-size: 1.1rem; }
code { background: #f2f2f2; padding: 0 0.2rem; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
"""


def api_page(schema: dict[str, Any], openapi_url: str = "openapi.json") -> str:
    """The page: the title and description, then each endpoint with its options, request body and answers, then
    the schemas' fields."""
    info = schema.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{title}: API</title><style>{STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        f'<p>The OpenAPI schema: <a href="{escape(openapi_url)}">{escape(openapi_url)}</a>.</p>',
    ]
    for path, operations in schema.get("paths", {}).items():
        for method in METHODS:
            if method in operations:
                parts += _operation(method, path, operations[method])
    components = schema.get("components", {}).get("schemas", {})
    if components:
        parts.append("<h2>Schemas</h2>")
        for name, component in components.items():
            fields = ", ".join(
                f"<code>{escape(field)}</code> ({escape(_type(spec))})"
                for field, spec in component.get("properties", {}).items()
            )
            parts.append(f"<p><b>{escape(name)}</b>: {fields}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    lines = [f'<h2 id="{escape(method + path)}"><code>{method.upper()} {escape(path)}</code></h2>']
    if operation.get("description"):
        lines.append(f"<p>{escape(operation['description'])}</p>")
    parameters = operation.get("parameters", [])
    if parameters:
        lines.append("<table><tr><th>option</th><th>in</th><th>meaning</th></tr>")
        for parameter in parameters:
            lines.append(f"<tr><td><code>{escape(parameter['name'])}</code></td><td>{escape(parameter['in'])}</td>"
                         f"<td>{escape(parameter.get('description', ''))}</td></tr>")
        lines.append("</table>")
    body = operation.get("requestBody", {}).get("content", {})
    if body:
        lines.append(f"<p>Body: {', '.join(f'<code>{escape(kind)}</code>' for kind in body)}</p>")
    answers = operation.get("responses", {})
    if answers:
        lines.append("<p>Answers: " + "; ".join(
            f"{escape(status)} {escape(answer.get('description', ''))}" for status, answer in answers.items()
        ) + "</p>")
    return lines


def _type(spec: dict[str, Any]) -> str:
    if "type" in spec:
        return str(spec["type"])
    if "anyOf" in spec:
        return " or ".join(_type(option) for option in spec["anyOf"])
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    return "any"
