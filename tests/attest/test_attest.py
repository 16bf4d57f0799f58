"""predliq attest / verify with real proofs (circom + snarkjs Groth16, small circuits).

The setup command runs for real at a tiny power; the proofs use the shipped test file of 2^12
(data/README.md says how it was made) through --ptau, as a venue passes a ceremony file. Every
book here has 1 or 2 markets, batches of 4 accounts and aggregates of 4 children, whose
circuits fit 2^12.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines.cli import main

USD = 1_000_000
TEST_PTAU = Path(__file__).parent / "data" / "test_2e12.ptau"
FIELD = 21888242871839275222246405745257275088548364400416821818158979397917002775617

# A hand-built book: distinctive amounts (so the privacy scan cannot match by chance), two
# accounts in deficit (bad debt; with one, the total would be that account's) and three below
# maintenance (the two in deficit among them).
ACCOUNTS = pd.DataFrame(
    {
        "account": [3, 7, 8, 15, 21, 22, 40, 41, 55, 60],
        "equity": [
            12345.678901,
            23456.789012,
            -2500.123457,
            34567.890123,
            150.517311,
            45678.901234,
            56789.012345,
            67890.123456,
            -1234.987611,
            89012.345678,
        ],
        "maintenance_margin": [
            1001.110011,
            2002.220022,
            3003.330033,
            1234.561234,
            400.254321,
            4004.440044,
            5005.550055,
            6006.660066,
            7007.770077,
            8008.880088,
        ],
        "initial_margin": [
            2002.231001,
            4004.452002,
            6006.673003,
            2469.134567,
            800.518642,
            8008.894004,
            10011.125005,
            12013.346006,
            14015.567007,
            16017.788008,
        ],
        "notional_BTC-PERP": [
            50111.123456,
            -60222.234567,
            70333.345678,
            0.0,
            -8004.912345,
            80444.456789,
            -90555.567891,
            10666.678912,
            20777.789123,
            -30888.891234,
        ],
        "notional_ETH-PERP": [
            -1111.987654,
            2222.876543,
            0.0,
            24691.765432,
            0.0,
            -3333.765432,
            4444.654321,
            -5555.543219,
            6666.432198,
            7777.321987,
        ],
    }
)


TINY = """
name = "tiny"
steps = 40
[accounts]
count = 24
order_rate = 0.05
[history]
sample_every_ticks = 5
[[markets]]
name = "BTC-PERP"
initial_price = 30000.0
sigma_annual = 3.0
position_sigma_base = 0.5
[[markets]]
name = "ETH-PERP"
initial_price = 2000.0
sigma_annual = 3.0
position_sigma_base = 0.5
[[shocks]]
market = "BTC-PERP"
tick = 10
log_return = -0.2
over_ticks = 5
"""
"""A two-market run (the circuits of the hand-built book serve it) whose crash at block 10
leaves accounts below maintenance."""


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def toolchain_home(attest_home) -> Path:
    """The session's attestation home, once the circuits' setup begun in the background (see
    conftest) has finished; the setup command itself runs here, for real, at 2^8."""
    home, warm_up = attest_home
    if warm_up is not None:
        output, _ = warm_up.communicate()
        assert warm_up.returncode == 0, output
    code, out = _cli("attest", "setup", "--power", "8")
    assert code == 0, out
    assert "public ceremony" in out
    assert (home / "ptau" / "local_8.ptau").is_file()
    return home


def _attest(book: pd.DataFrame, folder: Path, *extra: str) -> tuple[int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "accounts.csv"
    book.to_csv(csv, index=False)
    return _cli(
        "attest",
        "--accounts",
        str(csv),
        "--out",
        str(folder / "attestation"),
        "--batch-size",
        "4",
        "--arity",
        "4",
        "--ptau",
        str(TEST_PTAU),
        *extra,
    )


@pytest.fixture(scope="session")
def attested(toolchain_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("attested")
    code, out = _attest(ACCOUNTS, root)
    assert code == 0, out
    return root


@pytest.fixture(scope="session")
def other(toolchain_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second attestation: the same book without account 22."""
    root = tmp_path_factory.mktemp("other")
    code, out = _attest(ACCOUNTS[ACCOUNTS.account != 22], root)
    assert code == 0, out
    return root


def _verify(folder: Path, *extra: str) -> tuple[int, str]:
    return _cli("verify", str(folder), *extra)


