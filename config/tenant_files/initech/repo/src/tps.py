"""TPS report generation."""

COVER_SHEET_VERSION = 3


def render(report):
    """Render a TPS report with the current cover sheet."""
    header = f"TPS REPORT (cover sheet v{COVER_SHEET_VERSION})"
    return "\n".join([header, f"Project: {report['project']}", f"Owner: {report['owner']}", report["body"]])
