"""The stream registry: one number per use, the same table in Python and C++, and no
stream number written anywhere else."""

from __future__ import annotations

import ast
import pathlib
import re

from bigstep import _streams

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "bigstep"


def _cpp_table() -> dict:
    text = (ROOT / "csrc" / "include" / "bigstep" / "streams.hpp").read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"constexpr std::uint64_t k(\w+) = (\d+);", text)}


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def test_no_stream_has_two_uses():
    values = list(_streams.ALL.values())
    assert len(values) == len(set(values)), _streams.ALL
    assert all(isinstance(v, int) and 0 <= v < 2 ** 64 for v in values)


def test_python_and_cpp_tables_agree():
    cpp = {_snake(k): v for k, v in _cpp_table().items()}
    assert cpp == _streams.ALL


def test_every_stream_is_documented():
    source = (PACKAGE / "_streams.py").read_text()
    for name in _streams.ALL:
        assert re.search(rf"#: .+\n{name} = ", source), f"{name} has no #: comment saying its use"


def _bare_stream_literals(path: pathlib.Path) -> list:
    """Calls with stream=<int literal>; calls of gaussian_noise/uniform that do not name
    their stream by keyword (a positional literal, or none: the default 0 is the
    sampler's initial state); STREAM names bound to int literals."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "stream" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, int):
                    bad.append(f"{path.name}:{node.lineno}: stream={kw.value.value}")
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if fname in ("gaussian_noise", "uniform") and all(kw.arg != "stream" for kw in node.keywords):
                bad.append(f"{path.name}:{node.lineno}: {fname}() without stream=")
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for name, value in zip(names * len(values) if len(names) == 1 else names, values):
                if "STREAM" in name.upper() and isinstance(value, ast.Constant) and isinstance(value.value, int):
                    bad.append(f"{path.name}:{node.lineno}: {name} = {value.value}")
            for t in node.targets:
                if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for tn, tv in zip(t.elts, node.value.elts):
                        if (isinstance(tn, ast.Name) and "STREAM" in tn.id.upper() and isinstance(tv, ast.Constant)
                                and isinstance(tv.value, int)):
                            bad.append(f"{path.name}:{node.lineno}: {tn.id} = {tv.value}")
    return bad


def test_no_bare_stream_numbers_in_the_package():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_streams.py":
            continue
        bad += _bare_stream_literals(path)
    assert bad == [], "stream numbers belong in bigstep/_streams.py: " + "; ".join(bad)


def test_no_bare_stream_numbers_in_the_kernels():
    bad = []
    for path in list((ROOT / "csrc").rglob("*.?pp")) + list((ROOT / "csrc").rglob("*.cu*")):
        if path.name == "streams.hpp":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if re.search(r"make_stream\([^,]+,\s*\d+\s*\)", code) or re.search(r"kStream\w*\s*=\s*\d", code):
                bad.append(f"{path.name}:{i}: {line.strip()}")
    assert bad == [], "stream numbers belong in csrc/include/bigstep/streams.hpp: " + "; ".join(bad)


def test_the_literal_check_can_fail(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from x import g\n_STREAM_A, _STREAM_B = 3, 4\nz = g(1, stream=7)\nQ = g(stream=S)\n"
                 "a = gaussian_noise(1, 5, 9)\nb = bigstep.uniform(1, 5)\nc = uniform(1, 5, stream=S)\n")
    assert _bare_stream_literals(f) == ["m.py:2: _STREAM_A = 3", "m.py:2: _STREAM_B = 4", "m.py:3: stream=7",
                                        "m.py:5: gaussian_noise() without stream=",
                                        "m.py:6: uniform() without stream="]