def _copy(attested: Path, tmp_path: Path) -> Path:
    target = tmp_path / "attestation"
    shutil.copytree(attested / "attestation", target)
    return target


def _q(x: float) -> int:
    return round(x * USD)


def test_valid_attestation_verifies_with_the_books_totals(attested: Path):
    code, out = _verify(attested / "attestation")
    assert code == 0, out
    assert out.startswith("verified: 10 accounts, 4 proofs")
    totals = json.loads((attested / "attestation" / "attestation.json").read_text())["totals"]
    eq = [_q(x) for x in ACCOUNTS.equity]
    mm = [_q(x) for x in ACCOUNTS.maintenance_margin]
    btc = [abs(_q(x)) for x in ACCOUNTS["notional_BTC-PERP"]]
    eth = [abs(_q(x)) for x in ACCOUNTS["notional_ETH-PERP"]]
    below = [i for i in range(10) if eq[i] < mm[i]]
    assert below == [2, 4, 8]
    expected = {
        "accounts": 10,
        "collateral": sum(max(e, 0) for e in eq),
        "deficit": 2_500_123_457 + 1_234_987_611,
        "maintenance": sum(mm),
        "initial": sum(_q(x) for x in ACCOUNTS.initial_margin),
        "below_maintenance": 3,
        "below_notional": sum(btc[i] + eth[i] for i in below),
        "below_gap": sum(mm[i] - eq[i] for i in below),
        "notional_BTC-PERP": sum(btc),
        "notional_ETH-PERP": sum(eth),
    }
    assert {k: int(v) for k, v in totals.items()} == expected
    assert "3 accounts below maintenance" in out
    assert "bad debt 3,735.11" in out


def test_each_account_verifies_with_its_true_opening_and_fails_with_any_other(
    attested: Path, tmp_path: Path
):
    folder = attested / "attestation"
    openings = attested / "attestation.private" / "openings"
    code, out = _verify(folder, "--account", "8", "--opening", str(openings / "account_8.json"))
    assert code == 0, out
    assert out.startswith("account 8 is included with its values")
    # Another account's opening.
    code, out = _verify(folder, "--account", "8", "--opening", str(openings / "account_7.json"))
    assert code == 1 and "is of account 7, not 8" in out
    # The true opening with one value, the salt or one sibling changed.
    true = json.loads((openings / "account_8.json").read_text())
    changes = {
        "deficit": lambda o: o["values"].__setitem__("deficit", o["values"]["deficit"] - 1),
        "notional": lambda o: o["values"]["notional"].__setitem__(0, 1),
        "salt": lambda o: o.__setitem__("salt", str(int(o["salt"]) + 1)),
        "sibling": lambda o: o["path"][0].__setitem__(0, str(int(o["path"][0][0]) ^ 1)),
        "position": lambda o: o.__setitem__("leaf", (o["leaf"] + 1) % 4),
    }
    for name, change in changes.items():
        forged = json.loads(json.dumps(true))
        change(forged)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(forged))
        code, out = _verify(folder, "--account", "8", "--opening", str(path))
        assert code == 1, (name, out)
        assert out.startswith("REJECTED: account 8 with these values is not in the attestation"), (
            name,
            out,
        )


def test_a_dropped_account_fails_its_inclusion_and_changes_the_count(attested: Path, other: Path):
    opening = attested / "attestation.private" / "openings" / "account_22.json"
    code, out = _verify(other / "attestation", "--account", "22", "--opening", str(opening))
    assert code == 1
    assert out.startswith("REJECTED: account 22 with these values is not in the attestation")
    code, out = _verify(other / "attestation")
    assert code == 0 and out.startswith("verified: 9 accounts")


def _tamper(folder: Path, edit) -> None:
    manifest = json.loads((folder / "attestation.json").read_text())
    edit(manifest)
    (folder / "attestation.json").write_text(json.dumps(manifest))


def test_a_changed_total_is_rejected(attested: Path, tmp_path: Path):
    folder = _copy(attested, tmp_path)
    _tamper(folder, lambda m: m["totals"].__setitem__("deficit", "0"))
    code, out = _verify(folder)
    assert code == 1
    assert out.strip() == "REJECTED: published total deficit is 0, the proofs say 3735111068"
    # Changing the opened sums as well breaks the opening of the root.
    folder = _copy(attested, tmp_path / "b")
    _tamper(folder, lambda m: m["top"]["sums"].__setitem__(2, "0"))
    code, out = _verify(folder)
    assert code == 1 and "the published totals do not open the root" in out


