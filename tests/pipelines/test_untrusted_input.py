"""Untrusted input: every malformed amount, file or fault is one `error:` line naming the input,
a documented exit code, and nothing written or registered."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.cli import main

SMALL = ["--set", "accounts.count=300", "--set", "steps=60"]


def _refused(args: list[str], needle: str, out: Path | None = None, code: int = 2) -> str:
    r = CliRunner().invoke(main, args)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == code, r.output
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], r.output
    assert "Traceback" not in r.output
    if out is not None:
        assert not out.exists() or not any(out.rglob("*.parquet"))
    return errors[0]


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("markets.0.insurance_fund_usd=1e300", "insurance_fund_usd must be at most 1e12"),
        ("accounts.maker_collateral_usd=1e13", "maker_collateral_usd must be at most 1e12"),
        ("accounts.maker_collateral_usd=9.9e11", "plus every market's insurance_fund_usd"),
        ("markets.0.initial_price=inf", "initial_price must be a finite number, was inf"),
        ("markets.0.initial_price=2e9", "initial_price must be at most 1e9"),
        ("markets.0.depth_usd=inf", "depth_usd must be a finite number"),
        ("markets.0.insurance_cap_per_block_usd=1e13", "insurance_cap_per_block_usd must be"),
        ("markets.0.drift_annual=nan", "drift_annual must be a finite number"),
        ("markets.0.sigma_annual=1e300", "sigma_annual must be at most 1000"),
        ("accounts.count=1000000000000", "accounts.count must be at most 10,000,000"),
        ("steps=1000000000000", "steps must be at most 10,000,000"),
        ("seed=100000000000000000000", "seed must be at most 2**53"),
        ("accounts.count=9000000", "need about"),
    ],
)
def test_amounts_beyond_the_ledger_are_refused_before_anything_runs(setting, needle, tmp_path):
    out = tmp_path / "out"
    args = ["simulate", "--config", "cascade", "--out", str(out), "--set", setting]
    if setting.startswith("accounts.maker_collateral_usd=9.9e11"):
        args += ["--set", "markets.0.insurance_fund_usd=2e10"]
    _refused(args, needle, out)
    assert not out.exists()


def test_the_conservation_sum_cannot_wrap():
    from engine.state import exact_sum

    values = np.array([2**62, 2**62, 2**62, -1, 7], np.int64)
    assert int(values.sum()) < 0  # numpy's own sum wraps
    assert exact_sum(values) == 3 * 2**62 + 6
    rng = np.random.default_rng(3)
    many = rng.integers(-(2**63), 2**63 - 1, 10_000, dtype=np.int64, endpoint=True)
    assert exact_sum(many) == sum(int(v) for v in many)


def test_ledger_operations_refuse_to_wrap():
    from engine.state import Ledger, checked_add
    from engine.units import LedgerOverflowError, as_int64, usd_to_quote_quantums

    top = np.int64(2**63 - 5)
    with pytest.raises(LedgerOverflowError, match="a balance"):
        checked_add(np.array([1, top], np.int64), np.array([1, 10], np.int64), "a balance")
    assert checked_add(np.array([top], np.int64), np.array([4], np.int64), "x")[0] == 2**63 - 1
    with pytest.raises(LedgerOverflowError):
        checked_add(np.array([-top], np.int64), np.array([-10], np.int64), "x")
    for value in (1e19, -1e19, np.inf, np.nan):  # numpy's cast makes -2**63 of each, silently
        with pytest.raises(LedgerOverflowError, match="beyond the int64 ledger"):
            as_int64(np.array([0.0, value]))
    with pytest.raises(LedgerOverflowError):
        usd_to_quote_quantums(1e13, "down")  # 1e19 quantums
    led = Ledger.empty(3, 2, 2)
    led.iso_quote[2, 1], led.cross[2] = top, False
    operations = [
        lambda: led.credit(np.array([0, 2]), 1, np.array([5, 10])),  # isolated pool 2
        lambda: led.credit_one(2, 1, 10),
        lambda: led.trade(np.array([1]), 0, 2**63 - 1, 0) or led.trade(np.array([1]), 0, 1, 0),
        lambda: led.trade_one(1, 1, 2**62, 0) or led.trade_one(1, 1, 2**62, 0),
        lambda: led.trade(np.array([0]), 0, 0, 2**64),  # a Python int numpy cannot hold
        lambda: led.add_insurance(0, 2**63),
        lambda: led.add_fee_pool(1, -(2**63) - 1),
        lambda: led.pay_keepers(np.array([0, 0]), np.array([2**62, 2**62])),
    ]
    for i, operation in enumerate(operations):
        with pytest.raises(LedgerOverflowError):
            operation()
        assert led.iso_quote[2, 1] == top, i  # the refused operation changed nothing there


def test_a_run_that_would_wrap_the_ledger_stops_at_its_block():
    """A maker whose balance sits at the edge of int64: its first trade cannot be booked."""
    from engine.config import load_config
    from engine.sim import Simulation
    from engine.units import LedgerOverflowError
    from pipelines.shipped import CONFIGS

    cfg = load_config(CONFIGS / "scenarios" / "cascade.toml", ["accounts.count=200", "steps=20"])
    sim = Simulation(cfg)
    edge = 2**63 - 1 - int(sim.ledger.quote[sim.maker])
    sim.ledger.quote[sim.maker] += edge
    sim.ledger.net_deposits += edge
    with pytest.raises(LedgerOverflowError, match=r"cascade seed 0, block \d+: .*int64 ledger"):
        sim.run()


@settings(max_examples=12, deadline=None)
@given(
    fund=st.floats(0, 1e11),
    maker=st.floats(1e6, 5e11),
    price=st.floats(1e-3, 1e9),
    seed=st.integers(0, 2**32),
)
def test_conservation_holds_exactly_up_to_the_documented_bounds(fund, maker, price, seed):
    """Amounts anywhere up to the bounds: the run is exact or refused, never wrapped."""
    from engine.config import ConfigError, load_config
    from engine.sim import Simulation
    from pipelines.shipped import CONFIGS

    overrides = [
        "accounts.count=200",
        "steps=40",
        f"seed={seed}",
        f"markets.0.insurance_fund_usd={fund!r}",
        f"accounts.maker_collateral_usd={maker!r}",
        f"markets.0.initial_price={price!r}",
    ]
    try:
        cfg = load_config(CONFIGS / "scenarios" / "cascade.toml", overrides)
    except ConfigError:
        return  # refused up front (e.g. a total above the bound): fine
    sim = Simulation(cfg)
    sim.run()
    led = sim.ledger
    assert led.conservation_error() == 0
    for column in (led.quote, led.iso_quote, led.insurance, led.fee_pool, led.keepers):
        assert np.abs(column.astype(np.float64)).max(initial=0) < 2.0**62
    assert (led.size.sum(axis=0) == 0).all()
    # A price of any size: orders far beyond the book's depth must not walk the mark to zero.
    assert (sim.records["mark_price"][1 : sim.t + 1] > 0).all()


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("high", "inf", "high must be finite and at most"),
        ("high", "1e308", "high must be finite and at most"),
        ("volume", "1e300", "volume must be finite"),
        ("open_time_ms", "1e308", "open_time_ms must be finite"),
    ],
)
def test_replay_bars_beyond_the_ledger_are_refused_with_their_line(
    column, value, needle, broken_replay
):
    bad = broken_replay(column, value, name=column)
    line = _refused(["facts", str(bad)], needle)
    assert "line 6" in line and bad.name in line


def test_an_empty_replay_file_and_a_non_utf8_config_are_named(tmp_path):
    empty = tmp_path / "BTCUSDT-PERP_1m_empty.csv"
    empty.write_text("")
    _refused(["facts", str(empty)], f"replay file {str(empty)!r} is empty")
    config = tmp_path / "bad.toml"
    config.write_bytes(b'name = "x"\n\xff\xfe\n')
    _refused(
        ["simulate", "--config", str(config), "--out", str(tmp_path / "o")],
        f"config file {str(config)!r} is not UTF-8 text",
    )
    train_config = tmp_path / "train.toml"
    train_config.write_bytes(b"\xff")
    _refused(
        ["train", "--data", str(tmp_path), "--config", str(train_config)],
        f"training config {train_config}: not UTF-8 text",
    )


# --- model files ------------------------------------------------------------------------------


@pytest.fixture
def export(trained_model, tmp_path) -> Path:
    """A private copy of the session's exported forecaster (safe to damage)."""
    _, folder = trained_model
    return Path(shutil.copytree(folder, tmp_path / "model"))


