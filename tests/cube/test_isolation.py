"""cube/ is a library a researcher can use alone: no web, database or queue imports."""
import ast
import pathlib

import cube

FORBIDDEN = {"fastapi", "starlette", "sqlalchemy", "celery", "redis", "kombu", "alembic", "app", "worker", "uvicorn", "pydantic_settings"}


def test_cube_imports_no_service_code():
    root = pathlib.Path(cube.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders


def test_public_surface():
    for name in cube.__all__:
        assert hasattr(cube, name), name