def test_a_forged_root_is_rejected(attested: Path, tmp_path: Path):
    folder = _copy(attested, tmp_path)
    _tamper(folder, lambda m: m.__setitem__("root", str(int(m["root"]) + 1)))
    code, out = _verify(folder)
    assert code == 1 and "the published root is not the top aggregate's commitment" in out


def test_a_changed_health_statement_is_rejected(attested: Path, tmp_path: Path):
    folder = _copy(attested, tmp_path)
    _tamper(folder, lambda m: m["health"].__setitem__("accounts_below_maintenance", "0"))
    code, out = _verify(folder)
    assert code == 1 and "health statement does not follow from the totals" in out


def test_a_proof_from_another_attestation_is_rejected(attested: Path, other: Path, tmp_path: Path):
    folder = _copy(attested, tmp_path)
    shutil.copyfile(
        other / "attestation" / "proofs" / "batch_00001.json",
        folder / "proofs" / "batch_00001.json",
    )
    code, out = _verify(folder)
    assert code == 1
    assert "does not commit to the nodes below it in order" in out
    # Its proof with this attestation's public signals does not verify at all.
    mine = json.loads((attested / "attestation" / "proofs" / "batch_00001.json").read_text())
    theirs = json.loads((other / "attestation" / "proofs" / "batch_00001.json").read_text())
    theirs["publicSignals"] = mine["publicSignals"]
    (folder / "proofs" / "batch_00001.json").write_text(json.dumps(theirs))
    code, out = _verify(folder)
    assert (
        code == 1 and out.strip() == "REJECTED: proof batch_00001.json: the proof does not verify"
    )


def test_a_changed_balance_in_a_proof_is_rejected(attested: Path, tmp_path: Path):
    folder = _copy(attested, tmp_path)
    proof = folder / "proofs" / "batch_00000.json"
    data = json.loads(proof.read_text())
    data["publicSignals"][1] = str(int(data["publicSignals"][1]) + 1)  # the batch commitment
    proof.write_text(json.dumps(data))
    code, out = _verify(folder)
    assert code == 1 and "batch_00000.json: the proof does not verify" in out


def test_a_duplicated_or_dropped_batch_is_rejected(attested: Path, tmp_path: Path):
    folder = _copy(attested, tmp_path)
    _tamper(folder, lambda m: m["levels"][0].insert(1, m["levels"][0][0]))
    code, out = _verify(folder)
    assert code == 1 and ("an account would be counted twice" in out or "in order" in out), out
    folder = _copy(attested, tmp_path / "b")
    _tamper(folder, lambda m: m["levels"][0].pop(2))
    code, out = _verify(folder)
    assert code == 1 and "does not commit to the nodes below it in order" in out


def test_the_attestation_folder_holds_no_balance_position_or_salt(attested: Path):
    text = "\n".join(p.read_text() for p in (attested / "attestation").rglob("*") if p.is_file())
    secrets = []
    for opening in (attested / "attestation.private" / "openings").glob("*.json"):
        o = json.loads(opening.read_text())
        v = o["values"]
        amounts = [v["collateral"], v["deficit"], v["maintenance"], v["initial"], *v["notional"]]
        secrets += [str(a) for a in amounts if a] + [o["salt"]]
    for col in ("equity", "maintenance_margin", "initial_margin", "notional_BTC-PERP"):
        secrets += [f"{abs(x):.6f}" for x in ACCOUNTS[col] if x] + [
            f"{abs(x):,.2f}" for x in ACCOUNTS[col] if x
        ]
    assert len(secrets) > 80
    leaked = [s for s in secrets if s in text]
    assert not leaked, leaked


