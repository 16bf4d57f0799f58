"""The zero-knowledge toolchain: Node.js packages, the circuits' compilation, the trusted setup.

Nothing here is cryptography of our own. circom (the ``circom2`` WebAssembly build) compiles the
circuits of ``attest/circuits``; snarkjs makes the powers of tau, the Groth16 keys and the
proofs; circomlibjs computes Poseidon hashes outside the circuits. Their versions are pinned in
``attest/package-lock.json`` and installed with ``npm ci``: into ``attest/node_modules`` in a
checkout (``.ci/run`` does it), else, on first use, into the toolchain home.

The toolchain home (``PREDLIQ_ATTEST_HOME``, default ``~/.cache/predliq/attest``) caches what
is slow to make and the same for every attestation of a shape: the powers-of-tau file
(``ptau/``) and each compiled circuit with its proving and verification keys (``circuits/``).
Each cached item is written into a staging folder and renamed into place, so an interrupted
setup leaves nothing half-made.

Why Groth16 (not PLONK): snarkjs's PLONK counts every addition as a gate. The batch circuit of
4 accounts and 2 markets has 3,827 Groth16 (R1CS) constraints and 52,636 PLONK constraints
(measured with snarkjs 0.7.6), so PLONK needs a 2^16 powers of tau where Groth16 needs 2^12, and
its prover works on a domain 16 times larger. Groth16 proofs are three curve points and verify in
tens of milliseconds, which keeps the verification of a 10,000-account attestation within
seconds. The price is a second, circuit-specific setup phase; it is made here with its own
random contribution, like the powers of tau, and is as trustworthy as the party that made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from engine.errors import PredliqError

NODE_PACKAGES = ("circom2", "circomlib", "circomlibjs", "snarkjs")
CIRCUIT_SOURCE = "book.circom"
AMOUNT_BITS = 56
"""Every committed amount is range-checked to [0, 2^56) quote quantums (72 billion in quote
units): four fit in one field element for the leaf hash, and no total can wrap the field."""
ID_BITS = 32
"""Account ids are range-checked to [0, 2^32)."""
AGGREGATE_ARITY = 16
"""Children of an aggregate node (Poseidon takes at most 16 inputs)."""
BATCH_SIZES = (4, 16, 64, 256)
"""Accounts per batch proof: powers of 4, as the batch's 4-ary Merkle tree needs."""
ARITIES = (4, 8, 16)
"""Children per aggregate: 16 for large books; 4 keeps the circuit within 2^12 constraints."""
MAX_MARKETS = 6
"""A node's commitment hashes salt, root and 8 + markets sums: at most 16 inputs."""
PROOF_SYSTEM = "groth16"
CURVE = "bn128"


class ToolchainError(PredliqError, RuntimeError):
    """The Node.js toolchain is missing or one of its steps failed (message names the step)."""


def package_dir() -> Path:
    """Return the folder of the attest package (circuits, Node scripts, lock file)."""
    return Path(str(resources.files("attest")))


def home() -> Path:
    """Return the toolchain home (created if missing)."""
    path = Path(os.environ.get("PREDLIQ_ATTEST_HOME", Path.home() / ".cache/predliq/attest"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def node_modules() -> Path:
    """Return the folder of the pinned Node packages, installing them with ``npm ci`` first if
    neither the checkout nor the home has them."""
    local = package_dir() / "node_modules"
    if _complete(local):
        return local
    installed = home() / "node" / "node_modules"
    if _complete(installed):
        return installed
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise ToolchainError(f"{tool} is not on PATH; predliq attest needs Node.js 20 and npm")
    target = home() / "node"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(package_dir() / name, target / name)
    print(f"installing the attestation toolchain (npm ci) into {target}", flush=True)
    _run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], target, "npm ci")
    return installed


def _complete(modules: Path) -> bool:
    return all((modules / name / "package.json").is_file() for name in NODE_PACKAGES)