def _simulate_with(model: Path, tmp_path: Path, code: int = 2, needle: str = "") -> str:
    out = tmp_path / "runs"
    args = ["simulate", "--config", "cascade", "--out", str(out), *SMALL]
    return _refused([*args, "--policy", "predictive", "--model", str(model)], needle, out, code)


def test_a_truncated_model_file_is_refused_before_lightgbm_reads_it(export, tmp_path):
    text = (export / "model.txt").read_bytes()
    (export / "model.txt").write_bytes(text[: len(text) // 2])
    _simulate_with(export, tmp_path, needle="differs from the")


def test_an_edited_tree_line_is_refused(export, tmp_path):
    text = (export / "model.txt").read_text().replace("leaf_value=", "leaf_value=9", 1)
    (export / "model.txt").write_text(text)
    _simulate_with(export, tmp_path, needle="a changed or truncated model file")


def _rehash(export: Path) -> None:
    """Record the damaged files' SHA-256, as a careless tool or an attacker would."""
    doc = json.loads((export / "model.json").read_text())
    for name in doc["files"]:
        doc["files"][name] = hashlib.sha256((export / name).read_bytes()).hexdigest()
    (export / "model.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # LightGBM segfaulted on this one (exit 139)
        lambda text: text.replace("split_feature=", "split_feature=x", 1),  # aborted (134)
    ],
    ids=["truncated", "edited"],
)
def test_a_tree_file_lightgbm_cannot_parse_is_refused_even_with_its_checksum(
    export, tmp_path, damage
):
    path = export / "model.txt"
    path.write_text(damage(path.read_text()))
    _rehash(export)
    line = _simulate_with(export, tmp_path, needle="LightGBM cannot parse it")
    assert str(path) in line


def test_an_edited_severity_head_is_refused(export, tmp_path):
    head = export / "head_loss.txt"
    head.write_text(head.read_text() + "\n")
    _simulate_with(export, tmp_path, needle="head_loss.txt: SHA-256")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda doc: doc.pop("horizon_minutes"), "'horizon_minutes' must be a positive number"),
        (lambda doc: doc.update(horizon_minutes=float("nan")), "'horizon_minutes' must be"),
        (lambda doc: doc.pop("files"), "'files' must be the SHA-256 of every model file"),
        (
            lambda doc: doc["calibration"].update(y=[float("nan")] * len(doc["calibration"]["y"])),
            "'calibration' must be an isotonic map of finite x and y",
        ),
        (lambda doc: doc.update(best_iteration="many"), "'best_iteration' must be a whole"),
    ],
)
def test_a_malformed_model_json_is_one_line(export, tmp_path, edit, needle):
    doc = json.loads((export / "model.json").read_text())
    edit(doc)
    # NaN is not JSON: write it as Python's json does, which the reader must still refuse.
    (export / "model.json").write_text(json.dumps(doc))
    _simulate_with(export, tmp_path, needle=needle)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [(b"[1, 2, 3]", "must be a JSON object, was list"), (b"\xff\xfe{}", "not UTF-8 text")],
)
def test_model_json_that_is_not_an_object_or_not_text_is_one_line(
    export, tmp_path, payload, needle
):
    (export / "model.json").write_bytes(payload)
    _simulate_with(export, tmp_path, needle=needle)