def test_bad_books_are_refused_with_one_line_and_nothing_written(
    toolchain_home: Path, tmp_path: Path
):
    cases = {
        "duplicate": (
            pd.concat([ACCOUNTS, ACCOUNTS.iloc[[3]]]),
            "account 15 appears more than once",
        ),
        "range": (
            ACCOUNTS.assign(equity=ACCOUNTS.equity.where(ACCOUNTS.account != 7, 8e10)),
            "equity of account 7 is out of the attested range",
        ),
        "negative": (
            ACCOUNTS.assign(
                maintenance_margin=ACCOUNTS.maintenance_margin.where(ACCOUNTS.account != 7, -1.0)
            ),
            "maintenance_margin of row 1 is negative",
        ),
        "nan": (
            ACCOUNTS.assign(initial_margin=ACCOUNTS.initial_margin.where(ACCOUNTS.account != 7)),
            "initial_margin of row 1 is nan, not a finite number",
        ),
        "missing": (ACCOUNTS.drop(columns="equity"), "lacks the column(s) equity"),
    }
    for name, (book, message) in cases.items():
        code, out = _attest(book, tmp_path / name)
        assert code == 2, (name, out)
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            name,
            out,
        )
        assert not (tmp_path / name / "attestation").exists()
        assert not (tmp_path / name / "attestation.private").exists()


def test_the_circuit_itself_refuses_what_the_checks_in_python_would_catch(
    toolchain_home: Path, tmp_path: Path
):
    """A venue that skips predliq's checks still cannot prove a duplicated id, a negative
    (wrapped) balance, collateral and deficit together, or a padding leaf holding value."""
    from attest import toolchain
    from attest.book import from_file
    from attest.build import prove_jobs
    from attest.tree import batch_input, batches

    csv = tmp_path / "accounts.csv"
    ACCOUNTS.to_csv(csv, index=False)
    book = from_file(csv)
    keys = toolchain.circuit("batch", (4, 2), toolchain.supplied_ptau(TEST_PTAU))
    honest = batch_input(book, batches(book, 4)[2], [11, 12], 13)
    forgeries = {
        "duplicate id": lambda i: i["id"].__setitem__(1, i["id"][0]),
        "negative balance": lambda i: i["collateral"].__setitem__(0, str(FIELD - 1)),
        "collateral and deficit": lambda i: i["collateral"].__setitem__(0, "5"),
        "value in padding": lambda i: i["maintenance"].__setitem__(3, "5"),
    }
    for name, forge in [("honest", lambda i: None), *forgeries.items()]:
        inp = json.loads(json.dumps(honest))
        forge(inp)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(inp))
        job = {
            "wasm": str(keys.wasm),
            "zkey": str(keys.zkey),
            "input": str(path),
            "out": str(tmp_path / f"{name}.proof.json"),
        }
        if name == "honest":
            assert prove_jobs([job])[0]["out"] == job["out"]
            continue
        with pytest.raises(toolchain.ToolchainError, match="the circuit rejects this input"):
            prove_jobs([job])
        assert not Path(job["out"]).exists(), name


