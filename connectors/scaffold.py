"""`agentprovision connectors scaffold NAME`: a new connector package from the template.

The generated package registers its connector under the entry-point group
`agentprovision.connectors` and ships a conformance test against a loopback fake API, which
passes as generated; its author then changes the connector to speak the real service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from connectors.errors import SettingsError

TEMPLATE_DIR = Path(__file__).parent / "templates" / "scaffold"
NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


@dataclass(frozen=True)
class ScaffoldNames:
    name: str

    @property
    def module(self) -> str:
        return f"agentprovision_connector_{self.name}"

    @property
    def distribution(self) -> str:
        return f"agentprovision-connector-{self.name.replace('_', '-')}"

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_")) + "Connector"


def scaffold(name: str, target: Path) -> Path:
    """Write the package into `target/<distribution>`; refuses to overwrite anything."""
    if not NAME.match(name):
        raise SettingsError(
            f"{name!r} is not a usable connector name",
            hint="use 2-41 characters: lower-case letters, digits and underscores, starting with a letter",
        )
    names = ScaffoldNames(name)
    root = target / names.distribution
    if root.exists():
        raise SettingsError(f"{root} already exists", hint="choose another name or directory, or remove it")
    environment = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 (code, not HTML)
    )
    values = {
        "name": names.name,
        "module": names.module,
        "distribution": names.distribution,
        "class_name": names.class_name,
    }
    for template in sorted(TEMPLATE_DIR.rglob("*.j2")):
        relative = template.relative_to(TEMPLATE_DIR).with_suffix("")
        parts = [names.module if part == "module" else part for part in relative.parts]
        destination = root.joinpath(*parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(environment.get_template(template.relative_to(TEMPLATE_DIR).as_posix()).render(values))
    return root