def _run(cmd: list[str], cwd: Path, step: str, stdin: str | None = None) -> str:
    """Run one toolchain step; a failure raises ToolchainError with its last error line."""
    try:
        done = subprocess.run(
            cmd, cwd=cwd, input=stdin, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ToolchainError(f"{step} could not start: {exc}") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        reason = (errors or lines or [f"exit code {done.returncode}"])[-1].strip()
        raise ToolchainError(f"{step} failed: {_plain(reason)}")
    return done.stdout


def _plain(text: str) -> str:
    """Drop terminal colour codes from a tool's message."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def node_call(command: str, request: dict[str, Any], step: str) -> Any:
    """Run ``prover.js COMMAND`` with ``request`` as JSON on stdin; return its JSON reply."""
    modules = node_modules()
    script = package_dir() / "node" / "prover.js"
    env_path = str(modules)
    cmd = ["node", str(script), command]
    try:
        done = subprocess.run(
            cmd,
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "NODE_PATH": env_path},
        )
    except OSError as exc:
        raise ToolchainError(f"{step} could not start node: {exc}") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        reason = lines[-1].removeprefix("error:").strip() if lines else done.stderr.strip()
        raise ToolchainError(f"{step} failed: {reason or f'exit code {done.returncode}'}")
    return json.loads(done.stdout)


def snarkjs(args: list[str], cwd: Path, step: str) -> str:
    """Run the snarkjs command line."""
    cli = node_modules() / "snarkjs" / "build" / "cli.cjs"
    return _run(["node", str(cli), *args], cwd, step)


def poseidon(inputs: list[list[int]]) -> list[int]:
    """Return circomlib's Poseidon hash of each list of field elements (circomlibjs)."""
    if not inputs:
        return []
    reply = node_call("poseidon", {"inputs": [[str(x) for x in row] for row in inputs]}, "hash")
    return [int(x) for x in reply]


# --- powers of tau -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ptau:
    """A prepared powers-of-tau file and where it came from."""

    path: Path
    power: int
    origin: str
    """``local`` (made here with one random contribution) or the path of a supplied file."""


def ptau_path(power: int) -> Path:
    return home() / "ptau" / f"local_{power}.ptau"


def local_ptau(power: int, make: bool = True) -> Ptau | None:
    """Return the cached local powers of tau of 2^power constraints, making it if ``make``.

    The file has a single contribution, of random entropy drawn here: whoever ran this step
    could forge proofs. A deployment uses a public multi-party ceremony file (``--ptau``).
    """
    path = ptau_path(power)
    if path.is_file():
        return Ptau(path, power, "local")
    if not make:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-ptau-{power}-", dir=path.parent))
    try:
        snarkjs(["powersoftau", "new", CURVE, str(power), "0.ptau"], staging, "powers of tau")
        snarkjs(
            [
                "powersoftau",
                "contribute",
                "0.ptau",
                "1.ptau",
                "--name=predliq local setup",
                f"-e={secrets.token_hex(32)}",
            ],
            staging,
            "powers-of-tau contribution",
        )
        snarkjs(["powersoftau", "prepare", "phase2", "1.ptau", "final.ptau"], staging, "phase 2")
        os.replace(staging / "final.ptau", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Ptau(path, power, "local")


def supplied_ptau(path: Path) -> Ptau:
    """Return a supplied prepared powers-of-tau file (e.g. a public ceremony's); its power is
    read from its header. snarkjs checks the points when it makes keys from it."""
    if not path.is_file():
        raise ToolchainError(f"powers-of-tau file {str(path)!r} does not exist")
    power, sections = _ptau_header(path)
    if 12 not in sections:
        raise ToolchainError(
            f"powers-of-tau file {str(path)!r} is not prepared for phase 2 "
            "(snarkjs powersoftau prepare phase2)"
        )
    return Ptau(path.absolute(), power, str(path.absolute()))


def _ptau_header(path: Path) -> tuple[int, set[int]]:
    """Return (power, section ids) of a snarkjs .ptau file: magic "ptau", version, section
    count, then sections of (id u32, size u64, data); section 1 holds n8, q and the power."""
    import struct

    bad = ToolchainError(f"{str(path)!r} is not a snarkjs powers-of-tau file")
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"ptau":
            raise bad
        count = struct.unpack("<I", head[8:12])[0]
        sections: set[int] = set()
        power = -1
        for _ in range(count):
            raw = fh.read(12)
            if len(raw) < 12:
                raise bad
            kind, size = struct.unpack("<IQ", raw)
            start = fh.tell()
            if kind == 1:
                n8 = struct.unpack("<I", fh.read(4))[0]
                fh.seek(n8, 1)
                power = struct.unpack("<I", fh.read(4))[0]
            sections.add(kind)
            fh.seek(start + size)
    if power < 1:
        raise bad
    return power, sections


# --- circuits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CircuitKeys:
    """A compiled circuit with its keys: the artefacts a prover and a verifier need."""

    kind: str
    """``batch`` or ``aggregate``."""
    params: tuple[int, ...]
    folder: Path
    """The compiled circuit (the witness generator and its size)."""
    keys: Path
    """Its Groth16 keys over one powers-of-tau file."""
    constraints: int

    @property
    def wasm(self) -> Path:
        return self.folder / "circuit_js" / "circuit.wasm"

    @property
    def zkey(self) -> Path:
        return self.keys / "circuit.zkey"

    @property
    def vkey(self) -> Path:
        return self.keys / "verification_key.json"


def _main_source(kind: str, params: tuple[int, ...]) -> str:
    if kind == "batch":
        n, m = params
        main = f"component main = Batch({n}, {m}, {AMOUNT_BITS}, {ID_BITS});"
    else:
        k, m = params
        main = f"component main {{public [child]}} = Aggregate({k}, {m});"
    return f'pragma circom 2.1.6;\ninclude "{CIRCUIT_SOURCE}";\n{main}\n'


def _circuit_key(kind: str, params: tuple[int, ...]) -> str:
    source = (package_dir() / "circuits" / CIRCUIT_SOURCE).read_bytes()
    digest = hashlib.sha256(source + _main_source(kind, params).encode()).hexdigest()[:12]
    return f"{kind}_{'_'.join(map(str, params))}_{digest}"


def _ptau_key(ptau: Ptau) -> str:
    """Name the keys made over ``ptau`` by the file's name, size and modification time (a
    ceremony file is hundreds of MB: hashing it on every run would cost seconds)."""
    st = ptau.path.stat()
    tag = f"{ptau.path.absolute()}:{st.st_size}:{st.st_mtime_ns}"
    return "keys_" + hashlib.sha256(tag.encode()).hexdigest()[:12]


def circuit(kind: str, params: tuple[int, ...], ptau: Ptau, make: bool = True) -> CircuitKeys:
    """Return the compiled circuit ``kind`` with ``params`` and its Groth16 keys over ``ptau``,
    compiling it (once per circuit source) and running its setup (once per powers-of-tau
    file, with a random contribution of its own) when not cached."""
    folder = home() / "circuits" / _circuit_key(kind, params)
    if not (folder / "circuit.json").is_file():
        if not make:
            raise ToolchainError(
                f"the {kind} circuit {params} is not compiled: run `predliq attest` once"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
        try:
            constraints = _compile(kind, params, staging)
            (staging / "circuit.json").write_text(
                json.dumps({"kind": kind, "params": list(params), "constraints": constraints})
            )
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    constraints = int(json.loads((folder / "circuit.json").read_text())["constraints"])
    keys = folder / _ptau_key(ptau)
    found = CircuitKeys(kind, params, folder, keys, constraints)
    if (keys / "keys.json").is_file():
        return found
    need = (constraints + 64).bit_length()
    if need > ptau.power:
        raise ToolchainError(
            f"the {kind} circuit {params} has {constraints} constraints; it needs powers of "
            f"tau of at least 2^{need}, the file has 2^{ptau.power} (setup --power {need})"
        )
    if not make:
        raise ToolchainError(f"the {kind} circuit {params} has no keys over {ptau.path}")
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{keys.name}-", dir=folder))
    try:
        r1cs = str(folder / "circuit.r1cs")
        snarkjs(["groth16", "setup", r1cs, str(ptau.path), "0.zkey"], staging, "keys")
        snarkjs(
            [
                "zkey",
                "contribute",
                "0.zkey",
                "circuit.zkey",
                "--name=predliq local setup",
                f"-e={secrets.token_hex(32)}",
            ],
            staging,
            "circuit-specific contribution",
        )
        snarkjs(
            ["zkey", "export", "verificationkey", "circuit.zkey", "verification_key.json"],
            staging,
            "verification key",
        )
        (staging / "0.zkey").unlink()
        (staging / "keys.json").write_text(
            json.dumps({"ptau": ptau.origin, "ptau_power": ptau.power})
        )
        os.replace(staging, keys)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return found


def _compile(kind: str, params: tuple[int, ...], staging: Path) -> int:
    """Compile the circuit into ``staging``; return its number of constraints.

    circom2 runs in a WebAssembly sandbox that sees the working folder and its parents only, so
    the sources and circomlib's circuits are copied beside the main file.
    """
    shutil.copyfile(package_dir() / "circuits" / CIRCUIT_SOURCE, staging / CIRCUIT_SOURCE)
    shutil.copytree(node_modules() / "circomlib" / "circuits", staging / "circomlib" / "circuits")
    (staging / "circuit.circom").write_text(_main_source(kind, params))
    cli = node_modules() / "circom2" / "cli.js"
    out = _run(
        ["node", str(cli), "circuit.circom", "--r1cs", "--wasm", "--O2", "-l", ".", "-o", "."],
        staging,
        f"compiling the {kind} circuit",
    )
    shutil.rmtree(staging / "circomlib")
    (staging / CIRCUIT_SOURCE).unlink()
    (staging / "circuit.circom").unlink()
    for line in _plain(out).splitlines():
        if line.startswith("non-linear constraints:"):
            return int(line.split(":")[1])
    raise ToolchainError(f"compiling the {kind} circuit printed no constraint count")


def fingerprint(path: Path) -> str:
    """Return the SHA-256 of a file (keys are named by it in attestations)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def largest_local_ptau() -> Ptau:
    """Return the cached local powers of tau of the highest power."""
    found = sorted(
        (int(p.stem.split("_")[1]), p)
        for p in (home() / "ptau").glob("local_*.ptau")
        if p.stem.split("_")[1].isdigit()
    )
    if not found:
        raise ToolchainError(
            "no powers of tau yet: run `predliq attest setup` (about 7 min on 2 cores) or pass "
            "--ptau FILE"
        )
    power, path = found[-1]
    return Ptau(path, power, "local")