def test_a_simulated_partition_is_attested_at_its_worst_block(toolchain_home: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    code, out = _cli("simulate", "--config", str(config), "--seed", "2", "--out", str(runs))
    assert code == 0, out
    partition = next(runs.glob("scenario=*/seed=2"))
    shape = ("--batch-size", "4", "--arity", "4")
    ptau = ("--ptau", str(TEST_PTAU))
    target = ("--out", str(tmp_path / "a"))
    code, out = _cli("attest", str(partition), "--at", "33", *target, *shape, *ptau)
    assert code == 2 and "block 33 of" in out and "nearest: 30, 35" in out
    code, out = _cli("attest", str(partition), "--at", "last", *target)
    assert code == 2 and "--at must be a block number or worst, was 'last'" in out
    small = ("--ptau", str(toolchain_home / "ptau" / "local_8.ptau"))
    code, out = _cli("attest", str(partition), "--at", "20", *target, *shape, *small)
    assert code == 2 and "needs powers of tau of at least 2^12, the file has 2^8" in out
    # The worst block: the largest gap to maintenance of the accounts below it.
    code, out = _cli("attest", str(partition), "--at", "worst", *target, *shape, *ptau)
    assert code == 0, out
    code, out = _verify(tmp_path / "a")
    assert code == 0, out
    sampled = pd.read_parquet(partition / "accounts.parquet")
    below = sampled[sampled.equity < sampled.maintenance_margin]
    gaps = (below.maintenance_margin - below.equity).groupby(below.tick).sum()
    assert len(gaps)
    worst = int(gaps.idxmax())
    at = sampled[sampled.tick == worst]
    manifest = json.loads((tmp_path / "a" / "attestation.json").read_text())
    assert manifest["source"]["block"] == worst
    totals = {k: int(v) for k, v in manifest["totals"].items()}
    assert totals["accounts"] == len(at)
    assert totals["maintenance"] == sum(round(x * USD) for x in at.maintenance_margin)
    assert totals["below_maintenance"] == len(below[below.tick == worst]) > 0
    # An existing attestation is kept unless --overwrite.
    code, out = _cli("attest", str(partition), *target, *shape, *ptau)
    assert code == 2 and "exists; pass --overwrite" in out


def test_a_large_reply_from_node_arrives_whole(toolchain_home: Path):
    """10,000 leaf hashes are about 800 kB of JSON; Node once exited before a pipe took all."""
    from attest import toolchain

    hashes = toolchain.poseidon([[i, i + 1] for i in range(10_000)])
    assert len(hashes) == 10_000 and len(set(hashes)) == 10_000
    assert all(0 < h < FIELD for h in hashes)


def test_the_evaluation_reports_each_policys_verified_health_at_its_worst_block(
    toolchain_home: Path, trained_model, tmp_path: Path
):
    """evaluate --attest: the report's attested figures are those of a verified attestation of
    the book at the policy's worst block of the path."""
    _, export = trained_model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # its own: the session's store counts its runs
    scenario = tmp_path / "tiny.toml"
    # 12 traders: 3 batch proofs per policy.
    scenario.write_text(TINY.replace("count = 24", "count = 12"))
    out = tmp_path / "report"
    args = [
        "evaluate",
        *("--model", str(export), "--tracking-uri", uri),
        *("--scenarios", str(scenario), "--seeds", "10", "--tune-seeds", "8"),
        *("--out", str(out), "--bootstrap", "100"),
        *("--attest-ptau", str(TEST_PTAU), "--attest-batch-size", "4", "--attest-arity", "4"),
    ]
    code, text = _cli(*args, "--attest", "static,nosuch")
    assert code == 2 and "--attest names unknown policy 'nosuch'" in text
    assert not out.exists()
    code, text = _cli(*args, "--attest")  # the default: static and predictive
    assert code == 0, text
    summary = json.loads((out / "summary.json").read_text())
    attested = summary["attested"]
    assert (attested["scenario"], attested["seed"]) == ("tiny", 10)
    assert set(attested["policies"]) == {"static", "predictive"}
    for policy, figures in attested["policies"].items():
        folder = out / figures["folder"]
        code, verdict = _verify(folder)
        assert code == 0, verdict
        manifest = json.loads((folder / "attestation.json").read_text())
        assert manifest["source"]["policy"] == policy
        assert manifest["source"]["block"] == figures["block"]
        assert manifest["root"] == figures["root"]
        totals = {k: int(v) for k, v in manifest["totals"].items()}
        assert figures["below_maintenance"] == totals["below_maintenance"]
        assert figures["shortfall"] * USD == int(manifest["health"]["shortfall"])
        # Every trader is in the book, and each can check their own account.
        openings = sorted((out / "attestations-private" / policy / "openings").glob("*.json"))
        assert totals["accounts"] == len(openings) > 0
        account = json.loads(openings[0].read_text())["values"]["account"]
        code, line = _verify(folder, "--account", str(account), "--opening", str(openings[0]))
        assert code == 0, line
    # The reactive venue's worst block of this crash has an account below maintenance, and it
    # is the worst of every block: the same run simulated alone, its book kept every block.
    static = attested["policies"]["static"]
    assert static["below_maintenance"] > 0
    runs = tmp_path / "runs"
    code, text_sim = _cli(
        *("simulate", "--config", str(scenario), "--seed", "10", "--out", str(runs)),
        *("--set", "history.sample_every_ticks=1"),
    )
    assert code == 0, text_sim
    book = pd.read_parquet(next(runs.glob("scenario=*/seed=10")) / "accounts.parquet")
    gaps = (book.maintenance_margin - book.equity).clip(lower=0).groupby(book.tick).sum()
    assert static["block"] == int(gaps.idxmax())
    at = book[book.tick == static["block"]]
    assert static["below_maintenance"] == int((at.equity < at.maintenance_margin).sum())
    report = (out / "report.html").read_text()
    assert "Attested health at the worst block" in report
    assert attested["policies"]["static"]["root"][:12] in report
    assert "attested and verified, tiny seed 10, static" in text
