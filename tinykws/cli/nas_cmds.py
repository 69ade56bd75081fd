"""CLI commands of the nas stage."""
import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the `tinykws` app."""