def test_a_damaged_compiled_cache_is_rebuilt_not_loaded(trained_model, tmp_path, monkeypatch):
    from predictor.compiled import cache_root, compile_booster
    from predictor.model import BreachForecaster

    monkeypatch.setenv("PREDLIQ_CACHE", str(tmp_path / "cache"))
    _, folder = trained_model
    model = BreachForecaster.load(folder)
    first = compile_booster(model.booster_)
    assert first is not None and first.library.with_suffix(".sha256").exists()
    X = np.random.default_rng(0).normal(size=(50, len(model.meta_["features"])))
    expected = first.predict(X)
    first.library.write_bytes(b"\x7fELF garbage")  # what made LLVM abort every later run
    again = compile_booster(model.booster_)
    assert again is not None and again.library.stat().st_size > 100
    assert np.allclose(again.predict(X), expected)
    assert list(cache_root().glob("*.o")) == [again.library]


# --- histories ----------------------------------------------------------------------------


@pytest.fixture
def histories(small_histories, tmp_path) -> Path:
    return Path(shutil.copytree(small_histories, tmp_path / "histories"))


def _train_refuses(histories: Path, tmp_path: Path, needle: str) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    models = tmp_path / "models"
    args = ["train", "--data", str(histories), "--tracking-uri", uri, "--export-dir", str(models)]
    _refused(args, needle)
    assert not models.exists()


def _manifest(histories: Path, scenario: str = "cascade", seed: int = 3) -> Path:
    return histories / f"scenario={scenario}" / f"seed={seed}" / "manifest.json"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m.update(seed=0), "seed 0 disagree with its folder"),
        (lambda m: m.update(seed="one"), "'seed' must be a int, was 'one'"),
        (lambda m: m.update(rows=[1, 2]), "'rows' must be a dict"),
        (lambda m: m["config"].update(seed=0), "disagree with its config"),
    ],
)
def test_a_tampered_manifest_is_refused_by_train(histories, tmp_path, edit, needle):
    file = _manifest(histories)
    manifest = json.loads(file.read_text())
    edit(manifest)
    file.write_text(json.dumps(manifest))
    _train_refuses(histories, tmp_path, needle)


def test_a_non_utf8_manifest_is_one_line(histories, tmp_path):
    _manifest(histories).write_bytes(b"\xff{")
    _refused(
        [
            "train",
            "--data",
            str(histories),
            "--tracking-uri",
            "sqlite:///" + str(tmp_path / "m.db"),
        ],
        "not readable JSON",
    )


def test_an_export_folder_that_cannot_be_made_fails_before_training(histories, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["train", "--data", str(histories), "--tracking-uri", uri]
    _refused([*args, "--export-dir", str(afile / "sub")], "cannot be created")
    from mlflow.tracking import MlflowClient

    assert MlflowClient(uri, registry_uri=uri).search_registered_models() == []


# --- faults that must not pass as success ---------------------------------------------------


def test_a_forecaster_url_with_nothing_listening_is_refused_before_the_run(tmp_path):
    out = tmp_path / "runs"
    args = ["simulate", "--config", "cascade", "--out", str(out), *SMALL, "--policy"]
    args += ["predictive", "--forecaster-url", "http://127.0.0.1:9"]
    _refused(args, "--forecaster-url http://127.0.0.1:9 does not answer a forecast", out)
    assert not out.exists()


def test_a_timeout_that_is_not_finite_is_refused(tmp_path):
    args = ["simulate", "--config", "cascade", "--out", str(tmp_path / "o"), *SMALL]
    args += ["--policy", "predictive", "--forecaster-url", "http://127.0.0.1:9"]
    _refused([*args, "--forecaster-timeout", "nan"], "must be a finite number of seconds")


def test_allow_fallback_with_a_fallback_share_is_refused_not_silently_widened(tmp_path):
    out = tmp_path / "runs"
    args = ["simulate", "--config", "cascade", "--out", str(out), *SMALL]
    args += ["--allow-fallback", "--max-fallback-share", "0.1"]
    _refused(args, "--allow-fallback and --max-fallback-share exclude each other", out)
    assert not out.exists()


def test_a_run_whose_forecasts_fell_back_exits_3_unless_allowed(export, tmp_path):
    """A model whose calibration maps every score above probability 1 falls back whenever it
    is asked about any account (7 of the 16 forecasts here)."""
    doc = json.loads((export / "model.json").read_text())
    doc["calibration"]["y"] = [2.0] * len(doc["calibration"]["y"])  # probabilities above 1
    (export / "model.json").write_text(json.dumps(doc))
    out = tmp_path / "runs"
    args = ["simulate", "--config", "cascade", "--out", str(out), *SMALL]
    args += ["--set", "shocks.0.tick=20", "--policy", "predictive", "--model", str(export)]
    line = _refused(args, "fell back to the reactive policy (out_of_range ", out, code=3)
    assert "--allow-fallback" in line and not out.exists()
    r = CliRunner().invoke(main, [*args, "--allow-fallback"])
    assert r.exit_code == 0, r.output
    assert any(out.rglob("manifest.json"))


@pytest.fixture
def flaky_server():
    """A forecast server that fails every second forecast of a run (answers 500), else says 1%
    each; it answers the check before a run (one row of zeros) every time."""
    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            rows = data["dataframe_split"]["data"]
            probe = len(rows) == 1 and not any(rows[0])
            calls.append(1)
            ok = probe or len(calls) % 2 == 1
            body = json.dumps({"predictions": [0.01] * len(rows)})
            self.send_response(200 if ok else 500)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_share_of_forecasts_allowed_to_fall_back_is_a_setting(flaky_server, tmp_path):
    out = tmp_path / "runs"
    args = ["simulate", "--config", "cascade", "--out", str(out), *SMALL]
    args += ["--policy", "predictive", "--forecaster-url", flaky_server]
    line = _refused(args, "fell back to the reactive policy (exception ", out, code=3)
    fell, asked = (int(w.replace(",", "")) for w in line.split(": ", 2)[2].split()[:3:2])
    assert 0.4 < fell / asked < 0.6, line  # every second request failed
    _refused([*args, "--max-fallback-share", "0.3"], "more than the 30.0% allowed", out, code=3)
    r = CliRunner().invoke(main, [*args, "--max-fallback-share", "0.6"])
    assert r.exit_code == 0, r.output
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    assert (summary["policy_fallbacks"], summary["policy_forecasts"]) == (fell, asked)
    _refused([*args, "--max-fallback-share", "nan"], "must be a share from 0 to 1")


def test_a_changed_or_truncated_history_file_is_refused_by_train(histories, tmp_path):
    part = histories / "scenario=cascade" / "seed=3"
    events = part / "events.parquet"
    data = bytearray(events.read_bytes())
    data[len(data) // 2] ^= 0xFF
    events.write_bytes(bytes(data))
    _train_refuses(histories, tmp_path, f"{events} differs from the SHA-256")
    events.write_bytes(bytes(data[: len(data) // 2]))
    _train_refuses(histories, tmp_path, "(a truncated or replaced file)")
    events.unlink()
    _train_refuses(histories, tmp_path, f"{events} is missing")


def test_nan_where_the_engine_never_leaves_one_is_refused_with_file_and_column(histories, tmp_path):
    import pyarrow.parquet as pq

    from engine.history import file_sha256

    part = histories / "scenario=flash_crash" / "seed=0"
    accounts = part / "accounts.parquet"
    frame = pq.read_table(accounts).to_pandas()
    frame["equity"] = np.nan
    frame.to_parquet(accounts, index=False)
    # A writer that kept its manifest consistent: only the NaN check can tell.
    file = part / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest["files"]["accounts.parquet"] = {
        "sha256": file_sha256(accounts),
        "bytes": accounts.stat().st_size,
    }
    file.write_text(json.dumps(manifest))
    _train_refuses(histories, tmp_path, f"{accounts}: column 'equity' has")


def test_a_resume_simulates_again_a_partition_whose_files_do_not_verify(tmp_path):
    out = tmp_path / "runs"
    args = ["simulate", "--config", "cascade", "--out", str(out), *SMALL, "--seed", "5"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    part = out / "scenario=cascade" / "seed=5"
    before = {f.name: f.read_bytes() for f in part.iterdir()}
    assert "already complete" in CliRunner().invoke(main, args).output
    (part / "markets.parquet").unlink()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "already complete" not in again.output, again.output
    assert {f.name: f.read_bytes() for f in part.iterdir()} == before  # the same bytes back


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.7", "::", "example.org"])
def test_serving_beyond_loopback_needs_allow_remote(host, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["serve", "--model", "models:/missing@champion", "--tracking-uri", uri, "--host", host]
    _refused(args, f"--host {host} is reachable from other machines")
    r = CliRunner().invoke(main, [*args, "--allow-remote"])
    # Allowed, with the warning; then the missing model is refused as usual.
    assert "warning: serving on" in r.output and "no authentication" in r.output
    assert r.exit_code == 2 and "missing" in r.output.splitlines()[-1]


def test_loopback_addresses_need_no_flag():
    from pipelines.cli import _is_loopback

    assert all(_is_loopback(h) for h in ("127.0.0.1", "127.5.0.1", "::1", "localhost"))
    assert not any(_is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "host.local"))
